package agent

import (
	"context"
	"errors"
	"testing"

	"github.com/macro-cloud/macro/runtime"
	"github.com/macro-cloud/macro/runtime/fake"
	"github.com/macro-cloud/macro/types"
)

func TestSuspendAndWake(t *testing.T) {
	rt := fake.New()
	dir := t.TempDir()
	h := newHarness(t, rt, dir)
	p := testPod("s1", types.Restart{Policy: "no"})
	p.Spec.Cmd = []string{"sleep", "600"}
	h.server.pods <- types.Assignment{Sync: true, Pods: []types.Pod{p}}
	p = running(p)
	h.server.pods <- types.Assignment{Pod: &p}
	h.server.waitStatus(t, p.ID, "running", func(s types.PodStatus) bool { return s.Phase == types.PhaseRunning })
	a := h.agent(t)
	ctx := context.Background()

	if err := a.Suspend(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	st := h.server.waitStatus(t, p.ID, "suspended", func(s types.PodStatus) bool { return s.Suspended() })
	if st.Phase != types.PhaseRunning {
		t.Fatalf("a suspended pod runs for Docker: phase %s", st.Phase)
	}
	if rs, _ := rt.State(ctx, p.ID); rs.Status != runtime.StatusPaused {
		t.Fatalf("runtime status %s, want frozen", rs.Status)
	}
	if err := a.Suspend(ctx, p.ID); err != nil {
		t.Fatalf("suspending twice: %v", err)
	}

	// An agent restart keeps it suspended, not paused.
	h.stop()
	h = newHarness(t, rt, dir)
	h.server.pods <- types.Assignment{Sync: true, Pods: []types.Pod{p}}
	st = h.server.waitStatus(t, p.ID, "adopted", func(s types.PodStatus) bool { return s.Phase != "" })
	if st.Phase != types.PhaseRunning || !st.Suspended() {
		t.Fatalf("after agent restart: phase %s suspended %v", st.Phase, st.Suspended())
	}
	a = h.agent(t)

	if err := a.Wake(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	if rs, _ := rt.State(ctx, p.ID); rs.Status != runtime.StatusRunning {
		t.Fatalf("Wake returned before the thaw: %s", rs.Status)
	}
	st = h.server.waitStatus(t, p.ID, "woken", func(s types.PodStatus) bool { return s.Suspend.Wakes == 1 })
	if st.Suspended() || st.Suspend.Total <= 0 || !st.Suspend.Since.IsZero() {
		t.Fatalf("after wake: %+v", st.Suspend)
	}
	if err := a.Wake(ctx, p.ID); err != nil {
		t.Fatalf("waking an awake pod: %v", err)
	}

	// A stop of a suspended pod thaws it first, so the signal lands.
	if err := a.Suspend(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	h.server.waitStatus(t, p.ID, "suspended again", func(s types.PodStatus) bool { return s.Suspended() })
	p.Desired = types.DesiredState{State: types.PhaseExited, Run: p.Desired.Run}
	h.server.pods <- types.Assignment{Pod: &p}
	st = h.server.waitStatus(t, p.ID, "stopped", func(s types.PodStatus) bool { return s.Phase == types.PhaseExited })
	if st.ExitCode != 143 || st.Suspended() {
		t.Fatalf("stop of a suspended pod: exit %d suspended %v", st.ExitCode, st.Suspended())
	}
	if err := a.Suspend(ctx, p.ID); !errors.Is(err, runtime.ErrNotRunning) {
		t.Fatalf("suspend of an exited pod: %v", err)
	}
}

// TestSuspendMeetsExec: suspends and execs at once, many times; an exec
// never finds the pod frozen (the fake runtime refuses an exec in a
// paused container, as runc does), whichever comes first.
func TestSuspendMeetsExec(t *testing.T) {
	rt := fake.New()
	h := newHarness(t, rt, t.TempDir())
	p := testPod("s2", types.Restart{Policy: "no"})
	p.Spec.Cmd = []string{"sleep", "600"}
	h.server.pods <- types.Assignment{Sync: true, Pods: []types.Pod{p}}
	p = running(p)
	h.server.pods <- types.Assignment{Pod: &p}
	h.server.waitStatus(t, p.ID, "running", func(s types.PodStatus) bool { return s.Phase == types.PhaseRunning })
	a := h.agent(t)
	ctx := context.Background()
	for i := 0; i < 200; i++ {
		done := make(chan error, 1)
		go func() {
			err := a.Suspend(ctx, p.ID)
			if errors.Is(err, ErrBusy) {
				err = nil
			}
			done <- err
		}()
		if _, err := a.Exec(ctx, p.ID, runtime.Process{Args: []string{"true"}}, runtime.IO{}); err != nil {
			t.Fatalf("round %d: exec: %v", i, err)
		}
		if err := <-done; err != nil {
			t.Fatalf("round %d: suspend: %v", i, err)
		}
		if err := a.Wake(ctx, p.ID); err != nil {
			t.Fatal(err)
		}
	}
}
