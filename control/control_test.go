package control

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/macro-cloud/macro/store"
	"github.com/macro-cloud/macro/types"
)

func openStore(t *testing.T) *store.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := store.Open(ctx, store.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestControllerPlacesAndRemoves(t *testing.T) {
	st := openStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	nodes := NewNodeAPI(st, 0)
	t.Cleanup(nodes.Close)
	if err := nodes.RegisterNode(ctx, types.Node{Name: "n1", CPUs: 2, MemoryBytes: 1 << 30, Runtimes: []string{"sandbox"}}); err != nil {
		t.Fatal(err)
	}
	go New(st, nil).Run(ctx)
	watch := nodes.WatchPods(ctx, "n1")
	if first := <-watch; !first.Sync || len(first.Pods) != 0 {
		t.Fatalf("first message %+v", first)
	}

	small := &types.Pod{ID: strings.Repeat("a", 64), Name: "small", Tenant: "t", Spec: types.PodSpec{Runtime: "sandbox", AutoRemove: true, Resources: types.Resources{MemoryBytes: 64 << 20}}}
	huge := &types.Pod{ID: strings.Repeat("b", 64), Name: "huge", Tenant: "t", Spec: types.PodSpec{Runtime: "sandbox", Resources: types.Resources{MemoryBytes: 8 << 30}}}
	for _, p := range []*types.Pod{small, huge} {
		if err := st.CreatePod(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	// The node learns of the small pod through the node protocol.
	select {
	case a := <-watch:
		if a.Pod == nil || a.Pod.ID != small.ID || a.Pod.Node != "n1" {
			t.Fatalf("assignment %+v", a)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no assignment")
	}
	eventually(t, "huge explained", func() bool {
		p, err := st.Pod(ctx, "t", huge.ID)
		return err == nil && p.Node == "" && p.Unschedulable == "no node has 8 GiB of memory free"
	})
	// An --rm pod that exited is removed, and the node hears of it.
	if err := nodes.ReportStatus(ctx, "t", types.PodStatus{ID: small.ID, Node: "n1", Phase: types.PhaseExited, Exits: 1}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "auto-remove", func() bool {
		_, err := st.Pod(ctx, "t", small.ID)
		return errors.Is(err, store.ErrNotFound)
	})
	select {
	case a := <-watch:
		if a.Deleted != small.ID {
			t.Fatalf("expected deletion of the small pod, got %+v", a)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("node not told of the removal")
	}
}

// A node whose lease expires loses its pods to a live node; a pod pinned
// to it stays, with why, until it is back; a status the dead node reports
// afterwards is refused.
func TestControllerEvictsDownNodes(t *testing.T) {
	st := openStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const ttl = 2 * time.Second
	nodes := NewNodeAPI(st, ttl)
	t.Cleanup(nodes.Close)
	n1 := types.Node{Name: "n1", CPUs: 2, MemoryBytes: 1 << 30, Runtimes: []string{"sandbox"}}
	n2 := n1
	n2.Name = "n2"
	if err := nodes.RegisterNode(ctx, n1); err != nil {
		t.Fatal(err)
	}
	mover := &types.Pod{ID: strings.Repeat("c", 64), Name: "mover", Tenant: "t", Node: "n1", Spec: types.PodSpec{Runtime: "sandbox"}}
	pinned := &types.Pod{ID: strings.Repeat("d", 64), Name: "pinned", Tenant: "t", Node: "n1", Spec: types.PodSpec{Runtime: "sandbox", PinnedNode: "n1", PinnedBy: "volume db (lv2)"}}
	for _, p := range []*types.Pod{mover, pinned} {
		if err := st.CreatePod(ctx, p); err != nil {
			t.Fatal(err)
		}
		if err := nodes.ReportStatus(ctx, "t", types.PodStatus{ID: p.ID, Node: "n1", Phase: types.PhaseRunning, Run: 1}); err != nil {
			t.Fatal(err)
		}
	}
	// n2 heartbeats; n1 stops.
	go func() {
		for ctx.Err() == nil {
			nodes.RegisterNode(ctx, n2)
			time.Sleep(ttl / 4)
		}
	}()
	go New(st, nil).WithNodeTTL(ttl).Run(ctx)
	eventually(t, "mover on n2", func() bool {
		p, err := st.Pod(ctx, "t", mover.ID)
		return err == nil && p.Node == "n2"
	})
	if s, err := st.Status(ctx, "t", mover.ID); err != nil || s.Node == "n1" || s.Phase == types.PhaseRunning {
		t.Fatalf("the moved pod still shows n1's status: %+v %v", s, err)
	}
	eventually(t, "pinned explained", func() bool {
		p, err := st.Pod(ctx, "t", pinned.ID)
		return err == nil && p.Node == "n1" && strings.Contains(p.Unschedulable, "node n1 is down") && strings.Contains(p.Unschedulable, "volume db (lv2)")
	})
	// n1 comes back: it may not report for the pod that left it.
	if err := nodes.RegisterNode(ctx, n1); err != nil {
		t.Fatal(err)
	}
	err := nodes.ReportStatus(ctx, "t", types.PodStatus{ID: mover.ID, Node: "n1", Phase: types.PhaseRunning, Run: 1})
	if !errors.Is(err, store.ErrNotOnNode) {
		t.Fatalf("a status from the node the pod left: %v", err)
	}
	eventually(t, "pinned reason cleared", func() bool {
		p, err := st.Pod(ctx, "t", pinned.ID)
		return err == nil && p.Node == "n1" && p.Unschedulable == ""
	})
}
