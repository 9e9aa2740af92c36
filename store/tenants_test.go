package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/macro-cloud/macro/types"
)

func TestTenants(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	now := time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC)
	for _, name := range []string{"bob", "alice"} {
		if err := s.CreateTenant(ctx, &types.Tenant{Name: name, Created: now, Quota: types.Quota{Pods: 3}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateTenant(ctx, &types.Tenant{Name: "alice"}); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate tenant: %v", err)
	}
	for _, bad := range []string{"", "a/b", "..", "x\x00"} {
		if err := s.CreateTenant(ctx, &types.Tenant{Name: bad}); err == nil {
			t.Errorf("tenant %q accepted", bad)
		}
	}
	got, err := s.Tenant(ctx, "alice")
	if err != nil || got.Name != "alice" || !got.Created.Equal(now) || got.Quota.Pods != 3 {
		t.Fatalf("tenant alice: %+v %v", got, err)
	}
	if _, err := s.Tenant(ctx, "carol"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown tenant: %v", err)
	}
	list, err := s.Tenants(ctx)
	if err != nil || len(list) != 2 || list[0].Name != "alice" || list[1].Name != "bob" {
		t.Fatalf("tenants: %+v %v", list, err)
	}
}

func TestTokens(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	now := time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC)
	s.CreateTenant(ctx, &types.Tenant{Name: "alice", Created: now})
	s.CreateTenant(ctx, &types.Tenant{Name: "bob", Created: now})

	if err := s.CreateToken(ctx, &types.Token{ID: "00000000000000aa", Tenant: "carol", Hash: "h", Created: now}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("token of an unknown tenant: %v", err)
	}
	a1 := types.Token{ID: "00000000000000a1", Tenant: "alice", Hash: "h1", Created: now}
	a2 := types.Token{ID: "00000000000000a2", Tenant: "alice", Hash: "h2", Created: now.Add(time.Minute)}
	b1 := types.Token{ID: "00000000000000b1", Tenant: "bob", Hash: "h3", Created: now}
	for _, tok := range []types.Token{a2, a1, b1} {
		if err := s.CreateToken(ctx, &tok); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateToken(ctx, &types.Token{ID: a1.ID, Tenant: "bob", Hash: "x"}); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate token id: %v", err)
	}
	list, err := s.Tokens(ctx, "alice")
	if err != nil || len(list) != 2 || list[0].ID != a1.ID || list[1].ID != a2.ID {
		t.Fatalf("alice's tokens: %+v %v", list, err)
	}
	got, err := s.Token(ctx, b1.ID)
	if err != nil || got.Tenant != "bob" || got.Hash != "h3" || !got.LastUsed.IsZero() {
		t.Fatalf("token b1: %+v %v", got, err)
	}

	used := now.Add(time.Hour)
	if err := s.TouchToken(ctx, a1.ID, used); err != nil {
		t.Fatal(err)
	}
	s.TouchToken(ctx, a1.ID, now) // older: ignored
	if got, _ := s.Token(ctx, a1.ID); !got.LastUsed.Equal(used) {
		t.Fatalf("last used: %v", got.LastUsed)
	}

	// Bob cannot revoke Alice's token; Alice can, once.
	if err := s.DeleteToken(ctx, "bob", a1.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoke another tenant's token: %v", err)
	}
	if err := s.DeleteToken(ctx, "alice", a1.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteToken(ctx, "alice", a1.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoke twice: %v", err)
	}
	if _, err := s.Token(ctx, a1.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoked token still there: %v", err)
	}
	// Touching a revoked token does not bring it back.
	if err := s.TouchToken(ctx, a1.ID, used.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Token(ctx, a1.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("touch revived a revoked token: %v", err)
	}
}

func TestNamespaces(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	now := time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC)
	s.CreateTenant(ctx, &types.Tenant{Name: "a", Created: now})
	s.CreateTenant(ctx, &types.Tenant{Name: "ab", Created: now})

	for _, n := range []types.Namespace{{Name: "web", Tenant: "a"}, {Name: "db", Tenant: "a"}, {Name: "web", Tenant: "ab"}} {
		n.Created = now
		if err := s.CreateNamespace(ctx, &n); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateNamespace(ctx, &types.Namespace{Name: "web", Tenant: "a"}); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate namespace: %v", err)
	}
	if err := s.CreateNamespace(ctx, &types.Namespace{Name: "web", Tenant: "nobody"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("namespace of an unknown tenant: %v", err)
	}
	// Tenant "a" does not see the namespaces of tenant "ab".
	list, err := s.Namespaces(ctx, "a")
	if err != nil || len(list) != 2 || list[0].Name != "db" || list[1].Name != "web" {
		t.Fatalf("namespaces of a: %+v %v", list, err)
	}
	if n, err := s.Namespace(ctx, "ab", "web"); err != nil || n.Tenant != "ab" {
		t.Fatalf("namespace ab/web: %+v %v", n, err)
	}
	if err := s.DeleteNamespace(ctx, "a", "web"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteNamespace(ctx, "a", "web"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
	if _, err := s.Namespace(ctx, "ab", "web"); err != nil {
		t.Fatalf("deleting a/web touched ab/web: %v", err)
	}
}
