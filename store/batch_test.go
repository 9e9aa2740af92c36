package store

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/macro-cloud/macro/types"
)

func batchPods(n int, prefix string) []*types.Pod {
	ps := make([]*types.Pod, n)
	for i := range ps {
		ps[i] = &types.Pod{ID: fmt.Sprintf("%s%060d", prefix, i), Name: fmt.Sprintf("%s-%d", prefix, i), Tenant: "t"}
	}
	return ps
}

// Batches larger than a transaction are split; a batch applied once and
// sent again (a retry whose answer a leader change hid) succeeds; a batch
// that meets another pod's name fails whole.
func TestCreatePods(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	pods := batchPods(3*st.txnOps/2+7, "aaaa")
	if err := st.CreatePods(ctx, pods); err != nil {
		t.Fatal(err)
	}
	got, err := st.Pods(ctx, "t")
	if err != nil || len(got) != len(pods) {
		t.Fatalf("%d pods stored, want %d (%v)", len(got), len(pods), err)
	}
	if err := st.CreatePods(ctx, pods); err != nil {
		t.Fatalf("the same batch again: %v", err)
	}
	clash := batchPods(3, "bbbb")
	clash[1].Name = pods[0].Name
	if err := st.CreatePods(ctx, clash); !errors.Is(err, ErrNameInUse) {
		t.Fatalf("a batch with a taken name: %v", err)
	}
	if got, _ := st.Pods(ctx, "t"); len(got) != len(pods) {
		t.Fatalf("a refused batch left %d pods", len(got)-len(pods))
	}
}

// Each placement commits on its own condition: one whose pod changed
// since it was read comes back stale, the others land.
func TestPlaceAndStatusesAt(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	pods := batchPods(5, "cccc")
	if err := st.CreatePods(ctx, pods); err != nil {
		t.Fatal(err)
	}
	var pls []Placement
	for _, p := range pods {
		cur, err := st.Pod(ctx, "t", p.ID)
		if err != nil {
			t.Fatal(err)
		}
		pls = append(pls, Placement{Pod: cur, Node: "n1"})
	}
	// Pod 2 changes after it was read.
	if _, err := st.UpdatePod(ctx, "t", pods[2].ID, func(p *types.Pod) error { p.Desired.Run++; return nil }); err != nil {
		t.Fatal(err)
	}
	stale, err := st.Place(ctx, pls)
	if err != nil {
		t.Fatal(err)
	}
	if len(stale) != 1 || stale[0].Pod.ID != pods[2].ID {
		t.Fatalf("stale %v", stale)
	}
	var sts []StatusAt
	for i, p := range pods {
		cur, _ := st.Pod(ctx, "t", p.ID)
		rev := cur.Revision
		if i == 4 {
			rev-- // as read before its placement: stale
		}
		sts = append(sts, StatusAt{Tenant: "t", Rev: rev, Status: types.PodStatus{ID: p.ID, Node: cur.Node, Phase: types.PhaseRunning}})
	}
	ok, err := st.PutStatusesAt(ctx, sts)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(ok) != "[true true true true false]" {
		t.Fatalf("written %v", ok)
	}
	recorded, err := st.Statuses(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range pods {
		cur, _ := st.Pod(ctx, "t", p.ID)
		if want := map[bool]string{true: "", false: "n1"}[i == 2]; cur.Node != want {
			t.Errorf("pod %d on %q, want %q", i, cur.Node, want)
		}
		if _, ok := recorded[p.ID]; ok != (i != 4) {
			t.Errorf("status of pod %d recorded: %v", i, ok)
		}
	}
}
