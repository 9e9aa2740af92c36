package docker

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/macro-cloud/macro/sched"
	"github.com/macro-cloud/macro/store"
	"github.com/macro-cloud/macro/types"
)

const mib = 1 << 20

// qpod is a pod for the quota arithmetic: its memory limit (0: none),
// desired state and run, restart policy, and observed phase and run.
func qpod(id string, mem int64, desired types.PodPhase, run int, policy string, phase types.PodPhase, stRun int) (types.Pod, types.PodStatus) {
	p := types.Pod{ID: id, Desired: types.DesiredState{State: desired, Run: run}}
	p.Spec.Resources.MemoryBytes = mem
	p.Spec.Restart.Policy = policy
	return p, types.PodStatus{ID: id, Phase: phase, Run: stRun}
}

func tenantPods(pods ...any) store.TenantPods {
	tp := store.TenantPods{Statuses: map[string]types.PodStatus{}, Full: true}
	for i := 0; i < len(pods); i += 2 {
		p := pods[i].(types.Pod)
		tp.Pods = append(tp.Pods, p)
		tp.Statuses[p.ID] = pods[i+1].(types.PodStatus)
		tp.Usage.Pods++
		if types.MeantToRun(p) {
			tp.Usage.MemoryBytes += sched.PodMemory(p.Spec)
		}
	}
	return tp
}

// byUsage is tp as a create first sees it: the usage record alone.
func byUsage(tp store.TenantPods) store.TenantPods {
	return store.TenantPods{Usage: tp.Usage}
}

func TestHoldsMemory(t *testing.T) {
	R, E, C, P := types.PhaseRunning, types.PhaseExited, types.PhaseCreated, types.PhasePaused
	for _, c := range []struct {
		name    string
		desired types.PodPhase
		run     int
		policy  string
		phase   types.PodPhase
		stRun   int
		want    bool
	}{
		{"running", R, 1, "no", R, 1, true},
		{"paused", P, 1, "no", P, 1, true},
		{"told to start, not yet answered", R, 2, "no", E, 1, true},
		{"created, never started", C, 0, "no", C, 0, false},
		{"stopped", E, 1, "no", E, 1, false},
		{"exited by itself, no restart", R, 1, "no", E, 1, false},
		{"exited by itself, restart always", R, 1, "always", E, 1, true},
		{"exited by itself, on-failure", R, 1, "on-failure", E, 1, true},
		{"restarting", R, 1, "on-failure", types.PhaseRestarting, 1, true},
		{"stopped, restart always", E, 1, "always", E, 1, false},
		{"killed (not SIGKILL), still running", R, 1, "always", R, 1, true},
		{"killed, exited, restart always", R, 1, "always", E, 1, false},
	} {
		p, st := qpod("a", 0, c.desired, c.run, c.policy, c.phase, c.stRun)
		p.Desired.Killed = strings.HasPrefix(c.name, "killed")
		if got := types.HoldsMemory(p, st); got != c.want {
			t.Errorf("%s: holdsMemory %v, want %v", c.name, got, c.want)
		}
	}
}

