package testenv

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/macro-cloud/macro/internal/testimages"
)

func TestRegistryPushPull(t *testing.T) {
	reg := StartRegistry(t)
	img := testimages.BusyboxImage(t)
	ref := reg.Push(t, img, "library/busybox:latest")
	if !strings.HasPrefix(ref, reg.Addr+"/library/busybox@sha256:") {
		t.Errorf("Push returned %q", ref)
	}
	for _, r := range []string{"library/busybox:latest", ref} {
		got := reg.Image(t, r)
		want, _ := img.Digest()
		if d, err := got.Digest(); err != nil || d != want {
			t.Errorf("%s: digest %v (%v), pushed %v", r, d, err, want)
		}
		cfg, err := got.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if len(cfg.Config.Cmd) != 1 || cfg.Config.Cmd[0] != "sh" {
			t.Errorf("%s: Cmd %q", r, cfg.Config.Cmd)
		}
	}
	// skopeo, another client, sees it too.
	if _, err := exec.LookPath("skopeo"); err == nil {
		out, err := exec.Command("skopeo", "inspect", "--tls-verify=false", "docker://"+reg.Ref("library/busybox:latest")).CombinedOutput()
		if err != nil || !strings.Contains(string(out), `"amd64"`) {
			t.Errorf("skopeo inspect: %v\n%s", err, out)
		}
	}
}

func TestRegistryWithAuth(t *testing.T) {
	reg := StartRegistryWithAuth(t, "alice", "s3cret")
	reg.Push(t, testimages.BusyboxImage(t), "busybox:1")
	reg.Image(t, "busybox:1")

	ref, err := name.ParseReference(reg.Ref("busybox:1"), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	for _, who := range []*Registry{{}, {User: "alice", Password: "wrong"}} {
		_, err := remote.Image(ref, who.remoteOptions()...)
		var terr *transport.Error
		if !errors.As(err, &terr) || terr.StatusCode != http.StatusUnauthorized {
			t.Errorf("pull as %q: err %v, want 401", who.User, err)
		}
	}
}

// fakeDockerd answers the few Engine API calls the tests make, on a unix
// socket, and records what it was sent.
func fakeDockerd(t *testing.T) (host string, loaded chan string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "d.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	loaded = make(chan string, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("/_ping", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Api-Version", "1.50")
		fmt.Fprint(w, "OK")
	})
	mux.HandleFunc("/v1.50/version", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"Version":"fake-1.0","ApiVersion":"1.50","MinAPIVersion":"1.24","Os":"linux","Arch":"amd64"}`)
	})
	mux.HandleFunc("POST /v1.50/images/load", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		loaded <- string(b)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"stream":"Loaded image: busybox:latest\n"}`+"\n")
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "unix://" + sock, loaded
}

func TestDocker(t *testing.T) {
	host, loaded := fakeDockerd(t)
	r := MustDocker(t, host, "version", "--format", "{{.Server.Version}}")
	if got := strings.TrimSpace(r.Stdout); got != "fake-1.0" {
		t.Errorf("server version %q (stderr %q)", got, r.Stderr)
	}
	r = MustDockerIn(t, host, "not really a tarball", "load")
	if !strings.Contains(r.Stdout, "Loaded image: busybox:latest") {
		t.Errorf("docker load printed %q", r.Combined())
	}
	if got := <-loaded; got != "not really a tarball" {
		t.Errorf("server got %q on stdin", got)
	}
	r = Docker(t, host, "no-such-command")
	if r.ExitCode == 0 {
		t.Errorf("unknown command exited 0: %q", r.Combined())
	}
	r = Docker(t, "unix:///nonexistent/docker.sock", "ps")
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, "nonexistent") {
		t.Errorf("docker ps against no server: %d %q", r.ExitCode, r.Combined())
	}
	// Every command of a test shares one DOCKER_CONFIG.
	if DockerConfig(t) != DockerConfig(t) {
		t.Error("DOCKER_CONFIG differs between calls")
	}
}

func TestDockerTimeout(t *testing.T) {
	// A server that accepts and never answers.
	sock := filepath.Join(t.TempDir(), "hang.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fake := &recordingTB{T: t}
	start := time.Now()
	r := RunDocker(fake, DockerCmd{Host: "unix://" + sock, Args: []string{"ps"}, Timeout: 500 * time.Millisecond})
	if r.ExitCode != -1 || !fake.errored {
		t.Errorf("hung docker: exit %d, reported %v", r.ExitCode, fake.errored)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v", d)
	}
}

// recordingTB records Errorf instead of failing the test.
type recordingTB struct {
	*testing.T
	errored bool
}

func (r *recordingTB) Errorf(string, ...any) { r.errored = true }

func needRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}

func fakeMacro(t *testing.T) string {
	return Binary(t, "./internal/testenv/testdata/fakemacro")
}

