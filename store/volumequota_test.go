package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/macro-cloud/macro/types"
)

// TestCreateVolumeGuarded: concurrent guarded creates with room for 3
// volumes make exactly 3, whatever the interleaving; another tenant's
// volumes are not in the guard's view; a name taken is ErrExists; what
// the guard leaves in the volume is stored; a quota set meanwhile (the
// tenant's record changed) is seen.
func TestCreateVolumeGuarded(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	max3 := func(tv TenantVolumes) error {
		if len(tv.Volumes) >= 3 {
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
			errs[i] = s.CreateVolumeGuarded(ctx, &types.Volume{Name: fmt.Sprintf("v%d", i), Tenant: "t1", Driver: "local"}, max3)
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
	vols, _ := s.Volumes(ctx, "t1")
	if ok != 3 || len(vols) != 3 {
		t.Fatalf("%d creates succeeded, %d volumes; want 3", ok, len(vols))
	}
	if err := s.CreateVolumeGuarded(ctx, &types.Volume{Name: "v0", Tenant: "t2"}, max3); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateVolumeGuarded(ctx, &types.Volume{Name: "v0", Tenant: "t2"}, func(TenantVolumes) error { return nil }); !errors.Is(err, ErrExists) {
		t.Fatalf("a name taken: %v", err)
	}
	set := func(tv TenantVolumes) error {
		if tv.Tenant.Quota.Volumes != 0 {
			return errFull
		}
		return nil
	}
	v := &types.Volume{Name: "v1", Tenant: "t2"}
	if err := s.CreateVolumeGuarded(ctx, v, func(tv TenantVolumes) error {
		v.Options = map[string]string{"size": "1073741824"}
		return set(tv)
	}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Volume(ctx, "t2", "v1"); got.Options["size"] != "1073741824" {
		t.Errorf("the guard's change was not stored: %+v", got)
	}
	if err := s.CreateTenant(ctx, &types.Tenant{Name: "t2", Quota: types.Quota{Volumes: 1}}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateVolumeGuarded(ctx, &types.Volume{Name: "v2", Tenant: "t2"}, set); !errors.Is(err, errFull) {
		t.Fatalf("the tenant's quota was not seen: %v", err)
	}
}
