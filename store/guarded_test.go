package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/macro-cloud/macro/types"
)

var errFull = errors.New("full")

func podID(i int) string { return fmt.Sprintf("%064x", i+1) }

// TestCreatePodGuarded: concurrent guarded creates with room for 3 make
// exactly 3 pods, whatever the interleaving; a guard's error comes back
// as it is; a name in use is still reported.
func TestCreatePodGuarded(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	max3 := func(tp TenantPods) error {
		if tp.Usage.Pods >= 3 {
			return errFull
		}
		return nil
	}
	var wg sync.WaitGroup
	errs := make([]error, 12)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.CreatePodGuarded(ctx, &types.Pod{ID: podID(i), Name: fmt.Sprintf("p%d", i), Tenant: "t1"}, max3)
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, errFull):
			t.Errorf("create: %v", err)
		}
	}
	pods, _ := s.Pods(ctx, "t1")
	if ok != 3 || len(pods) != 3 {
		t.Fatalf("%d creates succeeded, %d pods; want 3", ok, len(pods))
	}
	// Another tenant's pods are not in the guard's view.
	if err := s.CreatePodGuarded(ctx, &types.Pod{ID: podID(50), Name: "p0", Tenant: "t2"}, max3); err != nil {
		t.Fatal(err)
	}
	var inUse *NameInUseError
	err := s.CreatePodGuarded(ctx, &types.Pod{ID: podID(51), Name: "p0", Tenant: "t2"}, func(TenantPods) error { return nil })
	if !errors.As(err, &inUse) || inUse.ID != podID(50) {
		t.Fatalf("name in use: %v", err)
	}
}

// TestUpdatePodGuarded: concurrent guarded starts with room for 2 running
// pods leave exactly 2 running; the guard sees before and after.
func TestUpdatePodGuarded(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	for i := 0; i < 6; i++ {
		if err := s.CreatePod(ctx, &types.Pod{ID: podID(i), Name: fmt.Sprintf("p%d", i), Tenant: "t1", Desired: types.DesiredState{State: types.PhaseCreated}}); err != nil {
			t.Fatal(err)
		}
	}
	start := func(p *types.Pod) error {
		p.Desired = types.DesiredState{State: types.PhaseRunning, Run: p.Desired.Run + 1}
		return nil
	}
	max2 := func(before types.Pod, after *types.Pod, tp TenantPods) error {
		if before.Desired.State == after.Desired.State {
			t.Errorf("guard: before and after are the same")
		}
		n := 0
		for _, p := range tp.Pods {
			if p.Desired.State == types.PhaseRunning {
				n++
			}
		}
		if n >= 2 {
			return errFull
		}
		return nil
	}
	var wg sync.WaitGroup
	errs := make([]error, 6)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.UpdatePodGuarded(ctx, "t1", podID(i), start, max2)
		}()
	}
	wg.Wait()
	pods, _ := s.Pods(ctx, "t1")
	running := 0
	for _, p := range pods {
		if p.Desired.State == types.PhaseRunning {
			running++
		}
	}
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		} else if !errors.Is(err, errFull) {
			t.Errorf("update: %v", err)
		}
	}
	if running != 2 || ok != 2 {
		t.Fatalf("%d starts succeeded, %d pods running; want 2", ok, running)
	}
	if _, err := s.UpdatePodGuarded(ctx, "t1", podID(99), start, max2); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown pod: %v", err)
	}
}

// TestCreatePodGuardedTenant: a create commits against the tenant's
// record: a removal begun between the guard's read and the commit makes
// the create decide again, and the guard then sees it.
func TestCreatePodGuardedTenant(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	s.CreateTenant(ctx, &types.Tenant{Name: "alice", Quota: types.Quota{Pods: 5}})
	calls := 0
	errGone := errors.New("being removed")
	err := s.CreatePodGuarded(ctx, &types.Pod{ID: podID(1), Name: "p", Tenant: "alice"},
		func(tp TenantPods) error {
			calls++
			if !tp.TenantExists || tp.Tenant.Quota.Pods != 5 {
				t.Errorf("guard saw %+v", tp)
			}
			if tp.Tenant.Deleting {
				return errGone
			}
			if calls == 1 {
				if _, err := s.MarkTenantDeleting(ctx, "alice"); err != nil {
					t.Fatal(err)
				}
			}
			return nil
		})
	if !errors.Is(err, errGone) || calls != 2 {
		t.Fatalf("create during a removal: %v after %d guard calls", err, calls)
	}
	if pods, _ := s.Pods(ctx, "alice"); len(pods) != 0 {
		t.Fatalf("pods: %+v", pods)
	}
	// A tenant that does not exist is seen as such.
	err = s.CreatePodGuarded(ctx, &types.Pod{ID: podID(2), Name: "p", Tenant: "ghost"}, func(tp TenantPods) error {
		if tp.TenantExists {
			t.Errorf("ghost exists: %+v", tp.Tenant)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
