// Package compose deploys a compose project through the Docker Engine API,
// as `docker compose up` and `down` do, for `kra up` and `kra down`: it
// loads the file with compose-spec/compose-go (the reference loader:
// interpolation, .env, env_file, profiles, extends), refuses what it cannot
// honour by name, translates each service into the create requests docker
// compose v2 sends (with the same com.docker.compose.* labels and
// config-hash, so both tools manage the same project), uploads bind mounts
// of local files into volumes, and converges the namespace: networks,
// volumes, then containers in dependency order.
//
// It talks to the server through Engine, which *client.Client implements.
package compose

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// Labels docker compose v2 sets (github.com/docker/compose/v2/pkg/api).
const (
	ProjectLabel     = "com.docker.compose.project"
	ServiceLabel     = "com.docker.compose.service"
	ConfigHashLabel  = "com.docker.compose.config-hash"
	NumberLabel      = "com.docker.compose.container-number"
	VolumeLabel      = "com.docker.compose.volume"
	NetworkLabel     = "com.docker.compose.network"
	WorkingDirLabel  = "com.docker.compose.project.working_dir"
	ConfigFilesLabel = "com.docker.compose.project.config_files"
	EnvFileLabel     = "com.docker.compose.project.environment_file"
	OneoffLabel      = "com.docker.compose.oneoff"
	ImageLabel       = "com.docker.compose.image"
	DependsOnLabel   = "com.docker.compose.depends_on"
	VersionLabel     = "com.docker.compose.version"
	ReplaceLabel     = "com.docker.compose.replace"

	// FilesLabel marks the volumes kra made of local files (see files.go);
	// its value is the local path.
	FilesLabel = "kr.files.source"
)

// ComposeVersion is the value of com.docker.compose.version on what kra
// creates: the docker compose release whose behaviour kra follows (and
// whose compose-go, v2.9.1, it loads files with, so that both compute the
// same config-hash).
const ComposeVersion = "2.40.3"

// LoadOptions says which compose file to load and how.
type LoadOptions struct {
	// Files are the compose files (-f), merged in order; none means
	// compose.yaml, docker-compose.yml, ... in WorkDir or a parent, or
	// COMPOSE_FILE.
	Files []string
	// WorkDir is the directory relative paths start from; "" is the
	// current directory.
	WorkDir string
	// Name is the project name (-n), which is the namespace; "" takes the
	// file's name:, COMPOSE_PROJECT_NAME, or the directory's name.
	Name string
	// Env are variables for interpolation (-e K=V), over the process
	// environment, which is over the .env file and EnvFiles.
	Env []string
	// EnvFiles replace .env as the files of interpolation variables.
	EnvFiles []string
	// OSEnv is the process environment (os.Environ() when nil).
	OSEnv []string
	// NoCheck skips Check: down removes a project whatever keys its file
	// has that up would refuse.
	NoCheck bool
}

