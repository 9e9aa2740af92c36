package docker_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/macro-cloud/macro/internal/testenv"
	"github.com/macro-cloud/macro/internal/testimages"
)

// TestUnschedulableCLI: a container no node can take is created, stays
// Created, and says why in docker inspect (State.Error and macro's
// Unschedulable); docker start and docker run refuse it with the same
// reason. A kr.res.mem that is not a size is refused at create. The server's one node is in zone default and has far less than a PiB.
func TestUnschedulableCLI(t *testing.T) {
	testenv.RequireRoot(t)
	srv := testenv.StartServer(t)
	host := srv.Host()
	docker := func(args ...string) testenv.Result { t.Helper(); return testenv.Docker(t, host, args...) }
	must := func(args ...string) string {
		t.Helper()
		return strings.TrimSpace(testenv.MustDocker(t, host, args...).Stdout)
	}
	must("load", "-i", testimages.Busybox(t))

	// inspect waits for the scheduler's verdict on a container.
	inspect := func(name string) (state map[string]any, node, reason string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			var out []struct {
				State         map[string]any
				Node          string
				Unschedulable string
			}
			if err := json.Unmarshal([]byte(must("inspect", name)), &out); err != nil || len(out) != 1 {
				t.Fatalf("docker inspect %s: %v", name, err)
			}
			if o := out[0]; o.Node != "" || o.Unschedulable != "" || time.Now().After(deadline) {
				return o.State, o.Node, o.Unschedulable
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	tests := []struct {
		name   string
		args   []string
		reason string
	}{
		{"big", []string{"-l", "kr.res.mem=1024T"}, "no node has 1 PiB of memory free"},
		{"mars", []string{"-l", "kr.zone=mars"}, "no node is in zone mars (the node is in zone default)"},
		{"cpus", []string{"--cpus", "4096"}, "no node has 4096 CPUs free"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			must(append(append([]string{"create", "--name", tt.name}, tt.args...), "busybox", "true")...)
			state, node, reason := inspect(tt.name)
			if node != "" || reason != tt.reason {
				t.Fatalf("docker inspect %s: Node %q, Unschedulable %q; want %q", tt.name, node, reason, tt.reason)
			}
			if state["Status"] != "created" || state["Error"] != "unschedulable: "+tt.reason {
				t.Errorf("docker inspect %s: State %v", tt.name, state)
			}
			if out := must("inspect", "--format", "{{.State.Error}}", tt.name); out != "unschedulable: "+tt.reason {
				t.Errorf("docker inspect --format {{.State.Error}}: %q", out)
			}
			if out := must("ps", "-a", "--filter", "name="+tt.name, "--format", "{{.Status}}"); out != "Created" {
				t.Errorf("docker ps -a: %q", out)
			}
			r := docker("start", tt.name)
			if r.ExitCode == 0 || !strings.Contains(r.Stderr, "is not placed on a node yet: "+tt.reason) {
				t.Errorf("docker start %s: exit %d\n%s", tt.name, r.ExitCode, r.Combined())
			}
			must("rm", tt.name)
		})
	}

	// A kr.res.mem that is not a size is refused at create.
	r := docker("create", "--name", "typo", "-l", "kr.res.mem=4X", "busybox", "true")
	if want := `invalid label kr.res.mem="4X": want a size with a unit, such as 512M or 4G (binary units: K, M, G, T)`; r.ExitCode == 0 || !strings.Contains(r.Stderr, want) {
		t.Errorf("docker create with a bad kr.res.mem: exit %d\n%s", r.ExitCode, r.Combined())
	}

	// docker run: created, not startable, and the reason is printed.
	r = docker("run", "-d", "--name", "runbig", "-l", "kr.res.mem=1024T", "busybox", "true")
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, "no node has 1 PiB of memory free") {
		t.Errorf("docker run: exit %d\n%s", r.ExitCode, r.Combined())
	}

	// A container that fits is placed on the node, and runs.
	if out := must("run", "--rm", "-l", "kr.res.mem=16M", "busybox", "echo", "placed"); out != "placed" {
		t.Errorf("docker run of a pod that fits: %q", out)
	}
}