func httpGet(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// The lifecycle of a server process and the cleanup after it, with a stand-in
// for macro that leaves a shim process and mounts behind.
func TestServerLifecycle(t *testing.T) {
	needRoot(t)
	var s *Server
	var shim int
	t.Run("run", func(t *testing.T) {
		s = StartServer(t, WithBinary(fakeMacro(t)), WithTCP())
		if !strings.HasPrefix(s.Host(), "unix:///") || !strings.HasPrefix(s.TCPHost(), "tcp://127.0.0.1:") {
			t.Fatalf("hosts %q %q", s.Host(), s.TCPHost())
		}
		c := s.Client()
		if got := httpGet(t, c, "http://docker/starts"); got != "1" {
			t.Errorf("starts = %s", got)
		}
		if got := httpGet(t, http.DefaultClient, "http://"+s.TCPAddr+"/_ping"); got != "OK" {
			t.Errorf("tcp ping = %q", got)
		}
		if err := s.Stop(); err != nil {
			t.Fatal(err)
		}
		if s.Running() {
			t.Fatal("running after Stop")
		}
		s.Start()
		if got := httpGet(t, c, "http://docker/starts"); got != "2" {
			t.Errorf("starts after Stop+Start = %s", got)
		}
		s.Kill()
		s.Start()
		if got := httpGet(t, c, "http://docker/starts"); got != "3" {
			t.Errorf("starts after Kill+Start = %s", got)
		}
		resp, err := c.Post("http://docker/leak", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if shim, err = strconv.Atoi(string(b)); err != nil {
			t.Fatalf("leak: %s", b)
		}
		if !processRunning(shim) {
			t.Fatal("shim not running")
		}
		if !strings.Contains(s.Log(), "fakemacro: serving") {
			t.Errorf("log: %q", s.Log())
		}
	})
	// The subtest's cleanups have run.
	if processRunning(shim) {
		t.Errorf("shim %d survived cleanup", shim)
		syscall.Kill(shim, syscall.SIGKILL)
	}
	if mps, _ := mountsUnder(s.DataDir); len(mps) > 0 {
		t.Errorf("mounts survived cleanup: %q", mps)
	}
	if _, err := os.Stat(s.DataDir); !os.IsNotExist(err) {
		t.Errorf("data dir survived cleanup: %v", err)
	}
}

func TestServerStartFailureShowsLog(t *testing.T) {
	needRoot(t)
	// A "server" that exits at once: StartServer must fail, not hang, and
	// say what the server printed.
	script := filepath.Join(t.TempDir(), "broken")
	os.WriteFile(script, []byte("#!/bin/sh\necho broken server says hello >&2\nexit 3\n"), 0o755)
	fake := &fatalTB{T: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		StartServer(fake, WithBinary(script))
	}()
	<-done
	if !strings.Contains(fake.msg, "broken server says hello") || !strings.Contains(fake.msg, "exit status 3") {
		t.Errorf("failure message: %q", fake.msg)
	}
}

// fatalTB records the message of Fatalf and ends the goroutine as
// testing.T does.
type fatalTB struct {
	*testing.T
	msg string
}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestSweepStale(t *testing.T) {
	needRoot(t)
	dir, err := os.MkdirTemp("", dataDirPrefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cleanupDataDir(dir, true, t.Logf) })
	// Owned by a process that is gone.
	dead := exec.Command("true")
	dead.Run()
	os.WriteFile(filepath.Join(dir, ownerName), fmt.Appendf(nil, "%d 1\n", dead.Process.Pid), 0o644)
	proc := exec.Command(fakeMacro(t), "shim", "--state", dir+"/x")
	if err := proc.Start(); err != nil {
		t.Fatal(err)
	}
	go proc.Wait()
	mnt := filepath.Join(dir, "m")
	os.Mkdir(mnt, 0o755)
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	// A live test's directory is left alone.
	live, err := os.MkdirTemp("", dataDirPrefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(live) })
	if err := writeOwner(live); err != nil {
		t.Fatal(err)
	}

	sweepStale(t.Logf)

	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("stale dir still there: %v", err)
	}
	time.Sleep(50 * time.Millisecond)
	if processRunning(proc.Process.Pid) {
		t.Error("process of the stale dir still runs")
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("live dir removed: %v", err)
	}
}

func TestMentionsPath(t *testing.T) {
	for _, tc := range []struct {
		s, dir string
		want   bool
	}{
		{"macro\x00server\x00--data-dir\x00/tmp/macro-e2e-1", "/tmp/macro-e2e-1", true},
		{"shim\x00--state=/tmp/macro-e2e-1/c/abc", "/tmp/macro-e2e-1", true},
		{"macro\x00--data-dir\x00/tmp/macro-e2e-12", "/tmp/macro-e2e-1", false},
		{"/tmp/macro-e2e-12\x00/tmp/macro-e2e-1:x", "/tmp/macro-e2e-1", true},
		{"sleep\x001000", "/tmp/macro-e2e-1", false},
	} {
		if got := mentionsPath(tc.s, tc.dir); got != tc.want {
			t.Errorf("mentionsPath(%q, %q) = %v", tc.s, tc.dir, got)
		}
	}
	if got := unescapeMountinfo(`/tmp/a\040b\\c`); got != `/tmp/a b\\c` {
		t.Errorf("unescape = %q", got)
	}
}

// The real server, once cmd/macro exists: start, answer the docker CLI,
// restart on the same data directory.
func TestStartServerMacro(t *testing.T) {
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := filepath.Glob(filepath.Join(root, "cmd", "macro", "*.go")); len(m) == 0 {
		t.Skip("cmd/macro has no Go files yet")
	}
	s := StartServer(t)
	MustDocker(t, s.Host(), "version")
	if err := s.Stop(); err != nil {
		t.Error(err)
	}
	s.Start()
	MustDocker(t, s.Host(), "info")
	s.Kill()
	s.Start()
	MustDocker(t, s.Host(), "ps", "-a")
}
