package testenv

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Conventions shared with the macro server, which StartServer relies on:
//
//   - `macro server --data-dir DIR` listens on the unix socket DIR/docker.sock
//     (and, with --listen tcp://ADDR, on ADDR too) and answers GET /_ping with
//     200 "OK" once it serves requests;
//   - it stops on SIGTERM;
//   - a runtime named NAME keeps the state of its OCI runtime binary in
//     DIR/runtime/NAME/root/runc or .../runsc (the --root of runc or runsc;
//     runtime/sandbox's layout); container cgroups are named after the
//     container ID under a top-level cgroup whose name starts with "macro"
//     (/macro/<id>);
//   - shims and other helper processes name a path under DIR on their
//     command line (`macro shim DIR/...`);
//   - its node network keeps its namespaces as bind mounts under DIR
//     (DIR/net/router, DIR/net/ns/<pod>) and names in DIR/net/host.json
//     the only things it adds to the host's network namespace: one veth
//     ("link") and one nftables table of the inet family ("nftTable");
//   - everything else it creates on disk (mounts too) is under DIR.
const (
	// SocketName is the name of the Docker API socket in the data directory.
	SocketName = "docker.sock"
	// ServerLogName is the file in the data directory that gets the
	// server's standard output and error.
	ServerLogName = "testenv-server.log"

	readyTimeout = 30 * time.Second
	stopTimeout  = 15 * time.Second
)

// Server is a macro server process started by StartServer.
type Server struct {
	DataDir string // --data-dir
	Socket  string // DataDir/docker.sock
	TCPAddr string // 127.0.0.1:port with WithTCP, else ""
	LogPath string // the server's output, DataDir/testenv-server.log

	t    testing.TB
	bin  string
	args []string
	env  []string
	// netns is the network namespace the server runs in (OnHost).
	netns string
	// agent runs `macro agent` instead of `macro server` (StartAgent).
	agent bool

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// Option configures StartServer.
type Option func(*Server)

// WithTCP makes the server listen on tcp://127.0.0.1:<free port> as well
// (--listen); the address is in Server.TCPAddr.
func WithTCP() Option {
	return func(s *Server) { s.TCPAddr = "pending" }
}

// WithArgs appends flags to `macro server`.
func WithArgs(args ...string) Option {
	return func(s *Server) { s.args = append(s.args, args...) }
}

// WithBinary runs bin instead of the macro binary Macro builds (an older
// release in an upgrade test, a stand-in in testenv's own tests).
func WithBinary(bin string) Option {
	return func(s *Server) { s.bin = bin }
}

// WithEnv adds KEY=value pairs to the server's environment.
func WithEnv(kv ...string) Option {
	return func(s *Server) { s.env = append(s.env, kv...) }
}

// StartServer starts `macro server` on a fresh data directory, waits until
// it answers /_ping on its socket, and stops it and removes everything it
// left behind when the test ends. It skips the test when not run as root.
//
// The data directory is a short directory in os.TempDir() (unix socket paths
// are limited to 108 bytes, and overlay mount options to a page), removed at
// the end unless MACRO_TEST_KEEP=1.
func StartServer(t testing.TB, opts ...Option) *Server {
	t.Helper()
	RequireRoot(t)
	s := &Server{t: t}
	for _, o := range opts {
		o(s)
	}
	if s.bin == "" {
		s.bin = Macro(t)
	}
	sweepOnce.Do(func() { sweepStale(t.Logf) })

	dir, err := os.MkdirTemp("", dataDirPrefix)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	s.DataDir = dir
	s.Socket = filepath.Join(dir, SocketName)
	s.LogPath = filepath.Join(dir, ServerLogName)
	t.Cleanup(s.cleanup)
	if err := writeOwner(dir); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if s.TCPAddr != "" {
		s.TCPAddr = "127.0.0.1:" + strconv.Itoa(FreePort(t))
	}
	s.Start()
	return s
}

// Host is the server's DOCKER_HOST for the unix socket: "unix://DIR/docker.sock".
func (s *Server) Host() string { return "unix://" + s.Socket }

// TCPHost is the server's DOCKER_HOST over TCP, "" without WithTCP.
func (s *Server) TCPHost() string {
	if s.TCPAddr == "" {
		return ""
	}
	return "tcp://" + s.TCPAddr
}

// Client returns an HTTP client that talks to the server's socket whatever
// host a URL names: use "http://docker/v1.50/containers/json".
func (s *Server) Client() *http.Client { return unixClient(s.Socket) }

// Log returns what the server has written to its log so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.LogPath)
	return string(b)
}

// Running reports whether the server process is running.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.runningLocked()
}

