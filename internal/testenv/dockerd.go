package testenv

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// DockerdBinary is Debian's dockerd (package docker.io, 20.10), the
// reference of the differential tests. macro never uses it.
const DockerdBinary = "/usr/sbin/dockerd"

const (
	dockerdDirPrefix = "macro-dref-"
	dockerdSocket    = "ref.sock"
	dockerdLogName   = "dockerd.log"
)

// Dockerd is a private Docker daemon started by StartDockerd.
//
// It runs on its own directory DIR (a short name in os.TempDir()): its data
// root, exec root, pidfile, config file, trust key and log are all under
// DIR, and it starts its own containerd (dockerd 20.10 supervises one when
// no system containerd runs) whose state and socket are under DIR/exec and
// DIR/root as well. The containers' cgroups are under a top-level cgroup
// named after DIR (--cgroup-parent /dref-XXXX for DIR /tmp/macro-dref-XXXX), their network namespaces
// under DIR/exec/netns.
//
// It never touches the host's network: --iptables=false, --ip6tables=false,
// --ip-forward=false, --ip-masq=false, --userland-proxy=false and
// --bridge=none (no docker0). Without a bridge the only networks are "none"
// and "host". A container created without --network still starts (its
// NetworkMode is "default", attached to a "bridge" that does not exist, so
// it has only a loopback), but `docker run` then prints "WARNING: IPv4
// forwarding is disabled. Networking will not work." on standard error:
// tests that compare output use `--network none`, which macro accepts too.
//
// Outside DIR it leaves only what the containerd shims and dockerd create
// and remove themselves: shim sockets in /run/containerd/s (removed at
// cleanup for the containers it knew) and the empty /run/docker/plugins
// (removed at cleanup when empty).
type Dockerd struct {
	Dir     string // everything of this daemon
	Socket  string // DIR/ref.sock
	LogPath string // dockerd's (and its containerd's) output

	t            testing.TB
	cgroupParent string // "/dref-XXXX"
	cmd          *exec.Cmd
	done         chan struct{}
}

var dockerdSweepOnce sync.Once

