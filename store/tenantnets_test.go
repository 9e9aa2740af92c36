package store

import (
	"context"
	"testing"
	"time"

	"github.com/macro-cloud/macro/types"
)

// TestFollowTenantNets: a follower gets every tenant first, then each
// change of a tenant's egress and its removal.
func TestFollowTenantNets(t *testing.T) {
	s := openStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.CreateTenant(ctx, &types.Tenant{Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	ch := s.FollowTenantNets(ctx)
	next := func() types.TenantNets {
		t.Helper()
		select {
		case m := <-ch:
			return m
		case <-ctx.Done():
			t.Fatal("no message")
			return types.TenantNets{}
		}
	}
	if m := next(); !m.Sync || len(m.Tenants) != 1 || m.Tenants[0] != (types.TenantNet{Name: "alice"}) {
		t.Fatalf("first message: %+v", m)
	}
	if _, err := s.SetTenantEgress(ctx, "alice", false); err != nil {
		t.Fatal(err)
	}
	if m := next(); m.Sync || len(m.Tenants) != 1 || m.Tenants[0] != (types.TenantNet{Name: "alice", NoEgress: true}) {
		t.Fatalf("after set-egress off: %+v", m)
	}
	if err := s.CreateTenant(ctx, &types.Tenant{Name: "bob"}); err != nil {
		t.Fatal(err)
	}
	if m := next(); len(m.Tenants) != 1 || m.Tenants[0] != (types.TenantNet{Name: "bob"}) {
		t.Fatalf("after bob's creation: %+v", m)
	}
	if err := s.DeleteTenant(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if m := next(); len(m.Tenants) != 1 || m.Tenants[0] != (types.TenantNet{Name: "bob", Gone: true}) {
		t.Fatalf("after bob's removal: %+v", m)
	}
}
