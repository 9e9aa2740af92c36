package ocispec

import (
	"errors"
	"fmt"
	"strings"

	"github.com/macro-cloud/macro/types"
)

// ErrNoCommand is returned when neither the spec nor the image says what to run.
var ErrNoCommand = errors.New("no command specified")

// ProcessArgs is the command line of the container by Docker's rules: an
// entrypoint in the spec replaces the image's and drops the image's Cmd (an
// entrypoint of [""] resets it to none, as `--entrypoint ""` does);
// otherwise the image's entrypoint runs with the spec's Cmd or, when the
// spec has none, the image's.
func ProcessArgs(spec types.PodSpec, img ImageConfig) ([]string, error) {
	entrypoint, cmd := spec.Entrypoint, spec.Cmd
	if len(entrypoint) == 0 {
		entrypoint = img.Entrypoint
		if len(cmd) == 0 {
			cmd = img.Cmd
		}
	}
	if len(entrypoint) == 1 && entrypoint[0] == "" {
		entrypoint = nil
	}
	args := append(append([]string(nil), entrypoint...), cmd...)
	if len(args) == 0 {
		return nil, ErrNoCommand
	}
	return args, nil
}

// WorkingDir is the spec's working directory, else the image's, else "/".
// It must be absolute.
func WorkingDir(spec types.PodSpec, img ImageConfig) (string, error) {
	wd := spec.WorkingDir
	if wd == "" {
		wd = img.WorkingDir
	}
	if wd == "" {
		return "/", nil
	}
	if !strings.HasPrefix(wd, "/") {
		return "", fmt.Errorf("the working directory '%s' is invalid, it needs to be an absolute path", wd)
	}
	return wd, nil
}

// Env is the container's environment by Docker's rules: PATH (the default
// one unless the image or spec sets it), HOSTNAME, TERM=xterm with a
// terminal, then the spec's variables and the image's ones the spec does not
// override. A spec entry without "=" removes the variable. HOME, from the
// user's passwd entry, comes last unless set (runc would add it there).
func Env(spec types.PodSpec, img ImageConfig, hostname, home string) []string {
	env := []string{"PATH=" + DefaultPath, "HOSTNAME=" + hostname}
	if spec.Tty {
		env = append(env, "TERM=xterm")
	}
	// Docker first merges image env into the container config (spec first,
	// then image variables the spec does not name), then applies that over
	// the defaults above.
	config := append([]string(nil), spec.Env...)
	for _, ie := range img.Env {
		k, _, _ := strings.Cut(ie, "=")
		named := false
		for _, se := range spec.Env {
			if sk, _, _ := strings.Cut(se, "="); sk == k {
				named = true
				break
			}
		}
		if !named {
			config = append(config, ie)
		}
	}
	env = replaceOrAppendEnv(env, config)
	hasHome := false
	for _, e := range env {
		if strings.HasPrefix(e, "HOME=") {
			hasHome = true
		}
	}
	if !hasHome && home != "" {
		env = append(env, "HOME="+home)
	}
	return env
}

// replaceOrAppendEnv is Docker's ReplaceOrAppendEnvValues.
func replaceOrAppendEnv(defaults, overrides []string) []string {
	index := map[string]int{}
	for i, e := range defaults {
		k, _, _ := strings.Cut(e, "=")
		index[k] = i
	}
	for _, o := range overrides {
		k, _, hasValue := strings.Cut(o, "=")
		i, exists := index[k]
		switch {
		case !hasValue && exists:
			defaults[i] = ""
		case !hasValue:
		case exists:
			defaults[i] = o
		default:
			index[k] = len(defaults)
			defaults = append(defaults, o)
		}
	}
	out := defaults[:0]
	for _, e := range defaults {
		if e != "" {
			out = append(out, e)
		}
	}
	return out
}
