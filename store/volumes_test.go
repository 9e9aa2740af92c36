package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/macro-cloud/macro/types"
)

func TestVolumesAndNetworks(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	now := time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC)
	for _, v := range []types.Volume{{Name: "data", Tenant: "alice", Driver: "local"}, {Name: "data", Tenant: "bob"}, {Name: "cache", Tenant: "alice"}} {
		if err := s.CreateVolume(ctx, &v); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateVolume(ctx, &types.Volume{Name: "data", Tenant: "alice"}); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate volume: %v", err)
	}
	for _, bad := range []string{"", "a/b", ".."} {
		if err := s.CreateVolume(ctx, &types.Volume{Name: bad, Tenant: "alice"}); err == nil {
			t.Errorf("volume %q accepted", bad)
		}
		if _, err := s.Volume(ctx, "alice", bad); !errors.Is(err, ErrNotFound) {
			t.Errorf("volume %q: %v", bad, err)
		}
	}
	list, err := s.Volumes(ctx, "alice")
	if err != nil || len(list) != 2 || list[0].Name != "cache" || list[1].Name != "data" {
		t.Fatalf("alice's volumes: %+v %v", list, err)
	}
	if err := s.DeleteVolume(ctx, "alice", "data"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Volume(ctx, "alice", "data"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted volume: %v", err)
	}
	if v, err := s.Volume(ctx, "bob", "data"); err != nil || v.Tenant != "bob" {
		t.Fatalf("bob's volume after alice's was deleted: %+v %v", v, err)
	}
	if err := s.DeleteVolume(ctx, "alice", "data"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}

	n1 := types.Network{ID: "n1", Name: "web_default", Tenant: "alice", Created: now.Add(time.Second)}
	n2 := types.Network{ID: "n2", Name: "web_default", Tenant: "alice", Created: now}
	n3 := types.Network{ID: "n3", Name: "x", Tenant: "bob", Created: now}
	for _, n := range []types.Network{n1, n2, n3} {
		if err := s.CreateNetwork(ctx, &n); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateNetwork(ctx, &n1); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate network id: %v", err)
	}
	nets, err := s.Networks(ctx, "alice")
	if err != nil || len(nets) != 2 || nets[0].ID != "n2" || nets[1].ID != "n1" {
		t.Fatalf("alice's networks: %+v %v", nets, err)
	}
	if err := s.DeleteNetwork(ctx, "bob", "n1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("bob deletes alice's network: %v", err)
	}
	if err := s.DeleteNetwork(ctx, "alice", "n1"); err != nil {
		t.Fatal(err)
	}
}