// StartDockerd starts a private dockerd, waits until it answers /_ping, and
// stops it and removes everything it left behind (containers, mounts,
// cgroups, network namespaces, shims, DIR) when the test ends, pass or
// fail. It skips the test when not run as root or when dockerd is not
// installed (scripts/setup.sh installs Debian's docker.io). MACRO_TEST_KEEP=1
// keeps DIR (the daemon is stopped all the same).
func StartDockerd(t testing.TB) *Dockerd {
	t.Helper()
	RequireRoot(t)
	if _, err := os.Stat(DockerdBinary); err != nil {
		t.Skipf("testenv: %s is not installed (Debian's docker.io, the reference of differential tests; scripts/setup.sh installs it)", DockerdBinary)
	}
	dockerdSweepOnce.Do(func() { sweepStaleDockerd(t.Logf) })

	dir, err := os.MkdirTemp("", dockerdDirPrefix)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	d := &Dockerd{
		Dir:          dir,
		Socket:       filepath.Join(dir, dockerdSocket),
		LogPath:      filepath.Join(dir, dockerdLogName),
		t:            t,
		cgroupParent: dockerdCgroupParent(dir),
	}
	t.Cleanup(d.cleanup)
	if err := writeOwner(dir); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	// A config file of our own, so that /etc/docker/daemon.json does not
	// apply, and the trust key in DIR rather than /etc/docker/key.json.
	cfg, _ := json.Marshal(map[string]any{"deprecated-key-path": filepath.Join(dir, "key.json")})
	if err := os.WriteFile(filepath.Join(dir, "daemon.json"), cfg, 0o644); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	args := []string{
		"--config-file", filepath.Join(dir, "daemon.json"),
		"--data-root", filepath.Join(dir, "root"),
		"--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "dockerd.pid"),
		"-H", "unix://" + d.Socket,
		"--iptables=false", "--ip6tables=false", "--ip-forward=false", "--ip-masq=false",
		"--bridge=none", "--userland-proxy=false",
		"--cgroup-parent", d.cgroupParent,
		"--shutdown-timeout", "2",
	}
	logf, err := os.OpenFile(d.LogPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	cmd := exec.Command(DockerdBinary, args...)
	// No DOCKER_* or proxy setting of the person running the tests.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DOCKER_") && !strings.HasPrefix(strings.ToUpper(kv), "HTTP_PROXY=") &&
			!strings.HasPrefix(strings.ToUpper(kv), "HTTPS_PROXY=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	logf.Close()
	if err != nil {
		t.Fatalf("testenv: start dockerd: %v", err)
	}
	d.cmd, d.done = cmd, make(chan struct{})
	go func() {
		cmd.Wait()
		close(d.done)
	}()
	if err := d.waitReady(); err != nil {
		t.Fatalf("testenv: dockerd on %s: %v\n--- dockerd log ---\n%s", dir, err, tail(d.Log(), 32<<10))
	}
	return d
}

// Host is the daemon's DOCKER_HOST: "unix://DIR/ref.sock".
func (d *Dockerd) Host() string { return "unix://" + d.Socket }

// Client returns an HTTP client that talks to the daemon's socket whatever
// host a URL names: "http://docker/v1.41/containers/json".
func (d *Dockerd) Client() *http.Client { return unixClient(d.Socket) }

// Log returns what dockerd has written to its log so far.
func (d *Dockerd) Log() string {
	b, _ := os.ReadFile(d.LogPath)
	return string(b)
}

func (d *Dockerd) waitReady() error {
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	client := d.Client()
	client.Timeout = 2 * time.Second
	for {
		last := d.get(ctx, client, "/_ping", nil)
		if last == nil {
			return nil
		}
		select {
		case <-d.done:
			return fmt.Errorf("exited before answering /_ping: %v", d.cmd.ProcessState)
		case <-ctx.Done():
			return fmt.Errorf("no answer to /_ping within %v: %v", readyTimeout, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (d *Dockerd) get(ctx context.Context, client *http.Client, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker"+path, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s %q", path, resp.Status, body)
	}
	if v != nil {
		return json.Unmarshal(body, v)
	}
	return nil
}

// removeContainers force-removes every container, so that dockerd's
// shutdown does not wait for containers that ignore SIGTERM.
func (d *Dockerd) removeContainers() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	client := d.Client()
	var list []struct{ ID string }
	if err := d.get(ctx, client, "/containers/json?all=1", &list); err != nil {
		return
	}
	for _, c := range list {
		req, err := http.NewRequestWithContext(ctx, http.MethodDelete, "http://docker/containers/"+c.ID+"?force=1&v=1", nil)
		if err != nil {
			continue
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
		}
	}
}

// stop removes the containers, sends SIGTERM and waits for dockerd to exit;
// after 15 s it sends SIGKILL.
func (d *Dockerd) stop() error {
	select {
	case <-d.done:
		return nil
	default:
	}
	d.removeContainers()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
		return nil
	case <-time.After(stopTimeout):
	}
	d.cmd.Process.Kill()
	<-d.done
	return fmt.Errorf("testenv: dockerd did not exit within %v of SIGTERM; killed", stopTimeout)
}

func (d *Dockerd) cleanup() {
	t := d.t
	if d.cmd != nil {
		if err := d.stop(); err != nil {
			t.Log(err)
		}
	}
	if t.Failed() {
		t.Logf("--- dockerd log (%s) ---\n%s", d.LogPath, tail(d.Log(), 16<<10))
	}
	keep := os.Getenv("MACRO_TEST_KEEP") == "1"
	if err := cleanupDockerdDir(d.Dir, !keep, t.Logf); err != nil {
		t.Errorf("testenv: cleaning up after dockerd: %v", err)
	}
	if keep {
		t.Logf("testenv: MACRO_TEST_KEEP=1: kept %s", d.Dir)
	}
}

// cleanupDockerdDir stops everything a dockerd on dir left behind and, with
// remove, removes dir:
//  1. processes whose command line names dir: dockerd, its containerd, the
//     containerd shims (-address DIR/exec/containerd/containerd.sock);
//  2. the containers' processes and cgroups, under /dref-XXXX in every
//     hierarchy (the runc state in DIR/exec/runtime-runc goes with dir);
//  3. the shims' sockets in /run/containerd/s;
//  4. mounts under dir (overlays, network namespaces, the data root that
//     dockerd bind-mounts onto itself to make it shared);
//  5. dir, then /run/docker/plugins, /run/docker, /run/containerd/s and
//     /run/containerd if they are empty.
func cleanupDockerdDir(dir string, remove bool, logf func(string, ...any)) error {
	killByCmdline(dir)
	name := strings.TrimPrefix(dockerdCgroupParent(dir), "/")
	var cgroups []string
	for _, pattern := range []string{cgroupRoot + "/" + name, cgroupRoot + "/*/" + name} {
		m, _ := filepath.Glob(pattern)
		cgroups = append(cgroups, m...)
	}
	removeCgroups(cgroups, logf)
	removeShimSockets(dir)
	var errs []error
	if err := unmountUnder(dir); err != nil {
		errs = append(errs, err)
	}
	if remove {
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, err)
		}
	}
	// Only when empty: another daemon may be using them.
	for _, p := range []string{"/run/docker/plugins", "/run/docker", "/run/containerd/s", "/run/containerd"} {
		os.Remove(p)
	}
	return errors.Join(errs...)
}

// dockerdCgroupParent is the --cgroup-parent of the dockerd on dir:
// /dref-<suffix of dir> (not /macro*, the cgroups of macro servers).
func dockerdCgroupParent(dir string) string {
	return "/dref-" + strings.TrimPrefix(filepath.Base(dir), dockerdDirPrefix)
}

// removeShimSockets removes the sockets of the containerd shims of the
// containers of the dockerd on dir: containerd 1.6 names them
// /run/containerd/s/<hex sha256 of ADDRESS/NAMESPACE/ID>, and a killed
// shim leaves its socket behind.
func removeShimSockets(dir string) {
	addr := filepath.Join(dir, "exec", "containerd", "containerd.sock")
	ents, _ := os.ReadDir(filepath.Join(dir, "root", "containers"))
	for _, e := range ents {
		h := sha256.Sum256([]byte(filepath.Join(addr, "moby", e.Name())))
		os.Remove(filepath.Join("/run/containerd/s", hex.EncodeToString(h[:])))
	}
}

// sweepStaleDockerd cleans up after the dockerds of test binaries that died
// without running their cleanups.
func sweepStaleDockerd(logf func(string, ...any)) {
	sweepStaleDirs(dockerdDirPrefix, cleanupDockerdDir, logf)
}