// Load reads a compose project as docker compose up does, and checks that
// kra can deploy all of it.
func Load(ctx context.Context, o LoadOptions) (*types.Project, error) {
	osEnv := o.OSEnv
	if osEnv == nil {
		osEnv = os.Environ()
	}
	wd := o.WorkDir
	if wd == "" {
		var err error
		if wd, err = os.Getwd(); err != nil {
			return nil, err
		}
	}
	envFiles := make([]string, len(o.EnvFiles))
	for i, f := range o.EnvFiles {
		envFiles[i] = f
		if !filepath.IsAbs(f) {
			envFiles[i] = filepath.Join(wd, f)
		}
	}
	files := make([]string, len(o.Files))
	for i, f := range o.Files {
		files[i] = f
		if f != "-" && !filepath.IsAbs(f) {
			files[i] = filepath.Join(wd, f)
		}
	}
	// -e over the process environment over the .env files: WithDotEnv
	// only adds variables not set yet.
	withEnv := func(env []string) cli.ProjectOptionsFn { return cli.WithEnv(env) }
	if len(files) == 0 && !hasVar(append(osEnv, o.Env...), "COMPOSE_FILE") {
		files = defaultFiles(wd)
	}
	// As docker compose: the project's directory is the first file's.
	opts, err := cli.NewProjectOptions(files,
		withEnv(osEnv),
		withEnv(append([]string{"PWD=" + wd}, o.Env...)),
		cli.WithEnvFiles(envFiles...),
		cli.WithDotEnv,
		cli.WithConfigFileEnv,
		cli.WithEnvFiles(envFiles...),
		cli.WithDotEnv,
		cli.WithDefaultProfiles(),
		cli.WithName(o.Name),
		cli.WithResolvedPaths(true),
		cli.WithoutEnvironmentResolution,
	)
	if err != nil {
		return nil, err
	}
	p, err := opts.LoadProject(ctx)
	if err != nil {
		return nil, withFiles(err, opts.ConfigPaths)
	}
	if p.Name == "" {
		return nil, errors.New("project name can't be empty: use -n NAMESPACE")
	}
	if err := ValidNamespace(p.Name); err != nil {
		return nil, err
	}
	if p, err = p.WithServicesEnvironmentResolved(true); err != nil {
		return nil, err
	}
	if len(p.Services) == 0 {
		return nil, errors.New("no service to deploy: the file has none, or none in the active profiles (COMPOSE_PROFILES)")
	}
	// The labels compose's CLI adds to every service (cmd/compose ToProject).
	for name, s := range p.Services {
		s.CustomLabels = map[string]string{
			ProjectLabel:     p.Name,
			ServiceLabel:     name,
			VersionLabel:     ComposeVersion,
			WorkingDirLabel:  p.WorkingDir,
			ConfigFilesLabel: strings.Join(p.ComposeFiles, ","),
			OneoffLabel:      "False",
		}
		if len(o.EnvFiles) > 0 {
			s.CustomLabels[EnvFileLabel] = strings.Join(envFiles, ",")
		}
		p.Services[name] = s
	}
	p = p.WithoutUnnecessaryResources()
	if o.NoCheck {
		return p, nil
	}
	if err := Check(p); err != nil {
		return nil, err
	}
	return p, nil
}

// withFiles names the compose files in a loader's error that does not
// (a YAML syntax error says the line, not the file).
func withFiles(err error, files []string) error {
	msg := err.Error()
	for _, f := range files {
		if strings.Contains(msg, f) {
			return err
		}
	}
	if len(files) == 0 {
		return err
	}
	return fmt.Errorf("%s: %w", strings.Join(files, ", "), err)
}

// defaultFiles finds compose.yaml (or compose.yml, docker-compose.yml,
// docker-compose.yaml) and its override in dir or the nearest parent that
// has one, as docker compose does from the current directory.
func defaultFiles(dir string) []string {
	find := func(names []string, dir string) string {
		for _, n := range names {
			if _, err := os.Stat(filepath.Join(dir, n)); err == nil {
				return filepath.Join(dir, n)
			}
		}
		return ""
	}
	for {
		if f := find(cli.DefaultFileNames, dir); f != "" {
			if o := find(cli.DefaultOverrideFileNames, dir); o != "" {
				return []string{f, o}
			}
			return []string{f}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return nil
		}
		dir = parent
	}
}

func hasVar(env []string, name string) bool {
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); k == name {
			return true
		}
	}
	return false
}

// ValidNamespace checks a project name as macro checks namespace names.
func ValidNamespace(name string) error {
	ok := name != "" && len(name) <= 63
	for i, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
		case (r == '-' || r == '_') && i > 0:
		default:
			ok = false
		}
	}
	if !ok {
		return fmt.Errorf("invalid namespace name %q: use 1 to 63 lowercase letters, digits, '-' and '_', starting with a letter or digit", name)
	}
	return nil
}

// serviceNames returns the project's services, sorted.
func serviceNames(p *types.Project) []string {
	names := make([]string, 0, len(p.Services))
	for n := range p.Services {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
