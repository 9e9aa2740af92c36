package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/macro-cloud/macro/types"
)

func openStore(t *testing.T) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Open(ctx, Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestPodLifecycle(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	p := &types.Pod{ID: "ab0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab", Name: "web", Tenant: "t1"}
	if err := s.CreatePod(ctx, p); err != nil {
		t.Fatal(err)
	}
	dup := &types.Pod{ID: "cd0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab", Name: "web", Tenant: "t1"}
	var inUse *NameInUseError
	if err := s.CreatePod(ctx, dup); !errors.As(err, &inUse) || inUse.ID != p.ID {
		t.Fatalf("duplicate name: %v", err)
	}
	// Another tenant may use the same name and never sees the first pod.
	other := &types.Pod{ID: dup.ID, Name: "web", Tenant: "t2"}
	if err := s.CreatePod(ctx, other); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ResolvePod(ctx, "t2", p.ID[:6]); !errors.Is(err, ErrNotFound) {
		t.Fatalf("cross-tenant prefix lookup: %v", err)
	}
	for _, ref := range []string{p.ID, "web", "/web", p.ID[:5]} {
		got, err := s.ResolvePod(ctx, "t1", ref)
		if err != nil || got.ID != p.ID {
			t.Fatalf("resolve %q: %v %v", ref, got.ID, err)
		}
	}
	if _, err := s.UpdatePod(ctx, "t1", p.ID, func(p *types.Pod) error { p.Desired.Run++; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.RenamePod(ctx, "t1", p.ID, "api"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ResolvePod(ctx, "t1", "web"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("old name still resolves: %v", err)
	}
	if err := s.PutStatus(ctx, "t1", types.PodStatus{ID: p.ID, Phase: types.PhaseRunning}); err != nil {
		t.Fatal(err)
	}
	got, st, _, err := s.PodState(ctx, "t1", p.ID)
	if err != nil || got.Desired.Run != 1 || got.Name != "api" || st.Phase != types.PhaseRunning {
		t.Fatalf("pod state: %+v %+v %v", got, st, err)
	}
	if err := s.DeletePod(ctx, "t1", p.ID); err != nil {
		t.Fatal(err)
	}
	// A status for a deleted pod is never written.
	s.PutStatus(ctx, "t1", types.PodStatus{ID: p.ID, Phase: types.PhaseExited})
	if sts, _ := s.Statuses(ctx, "t1"); len(sts) != 0 {
		t.Fatalf("statuses after delete: %v", sts)
	}
	if _, err := s.ResolvePod(ctx, "t1", "api"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted pod resolves: %v", err)
	}
}

func TestWatchSeesChanges(t *testing.T) {
	s := openStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	snap, err := s.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ch := s.Watch(ctx, snap.Revision+1)
	p := &types.Pod{ID: "ef0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab", Name: "w", Tenant: "t"}
	s.CreatePod(ctx, p)
	s.PutStatus(ctx, "t", types.PodStatus{ID: p.ID, Phase: types.PhaseRunning})
	s.DeletePod(ctx, "t", p.ID)
	var kinds []string
	for c := range ch {
		k := c.Kind
		if c.Deleted {
			k += "-"
		}
		kinds = append(kinds, k)
		if len(kinds) == 4 {
			break
		}
	}
	want := []string{"pods", "status", "pods-", "status-"}
	for i := range want {
		if kinds[i] != want[i] {
			t.Fatalf("changes %v, want %v", kinds, want)
		}
	}
}