func TestQuotaArithmetic(t *testing.T) {
	R, E, C := types.PhaseRunning, types.PhaseExited, types.PhaseCreated
	running, runningSt := qpod("run", 128*mib, R, 1, "no", R, 1)
	nolimit, nolimitSt := qpod("nolimit", 0, R, 1, "no", R, 1) // counts 256 MiB
	stopped, stoppedSt := qpod("stopped", 512*mib, E, 1, "no", E, 1)
	created, createdSt := qpod("created", 64*mib, C, 0, "no", C, 0)
	tp := tenantPods(running, runningSt, nolimit, nolimitSt, stopped, stoppedSt, created, createdSt)
	if got := memoryInUse(tp, ""); got != 384*mib {
		t.Fatalf("memoryInUse: %d MiB, want 384", got/mib)
	}
	if got := memoryInUse(tp, "run"); got != 256*mib {
		t.Fatalf("memoryInUse but run: %d MiB, want 256", got/mib)
	}
	newPod := func(mem int64) types.Pod {
		p, _ := qpod("new", mem, C, 0, "no", C, 0)
		return p
	}
	started := func(p types.Pod) types.Pod {
		p.Desired = types.DesiredState{State: R, Run: p.Desired.Run + 1}
		return p
	}
	for _, c := range []struct {
		name string
		q    types.Quota
		err  string // "" for allowed
		do   func(types.Quota) error
	}{
		{"no quota", types.Quota{}, "", func(q types.Quota) error { return checkCreate("t", q, tp, newPod(0)) }},
		{"pods: room for one more", types.Quota{Pods: 5}, "", func(q types.Quota) error { return checkCreate("t", q, tp, newPod(0)) }},
		{"pods: full", types.Quota{Pods: 4}, "tenant t may have 4 pods (containers, running or not), has 4", func(q types.Quota) error { return checkCreate("t", q, tp, newPod(0)) }},
		{"pods: over after lowering", types.Quota{Pods: 2}, "may have 2 pods (containers, running or not), has 4", func(q types.Quota) error { return checkCreate("t", q, tp, newPod(0)) }},
		{"memory: fits exactly", types.Quota{MemoryBytes: 512 * mib}, "", func(q types.Quota) error { return checkCreate("t", q, tp, newPod(128*mib)) }},
		{"memory: one byte over", types.Quota{MemoryBytes: 512*mib - 1}, "its running pods have 384.0 MiB and this one needs 128.0 MiB", func(q types.Quota) error { return checkCreate("t", q, tp, newPod(128*mib)) }},
		{"memory: no limit counts the default", types.Quota{MemoryBytes: 512 * mib}, "this one needs 256.0 MiB", func(q types.Quota) error { return checkCreate("t", q, tp, newPod(0)) }},
		{"start of a stopped pod", types.Quota{MemoryBytes: 800 * mib}, "this one needs 512.0 MiB", func(q types.Quota) error {
			return checkStart("t", q, tp, stopped, started(stopped))
		}},
		{"start of a stopped pod that fits", types.Quota{MemoryBytes: 896 * mib}, "", func(q types.Quota) error {
			return checkStart("t", q, tp, stopped, started(stopped))
		}},
		{"start of a created pod", types.Quota{MemoryBytes: 400 * mib}, "this one needs 64.0 MiB", func(q types.Quota) error {
			return checkStart("t", q, tp, created, started(created))
		}},
		{"restart of a running pod over a lowered quota", types.Quota{MemoryBytes: 100 * mib}, "", func(q types.Quota) error {
			return checkStart("t", q, tp, running, started(running))
		}},
		{"an exited pod given restart always", types.Quota{MemoryBytes: 300 * mib}, "this one needs 128.0 MiB", func(q types.Quota) error {
			before, _ := qpod("run", 128*mib, R, 1, "no", R, 1)
			tp := tenantPods(nolimit, nolimitSt, before, types.PodStatus{ID: "run", Phase: E, Run: 1})
			after := before
			after.Spec.Restart.Policy = "always"
			return checkStart("t", q, tp, before, after)
		}},
		{"an exited pod keeping restart no", types.Quota{MemoryBytes: 1}, "", func(q types.Quota) error {
			before, _ := qpod("run", 128*mib, R, 1, "no", R, 1)
			tp := tenantPods(before, types.PodStatus{ID: "run", Phase: E, Run: 1})
			return checkStart("t", q, tp, before, before)
		}},
		{"by the usage record: pods full", types.Quota{Pods: 4}, "tenant t may have 4 pods (containers, running or not), has 4", func(q types.Quota) error {
			return checkCreate("t", q, byUsage(tp), newPod(0))
		}},
		{"by the usage record: memory fits", types.Quota{MemoryBytes: 512 * mib}, "", func(q types.Quota) error {
			return checkCreate("t", q, byUsage(tp), newPod(128*mib))
		}},
		{"by the usage record: memory does not fit, every pod needed", types.Quota{MemoryBytes: 512*mib - 1}, "", func(q types.Quota) error {
			if err := checkCreate("t", q, byUsage(tp), newPod(128*mib)); !errors.Is(err, store.ErrNeedPods) {
				return fmt.Errorf("want store.ErrNeedPods, got %v", err)
			}
			return nil
		}},
		{"stop is never refused", types.Quota{MemoryBytes: 1}, "", func(q types.Quota) error {
			after := running
			after.Desired.State = E
			return checkStart("t", q, tp, running, after)
		}},
	} {
		err := c.do(c.q)
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err) || !strings.HasPrefix(err.Error(), "quota exceeded: ") || statusOf(err) != 403):
			t.Errorf("%s: %v (status %d), want 403 %q", c.name, err, statusOf(err), c.err)
		}
	}
}

func TestDefaultMemory(t *testing.T) {
	spec := types.PodSpec{DockerHostConfig: []byte(`{"Memory":0,"NanoCpus":5}`)}
	if err := defaultMemory(&spec); err != nil {
		t.Fatal(err)
	}
	var hc map[string]int64
	if err := json.Unmarshal(spec.DockerHostConfig, &hc); err != nil {
		t.Fatal(err)
	}
	if spec.Resources.MemoryBytes != types.DefaultPodMemory || spec.Resources.MemorySwapBytes != 2*types.DefaultPodMemory ||
		hc["Memory"] != types.DefaultPodMemory || hc["NanoCpus"] != 5 {
		t.Errorf("defaultMemory: %+v %v", spec.Resources, hc)
	}
}
