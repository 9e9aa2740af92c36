package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/macro-cloud/macro/types"
)

func TestVolumeKeys(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	now := time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC)
	for _, v := range []types.Volume{{Name: "data", Tenant: "alice"}, {Name: "logs", Tenant: "alice"}, {Name: "data", Tenant: "bob"}} {
		if err := s.CreateVolume(ctx, &v); err != nil {
			t.Fatal(err)
		}
	}
	keys := []types.VolumeKey{
		{ID: "MK1", Tenant: "alice", Volume: "data", Hash: "h", Created: now.Add(time.Second)},
		{ID: "MK2", Tenant: "alice", Volume: "data", Hash: "h", Created: now, ReadOnly: true},
		{ID: "MK3", Tenant: "alice", Volume: "logs", Hash: "h", Created: now},
		{ID: "MK4", Tenant: "bob", Volume: "data", Hash: "h", Created: now},
	}
	for _, k := range keys {
		if err := s.CreateVolumeKey(ctx, &k); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		k    types.VolumeKey
		want error
	}{
		{"duplicate id", keys[0], ErrExists},
		{"no such volume", types.VolumeKey{ID: "MK5", Tenant: "alice", Volume: "nope", Hash: "h"}, ErrNotFound},
		{"another tenant's volume", types.VolumeKey{ID: "MK5", Tenant: "carol", Volume: "data", Hash: "h"}, ErrNotFound},
	} {
		if err := s.CreateVolumeKey(ctx, &tc.k); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	for _, bad := range []types.VolumeKey{{ID: "a/b", Tenant: "alice", Volume: "data", Hash: "h"}, {ID: "MK6", Tenant: "alice", Volume: "data"}} {
		if err := s.CreateVolumeKey(ctx, &bad); err == nil {
			t.Errorf("key %+v accepted", bad)
		}
	}
	list, err := s.VolumeKeys(ctx, "alice", "data")
	if err != nil || len(list) != 2 || list[0].ID != "MK2" || list[1].ID != "MK1" || !list[0].ReadOnly {
		t.Fatalf("alice's keys of data: %+v %v", list, err)
	}
	if all, err := s.VolumeKeys(ctx, "alice", ""); err != nil || len(all) != 3 {
		t.Fatalf("alice's keys: %+v %v", all, err)
	}
	if err := s.DeleteVolumeKey(ctx, "bob", "MK1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("bob deletes alice's key: %v", err)
	}
	if err := s.DeleteVolumeKey(ctx, "alice", "MK1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.VolumeKey(ctx, "MK1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted key: %v", err)
	}
	if err := s.DeleteVolumeKey(ctx, "alice", "MK1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	// A key of all a tenant's volumes needs the tenant.
	if err := s.CreateVolumeKey(ctx, &types.VolumeKey{ID: "MK7", Tenant: "alice", Hash: "h"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a key of all volumes of a tenant that does not exist: %v", err)
	}
	if err := s.CreateTenant(ctx, &types.Tenant{Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateVolumeKey(ctx, &types.VolumeKey{ID: "MK7", Tenant: "alice", Hash: "h"}); err != nil {
		t.Fatalf("a key of all volumes: %v", err)
	}
	if all, err := s.VolumeKeys(ctx, "alice", ""); err != nil || len(all) != 3 {
		t.Fatalf("alice's keys with the key of all volumes: %+v %v", all, err)
	}
	if _, err := s.VolumeKey(ctx, "../x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("bad id: %v", err)
	}
}
