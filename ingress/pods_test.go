package ingress

import (
	"testing"

	"github.com/macro-cloud/macro/types"
)

func TestFromPodReadiness(t *testing.T) {
	run := types.PodStatus{Phase: types.PhaseRunning, IPv6: "fd00::1", Node: "n-status"}
	health := func(s string) types.PodStatus { st := run; st.Health = &types.Health{Status: s}; return st }
	frozen := run
	frozen.Suspend.Suspended = true
	for _, c := range []struct {
		name                       string
		st                         types.PodStatus
		ready, starting, suspended bool
	}{
		{"running, no healthcheck", run, true, false, false},
		{"healthy", health("healthy"), true, false, false},
		{"starting", health("starting"), false, true, false},
		{"unhealthy", health("unhealthy"), false, false, false},
		{"exited", types.PodStatus{Phase: types.PhaseExited}, false, false, false},
		{"suspended", frozen, false, false, true},
	} {
		b := FromPod(types.Pod{ID: "p", Tenant: "t", Node: "n1"}, c.st)
		if b.Ready != c.ready || b.Starting != c.starting || b.Suspended != c.suspended {
			t.Errorf("%s: ready %v starting %v suspended %v", c.name, b.Ready, b.Starting, b.Suspended)
		}
		if b.Node != "n1" {
			t.Errorf("%s: node %q, want the assignment's", c.name, b.Node)
		}
	}
}
