package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/macro-cloud/macro/internal/testenv"
)

// Helpers for docker commands that a test drives while they run: in the
// background, or on a terminal.

// cliEnv is the environment testenv gives docker commands, for commands
// this package starts itself.
func cliEnv(t *testing.T, host string, extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DOCKER_") {
			env = append(env, kv)
		}
	}
	env = append(env, "DOCKER_HOST="+host, "DOCKER_CONFIG="+testenv.DockerConfig(t), "DOCKER_CLI_HINTS=false", "NO_COLOR=1", "TERM=xterm")
	return append(env, extra...)
}

// bgDocker is a docker command running in the background.
type bgDocker struct {
	cmd  *exec.Cmd
	out  syncBuffer
	done chan struct{}
	err  error
}

// startDocker starts a docker command; the test kills it if it still runs
// at the end.
func (c *cloud) startDocker(t *testing.T, args ...string) *bgDocker {
	t.Helper()
	b := &bgDocker{done: make(chan struct{})}
	b.cmd = exec.Command(testenv.DockerCLI, args...)
	b.cmd.Env = cliEnv(t, c.host)
	b.cmd.Stdout, b.cmd.Stderr = &b.out, &b.out
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { b.err = b.cmd.Wait(); close(b.done) }()
	t.Cleanup(func() {
		select {
		case <-b.done:
		default:
			b.cmd.Process.Kill()
			<-b.done
		}
	})
	return b
}

// wait waits (up to a minute) for the command to end and returns its exit code.
func (b *bgDocker) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-b.done:
	case <-time.After(time.Minute):
		b.cmd.Process.Kill()
		<-b.done
		t.Fatalf("docker %v did not end; output %q", b.cmd.Args[1:], b.out.String())
	}
	return b.cmd.ProcessState.ExitCode()
}

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// terminal is a docker command on a pseudo-terminal, as a user types it.
type terminal struct {
	t    *testing.T
	tty  *os.File
	cmd  *exec.Cmd
	out  syncBuffer
	done chan struct{}
}

func (c *cloud) terminal(t *testing.T, args ...string) *terminal {
	t.Helper()
	term := &terminal{t: t, done: make(chan struct{})}
	term.cmd = exec.Command(testenv.DockerCLI, args...)
	term.cmd.Env = cliEnv(t, c.host)
	tty, err := pty.StartWithSize(term.cmd, &pty.Winsize{Rows: 24, Cols: 80})
	if err != nil {
		t.Fatal(err)
	}
	term.tty = tty
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := tty.Read(buf)
			term.out.Write(buf[:n])
			if err != nil {
				break
			}
		}
	}()
	go func() { term.cmd.Wait(); close(term.done) }()
	t.Cleanup(func() {
		select {
		case <-term.done:
		default:
			term.cmd.Process.Kill()
			<-term.done
		}
		tty.Close()
	})
	return term
}

// expect waits until the terminal has shown want.
func (term *terminal) expect(want string) {
	term.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(term.out.String(), want) {
		if time.Now().After(deadline) {
			term.t.Fatalf("the terminal did not show %q; it shows %q", want, term.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (term *terminal) send(s string) {
	term.t.Helper()
	if _, err := term.tty.Write([]byte(s)); err != nil {
		term.t.Fatal(err)
	}
}

// exitCode waits for the command to end.
func (term *terminal) exitCode() int {
	term.t.Helper()
	select {
	case <-term.done:
	case <-time.After(time.Minute):
		term.t.Fatalf("docker on a terminal did not end; screen %q", term.out.String())
	}
	return term.cmd.ProcessState.ExitCode()
}

// interrupt sends SIGINT to a background docker command, as ^C does.
func (b *bgDocker) interrupt() { b.cmd.Process.Signal(syscall.SIGINT) }
