package agent

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/macro-cloud/macro/volume/volfs"
)

// shimEnv makes the test binary a mount process (VolumeShimMain) whose
// credentials are the URL of the test's volfs server.
const shimEnv = "MACRO_AGENT_TEST_VOLFS_SHIM"

func TestMain(m *testing.M) {
	if os.Getenv(shimEnv) != "" {
		os.Exit(VolumeShimMain(os.Args[len(os.Args)-1], func(creds []byte) (http.RoundTripper, error) {
			var base string
			if err := json.Unmarshal(creds, &base); err != nil {
				return nil, err
			}
			u, err := url.Parse(base)
			if err != nil {
				return nil, err
			}
			return rewrite{u}, nil
		}))
	}
	os.Exit(m.Run())
}

// rewrite sends http://volfs/<tenant>/<name>/<op> to the test server's
// /<op>.
type rewrite struct{ u *url.URL }

func (r rewrite) RoundTrip(req *http.Request) (*http.Response, error) {
	out := req.Clone(req.Context())
	parts := strings.SplitN(strings.TrimPrefix(req.URL.Path, "/"), "/", 3)
	out.URL.Scheme, out.URL.Host, out.Host = r.u.Scheme, r.u.Host, r.u.Host
	out.URL.Path, out.URL.RawPath = "/"+parts[len(parts)-1], ""
	return http.DefaultTransport.RoundTrip(out)
}

// shimPid is the pid a mount process wrote, 0 if none is alive.
func shimPid(a *Agent, dir string) int {
	state := a.shimState(dir)
	b, err := os.ReadFile(filepath.Join(state, "pid"))
	if err != nil || !shimAlive(state) {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// TestVolumeShimAdoption: a remote volume's mount is served by a process
// of its own; a new agent on the same data dir (a restart) adopts it, and
// a file opened before goes on working; unmounting ends the process; a
// removed pod's mount process is ended by a restarted agent.
func TestVolumeShimAdoption(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("FUSE mounts need root")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
	primary := t.TempDir()
	srv := httptest.NewServer(volfs.Handler(func(context.Context) (string, error) { return primary, nil }))
	t.Cleanup(srv.Close)
	t.Setenv(shimEnv, "1")
	creds, _ := json.Marshal(srv.URL)
	data := t.TempDir()
	newAgent := func() *Agent {
		return &Agent{
			cfg: Config{DataDir: data, VolumeShim: func() ([]string, []byte, bool) {
				return []string{os.Args[0]}, creds, true
			}},
			log:     slog.Default(),
			workers: map[string]*worker{},
		}
	}
	a := newAgent()
	pod := "0123456789abcdef"
	dir := a.volfsDir(pod, 0)
	// Whatever happens, no process or mount stays.
	t.Cleanup(func() {
		for _, d := range []string{dir, a.volfsDir(pod, 1)} {
			if pid := shimPid(a, d); pid != 0 {
				syscall.Kill(pid, syscall.SIGKILL)
			}
			unix.Unmount(d, unix.MNT_DETACH)
		}
	})
	if _, err := a.mountVolfs("alice", "v", dir, slog.Default()); err != nil {
		t.Fatal(err)
	}
	pid := shimPid(a, dir)
	if pid == 0 || pid == os.Getpid() {
		t.Fatalf("no mount process (pid %d)", pid)
	}
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("one"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(primary, "f")); string(b) != "one" {
		t.Fatalf("the primary has %q", b)
	}
	open, err := os.OpenFile(filepath.Join(dir, "g"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()

	// The agent restarts: the new one adopts the process.
	b := newAgent()
	if _, err := b.mountVolfs("alice", "v", dir, slog.Default()); err != nil {
		t.Fatal(err)
	}
	if got := shimPid(b, dir); got != pid {
		t.Fatalf("after the restart the mount process is %d, was %d", got, pid)
	}
	if _, err := open.WriteString("two"); err != nil {
		t.Fatalf("write to a file opened before the restart: %v", err)
	}
	if err := open.Close(); err != nil {
		t.Fatalf("close of a file opened before the restart: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(primary, "g")); string(b) != "two" {
		t.Fatalf("the primary has %q", b)
	}
	// Unmounting ends it.
	b.volfs.mu.Lock()
	mnt := b.volfs.m[dir]
	b.volfs.mu.Unlock()
	if err := mnt.Unmount(); err != nil {
		t.Fatal(err)
	}
	if shimAlive(b.shimState(dir)) || isMountPoint(dir) {
		t.Fatalf("after Unmount: process alive %v, mounted %v", shimAlive(b.shimState(dir)), isMountPoint(dir))
	}
	if err := syscall.Kill(pid, 0); err == nil {
		// Our child until reaped: a zombie at most.
		if st, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); !strings.Contains(string(st), ") Z ") {
			t.Fatalf("process %d still runs: %s", pid, st)
		}
	}

	// A pod removed while no agent ran: the next agent ends its process.
	orphan := a.volfsDir(pod, 1)
	if _, err := a.mountVolfs("alice", "v", orphan, slog.Default()); err != nil {
		t.Fatal(err)
	}
	c := newAgent()
	c.collectShimOrphans(map[string]bool{"another": true})
	if shimAlive(c.shimState(orphan)) || isMountPoint(orphan) {
		t.Fatal("the removed pod's mount process or mount remains")
	}
	if _, err := os.Stat(orphan); !os.IsNotExist(err) {
		t.Fatalf("the removed pod's mount point remains: %v", err)
	}
}
