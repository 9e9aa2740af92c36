package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/macro-cloud/macro/runtime/ocispec"
)

// TestAutoSuspend: a pod with kr.suspend freezes once idle (its processes
// in the cgroup freezer, still running for Docker), an exec wakes it, and
// its memory (here a counter in a file of its own) survives.
func TestAutoSuspend(t *testing.T) {
	c := newCloud(t)
	id := c.must("run", "-d", "--name", "sleepy", "-l", "kr.suspend=1s", "busybox", "sh", "-c",
		`i=0; while true; do i=$((i+1)); echo $i > /tmp/n; sleep 0.05; done`)
	defer c.docker("rm", "-f", "sleepy")
	freezer := filepath.Join("/sys/fs/cgroup/freezer", ocispec.DefaultCgroupParent, id, "freezer.state")
	frozen := func() bool {
		b, err := os.ReadFile(freezer)
		return err == nil && strings.TrimSpace(string(b)) == "FROZEN"
	}

	eventually(t, "suspended in ps", func() bool {
		return strings.HasSuffix(c.must("ps", "--filter", "name=sleepy", "--format", "{{.Status}}"), "(suspended)")
	})
	if !frozen() {
		t.Fatalf("%s is not FROZEN", freezer)
	}
	st := c.state("sleepy")
	sp, _ := st["Suspend"].(map[string]any)
	if st["Status"] != "running" || st["Running"] != true || st["Paused"] != false || sp["Suspended"] != true {
		t.Fatalf("inspect State of a suspended pod: %v", st)
	}

	// The counter does not move while frozen. An exec wakes the pod and
	// runs; the counter goes on from where it was.
	n1 := c.must("exec", "sleepy", "cat", "/tmp/n")
	if frozen() {
		t.Fatal("still frozen after an exec ran in it")
	}
	eventually(t, "counter moves again", func() bool {
		n2 := c.must("exec", "sleepy", "cat", "/tmp/n")
		a, _ := strconv.Atoi(n1)
		b, _ := strconv.Atoi(n2)
		return b > a && a > 0
	})
	sp, _ = c.state("sleepy")["Suspend"].(map[string]any)
	if sp["Wakes"].(float64) < 1 || sp["SuspendedSeconds"].(float64) <= 0 {
		t.Fatalf("suspend record after a wake: %v", sp)
	}

	// Idle again, it is suspended again; docker stop still works on it.
	eventually(t, "suspended again", frozen)
	c.must("stop", "-t", "1", "sleepy")
	if st := c.state("sleepy"); st["Running"] != false {
		t.Fatalf("after stop: %v", st)
	}

	// A pod without the label is never suspended.
	c.must("run", "-d", "--name", "awake", "busybox", "sleep", "600")
	defer c.docker("rm", "-f", "awake")
	if got := c.must("ps", "--filter", "name=awake", "--format", "{{.Status}}"); strings.Contains(got, "suspended") {
		t.Fatalf("awake: %s", got)
	}
	r := c.docker("run", "-d", "--name", "badrule", "-l", "kr.suspend=soon", "busybox", "true")
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, "kr.suspend") {
		c.docker("rm", "-f", "badrule")
		t.Fatalf("bad suspend rule accepted: exit %d %s", r.ExitCode, r.Stderr)
	}

	// The tenant's default rule suspends its pods without a label, the
	// running one too; kr.suspend=off opts out.
	c.must("run", "-d", "--name", "optout", "-l", "kr.suspend=off", "busybox", "sleep", "600")
	defer c.docker("rm", "-f", "optout")
	if out, errOut, err := macroAdmin(t, c.srv.DataDir, "tenant", "set-suspend", "default", "1s"); err != nil {
		t.Fatalf("set-suspend: %v %s %s", err, out, errOut)
	}
	if out, _, _ := macroAdmin(t, c.srv.DataDir, "tenant", "ls"); !strings.Contains(out, " 1s\n") {
		t.Fatalf("tenant ls does not show the rule:\n%s", out)
	}
	status := func(name string) string {
		return c.must("ps", "--filter", "name="+name, "--format", "{{.Status}}")
	}
	eventually(t, "awake suspended by the tenant's rule", func() bool { return strings.HasSuffix(status("awake"), "(suspended)") })
	if got := status("optout"); strings.Contains(got, "suspended") {
		t.Fatalf("kr.suspend=off: %s", got)
	}
	macroAdmin(t, c.srv.DataDir, "tenant", "set-suspend", "default", "off")
}
