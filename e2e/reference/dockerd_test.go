package reference

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/macro-cloud/macro/internal/testenv"
	"github.com/macro-cloud/macro/internal/testimages"
)

// TestDockerdCleansUp checks that testenv.StartDockerd leaves nothing
// behind, even with a container still running (one that ignores SIGTERM)
// when the test ends, and documents how containers behave without a bridge.
func TestDockerdCleansUp(t *testing.T) {
	testenv.RequireRoot(t)
	var dir string
	t.Run("dockerd", func(t *testing.T) {
		d := testenv.StartDockerd(t)
		dir = d.Dir
		testenv.MustDocker(t, d.Host(), "load", "-i", testimages.Busybox(t))
		testenv.MustDocker(t, d.Host(), "run", "-d", "--network", "none", "--name", "left-running", "busybox", "sleep", "1000")

		// --bridge=none: a container without --network still runs, with
		// only a loopback, and docker run warns about it while the host
		// does not forward IPv4 (macro's node network turns forwarding on
		// for its pods' egress, so the warning depends on what ran before).
		fwd, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
		r := testenv.Docker(t, d.Host(), "run", "--rm", "busybox", "sh", "-c", "ls /sys/class/net")
		warned := strings.Contains(r.Stderr, "IPv4 forwarding is disabled")
		if r.ExitCode != 0 || strings.TrimSpace(r.Stdout) != "lo" || warned != (strings.TrimSpace(string(fwd)) == "0") {
			t.Errorf("run without --network: exit %d stdout %q stderr %q", r.ExitCode, r.Stdout, r.Stderr)
		}
		if out := testenv.MustDocker(t, d.Host(), "network", "ls", "--format", "{{.Name}}").Stdout; strings.Contains(out, "bridge") {
			t.Errorf("dockerd has a bridge network:\n%s", out)
		}
	})
	if dir == "" {
		t.Fatal("dockerd did not start")
	}

	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s is still there: %v", dir, err)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), dir) {
			t.Errorf("a process still runs on %s: %s: %q", dir, p, b)
		}
	}
	cg := "dref-" + strings.TrimPrefix(filepath.Base(dir), "macro-dref-")
	for _, pattern := range []string{"/sys/fs/cgroup/" + cg, "/sys/fs/cgroup/*/" + cg} {
		if m, _ := filepath.Glob(pattern); len(m) > 0 {
			t.Errorf("cgroups left behind: %v", m)
		}
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 4 && strings.HasPrefix(fields[4], dir) {
			t.Errorf("mount left behind: %s", sc.Text())
		}
	}
	if ents, _ := os.ReadDir("/run/containerd/s"); len(ents) > 0 && !otherDockerd() {
		t.Errorf("shim sockets left behind in /run/containerd/s: %d", len(ents))
	}
}

// otherDockerd reports whether a dockerd other than ours runs (its shims
// have sockets in /run/containerd/s too).
func otherDockerd() bool {
	procs, _ := filepath.Glob("/proc/[0-9]*/comm")
	for _, p := range procs {
		if b, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(b)) == "dockerd" {
			return true
		}
	}
	return false
}
