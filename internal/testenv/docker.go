package testenv

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// DockerCLI is the real docker client every machine of the project has.
const DockerCLI = "/usr/local/bin/docker"

// DefaultDockerTimeout bounds one docker command.
const DefaultDockerTimeout = 2 * time.Minute

// Result is what a docker command did.
type Result struct {
	Stdout   string
	Stderr   string
	ExitCode int // -1 when it could not run or timed out
}

// Combined returns stdout followed by stderr, for error messages.
func (r Result) Combined() string { return r.Stdout + r.Stderr }

// DockerCmd describes one docker command in full; Docker, DockerIn and the
// Must variants fill it in.
type DockerCmd struct {
	Host    string        // DOCKER_HOST
	Stdin   string        // standard input; none when empty
	Timeout time.Duration // DefaultDockerTimeout when zero
	Env     []string      // extra KEY=value
	Args    []string
}

// Docker runs the docker CLI against host ("unix:///..." or "tcp://...") and
// returns what it printed and its exit code. Each test has its own
// DOCKER_CONFIG directory, shared by its docker commands (so `docker login`
// carries over to a later `docker pull` of the same test). There is no TTY
// and no standard input. A command that runs longer than two minutes is
// killed and fails the test.
func Docker(t testing.TB, host string, args ...string) Result {
	t.Helper()
	return RunDocker(t, DockerCmd{Host: host, Args: args})
}

// DockerIn is Docker with stdin as standard input.
func DockerIn(t testing.TB, host, stdin string, args ...string) Result {
	t.Helper()
	return RunDocker(t, DockerCmd{Host: host, Stdin: stdin, Args: args})
}

// MustDocker is Docker that fails the test, with what docker printed, when
// the command exits non-zero.
func MustDocker(t testing.TB, host string, args ...string) Result {
	t.Helper()
	return must(t, RunDocker(t, DockerCmd{Host: host, Args: args}), args)
}

// MustDockerIn is DockerIn that fails the test when the command exits
// non-zero.
func MustDockerIn(t testing.TB, host, stdin string, args ...string) Result {
	t.Helper()
	return must(t, RunDocker(t, DockerCmd{Host: host, Stdin: stdin, Args: args}), args)
}

func must(t testing.TB, r Result, args []string) Result {
	t.Helper()
	if r.ExitCode != 0 {
		t.Fatalf("docker %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.ExitCode, r.Stdout, r.Stderr)
	}
	return r
}

// RunDocker runs the docker command c.
func RunDocker(t testing.TB, c DockerCmd) Result {
	t.Helper()
	timeout := c.Timeout
	if timeout == 0 {
		timeout = DefaultDockerTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, DockerCLI, c.Args...)
	cmd.Env = append(dockerEnv(t, c.Host), c.Env...)
	if c.Stdin != "" {
		cmd.Stdin = strings.NewReader(c.Stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// A plugin or helper the CLI started may hold the pipes open.
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	r := Result{Stdout: stdout.String(), Stderr: stderr.String(), ExitCode: cmd.ProcessState.ExitCode()}
	if ctx.Err() != nil {
		t.Errorf("docker %s: killed after %v\nstdout:\n%s\nstderr:\n%s", strings.Join(c.Args, " "), timeout, r.Stdout, r.Stderr)
		r.ExitCode = -1
		return r
	}
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Errorf("docker %s: %v", strings.Join(c.Args, " "), err)
		r.ExitCode = -1
	}
	return r
}

var dockerConfigs sync.Map // testing.TB -> DOCKER_CONFIG directory

// DockerConfig returns the DOCKER_CONFIG directory of t's docker commands.
func DockerConfig(t testing.TB) string {
	t.Helper()
	if d, ok := dockerConfigs.Load(t); ok {
		return d.(string)
	}
	dir := t.TempDir()
	if d, loaded := dockerConfigs.LoadOrStore(t, dir); loaded {
		return d.(string)
	}
	t.Cleanup(func() { dockerConfigs.Delete(t) })
	return dir
}

// dockerEnv is the environment of a docker command: the process's, without
// any DOCKER_* setting of the person running the tests, with no hints,
// telemetry or TTY colours.
func dockerEnv(t testing.TB, host string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "DOCKER_") || strings.HasPrefix(kv, "OTEL_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env,
		"DOCKER_HOST="+host,
		"DOCKER_CONFIG="+DockerConfig(t),
		"DOCKER_CLI_HINTS=false",
		"DOCKER_CLI_OTEL_EXPORTER_OTLP_ENDPOINT=",
		"OTEL_SDK_DISABLED=true",
		"NO_COLOR=1",
	)
}
