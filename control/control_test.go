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
	if err := nodes.ReportStatus(ctx, "t", types.PodStatus{ID: small.ID, Phase: types.PhaseExited, Exits: 1}); err != nil {
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
