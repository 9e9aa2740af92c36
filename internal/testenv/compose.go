package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/macro-cloud/macro/internal/testimages"
)

// ComposeV2Version is the docker compose v2 plugin the tests build.
const ComposeV2Version = "v2.40.3"

// ComposeV1 is Debian's docker-compose 1.29.2 (scripts/setup.sh).
const ComposeV1 = "/usr/bin/docker-compose"

// ComposeV2 returns the path of the docker compose v2 plugin, built once
// per machine into the cache directory of testimages. `go install` refuses
// github.com/docker/compose/v2 (its go.mod has exclude directives), so the
// module is downloaded and built in its own directory.
func ComposeV2(t testing.TB) string {
	t.Helper()
	p, err := composeV2()
	if err != nil {
		t.Fatalf("testenv: docker compose v2: %v", err)
	}
	return p
}

var composeV2 = sync.OnceValues(func() (string, error) {
	cache, err := testimages.CacheDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, "bin", "docker-compose-"+ComposeV2Version)
	bin := filepath.Join(dir, "docker-compose")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	unlock, err := testimages.LockFile(filepath.Join(dir, ".lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if fileExists(bin) {
		return bin, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	tmp, err := os.MkdirTemp("", "compose-dl-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	dl := exec.CommandContext(ctx, goTool(), "mod", "download", "-json", "github.com/docker/compose/v2@"+ComposeV2Version)
	dl.Dir = tmp // outside this module: its go.mod must not constrain the download
	dl.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GO111MODULE=on")
	var out, stderr bytes.Buffer
	dl.Stdout, dl.Stderr = &out, &stderr
	if err := dl.Run(); err != nil {
		return "", fmt.Errorf("go mod download: %v\n%s%s", err, out.String(), stderr.String())
	}
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal(out.Bytes(), &mod); err != nil || mod.Dir == "" {
		return "", fmt.Errorf("go mod download: %v %s", err, mod.Error)
	}
	build := exec.CommandContext(ctx, goTool(), "build", "-trimpath", "-o", bin+".tmp", "./cmd")
	build.Dir = mod.Dir
	build.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "CGO_ENABLED=0",
		// The module's directory is read-only; go.sum is complete.
		"GOWORK=off")
	if b, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build in %s: %v\n%s", mod.Dir, err, b)
	}
	return bin, os.Rename(bin+".tmp", bin)
})

// ComposeCmd is one compose command: v1 (docker-compose 1.29) or v2 (the
// docker CLI plugin), run in Dir with the project's files.
type ComposeCmd struct {
	V1      bool
	Host    string
	Dir     string
	Env     []string
	Timeout time.Duration
	Args    []string
}

// ComposeCommand makes the command of c without starting it; ctx bounds it.
// v2 runs as `docker compose` with the plugin in the test's own
// DOCKER_CONFIG (never the user's ~/.docker).
func ComposeCommand(ctx context.Context, t testing.TB, c ComposeCmd) *exec.Cmd {
	t.Helper()
	var cmd *exec.Cmd
	if c.V1 {
		if !fileExists(ComposeV1) {
			t.Fatalf("testenv: %s is missing: run scripts/setup.sh", ComposeV1)
		}
		cmd = exec.CommandContext(ctx, ComposeV1, c.Args...)
	} else {
		plugins := filepath.Join(DockerConfig(t), "cli-plugins")
		if err := os.MkdirAll(plugins, 0o755); err != nil {
			t.Fatal(err)
		}
		link := filepath.Join(plugins, "docker-compose")
		if _, err := os.Lstat(link); errors.Is(err, os.ErrNotExist) {
			if err := os.Symlink(ComposeV2(t), link); err != nil {
				t.Fatal(err)
			}
		}
		cmd = exec.CommandContext(ctx, DockerCLI, append([]string{"compose"}, c.Args...)...)
	}
	cmd.Dir = c.Dir
	var env []string
	for _, kv := range dockerEnv(t, c.Host) {
		// docker-py (compose v1) trusts REQUESTS_CA_BUNDLE over its
		// DOCKER_CERT_PATH/ca.pem (requests lets the variable win over a
		// session's CA), so with it set no TLS connection to macro's own
		// CA verifies.
		if strings.HasPrefix(kv, "REQUESTS_CA_BUNDLE=") || strings.HasPrefix(kv, "CURL_CA_BUNDLE=") {
			continue
		}
		env = append(env, kv)
	}
	cmd.Env = append(env, append([]string{"COMPOSE_MENU=false", "COMPOSE_ANSI=never", "COMPOSE_STATUS_STDOUT=1"}, c.Env...)...)
	return cmd
}

// Compose runs a compose command against host and returns what it
// printed; a command that runs longer than its timeout (3 minutes by
// default) is killed and fails the test.
func Compose(t testing.TB, c ComposeCmd) Result {
	t.Helper()
	timeout := c.Timeout
	if timeout == 0 {
		timeout = 3 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := ComposeCommand(ctx, t, c)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	r := Result{Stdout: stdout.String(), Stderr: stderr.String(), ExitCode: cmd.ProcessState.ExitCode()}
	name := "docker compose"
	if c.V1 {
		name = "docker-compose"
	}
	if ctx.Err() != nil {
		t.Errorf("%s %s: killed after %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(c.Args, " "), timeout, r.Stdout, r.Stderr)
		r.ExitCode = -1
		return r
	}
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Errorf("%s %s: %v", name, strings.Join(c.Args, " "), err)
		r.ExitCode = -1
	}
	return r
}