func (s *Server) runningLocked() bool {
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// Start starts the server (again) on its data directory and waits until it
// answers /_ping; the test fails with the server's log if it does not
// within 30 s.
func (s *Server) Start() {
	s.t.Helper()
	s.mu.Lock()
	if s.runningLocked() {
		s.mu.Unlock()
		s.t.Fatalf("testenv: server on %s is already running", s.DataDir)
	}
	args := []string{"server", "--data-dir", s.DataDir}
	if s.agent {
		args[0] = "agent"
	}
	if s.TCPAddr != "" {
		args = append(args, "--listen", "tcp://"+s.TCPAddr)
	}
	args = append(args, s.args...)
	logf, err := os.OpenFile(s.LogPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		s.mu.Unlock()
		s.t.Fatalf("testenv: %v", err)
	}
	fmt.Fprintf(logf, "=== testenv %s: %s %q\n", time.Now().Format(time.RFC3339Nano), s.bin, args)
	cmd := exec.Command(s.bin, args...)
	if s.netns != "" {
		// nsenter enters the network namespace and execs the server: the
		// pid stays the server's.
		cmd = exec.Command("nsenter", append([]string{"--net=/run/netns/" + s.netns, "--", s.bin}, args...)...)
	}
	cmd.Env = append(os.Environ(), s.env...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Dir = s.DataDir
	// Its own process group: a ^C in the terminal reaches the test binary,
	// whose cleanups stop the server in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	logf.Close()
	if err != nil {
		s.mu.Unlock()
		s.t.Fatalf("testenv: start %s: %v", s.bin, err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()

	if err := s.waitReady(done); err != nil {
		s.t.Fatalf("testenv: macro server on %s: %v\n--- server log ---\n%s", s.DataDir, err, tail(s.Log(), 64<<10))
	}
}

func (s *Server) waitReady(exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	if s.agent {
		return s.waitJoined(ctx, exited)
	}
	client := s.Client()
	client.Timeout = 2 * time.Second
	var last error
	for {
		last = s.ping(ctx, client)
		if last == nil && s.TCPAddr != "" {
			var c net.Conn
			if c, last = net.DialTimeout("tcp", s.TCPAddr, time.Second); last == nil {
				c.Close()
			}
		}
		if last == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("exited before answering /_ping: %v", s.exitStatus())
		case <-ctx.Done():
			return fmt.Errorf("no answer to /_ping within %v: %v", readyTimeout, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// AgentJoined is what `macro agent` prints once it reached the servers.
const AgentJoined = "joins cluster"

// waitJoined waits for an agent's start line: it has no API to ping.
func (s *Server) waitJoined(ctx context.Context, exited <-chan struct{}) error {
	start := len(s.Log())
	for {
		if log := s.Log(); len(log) > start && strings.Contains(log[start:], AgentJoined) {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("exited before joining: %v", s.exitStatus())
		case <-ctx.Done():
			return fmt.Errorf("did not join within %v", readyTimeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// StartAgent starts `macro agent` (a node of the cluster that opts name with
// WithArgs: --server, --token) on a fresh data directory, as StartServer
// starts a server, and waits until it has joined. Log, Stop, Kill and
// Start work as for a server; everything it left is removed at the end.
func StartAgent(t testing.TB, opts ...Option) *Server {
	t.Helper()
	return StartServer(t, append([]Option{func(s *Server) { s.agent = true }}, opts...)...)
}

func (s *Server) ping(ctx context.Context, client *http.Client) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker/_ping", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/_ping: %s %q", resp.Status, body)
	}
	return nil
}

func (s *Server) exitStatus() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.cmd.ProcessState == nil {
		return "still running"
	}
	return s.cmd.ProcessState.String()
}

// Stop sends SIGTERM and waits for the server to exit; after 15 s it sends
// SIGKILL and returns an error saying so. Stopping a stopped server does
// nothing.
func (s *Server) Stop() error {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	running := s.runningLocked()
	s.mu.Unlock()
	if !running {
		return nil
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
		return nil
	case <-time.After(stopTimeout):
	}
	cmd.Process.Kill()
	<-done
	return fmt.Errorf("testenv: macro server did not exit within %v of SIGTERM; killed", stopTimeout)
}

// Kill sends SIGKILL to the server (not to the containers it started) and
// waits for it to exit, as a crash would end it.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	running := s.runningLocked()
	s.mu.Unlock()
	if !running {
		return
	}
	cmd.Process.Kill()
	<-done
}

func (s *Server) cleanup() {
	t := s.t
	if err := s.Stop(); err != nil {
		t.Log(err)
	}
	if t.Failed() {
		t.Logf("--- macro server log (%s) ---\n%s", s.LogPath, tail(s.Log(), 64<<10))
	}
	keep := os.Getenv("MACRO_TEST_KEEP") == "1"
	if err := cleanupDataDir(s.DataDir, !keep, t.Logf); err != nil {
		t.Errorf("testenv: cleaning up after the macro server: %v", err)
	}
	if keep {
		t.Logf("testenv: MACRO_TEST_KEEP=1: kept %s", s.DataDir)
	}
}

// tail returns at most the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "[...]\n" + s[len(s)-n:]
}
