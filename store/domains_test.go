package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/macro-cloud/macro/types"
)

func TestDomains(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	claim := func(tenant, name string, at time.Time) error {
		return s.ClaimDomain(ctx, &types.Domain{Name: name, Tenant: tenant, Token: tenant + "-token", Created: at}, day)
	}
	if err := claim("alice", "shop.example", t0); err != nil {
		t.Fatal(err)
	}
	if err := claim("alice", "shop.example", t0); !errors.Is(err, ErrExists) {
		t.Fatalf("claim twice: %v", err)
	}
	var held *DomainHeldError
	if err := claim("bob", "shop.example", t0.Add(time.Hour)); !errors.As(err, &held) {
		t.Fatalf("bob claims a fresh claim of alice's: %v", err)
	}
	if _, err := s.Domain(ctx, "bob", "shop.example"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("bob reads alice's claim: %v", err)
	}
	if err := s.DeleteDomain(ctx, "bob", "shop.example"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("bob deletes alice's claim: %v", err)
	}
	if _, err := s.VerifyDomain(ctx, "bob", "shop.example", t0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("bob verifies alice's claim: %v", err)
	}
	// A pending claim goes stale: bob takes it over.
	if err := claim("bob", "shop.example", t0.Add(2*day)); err != nil {
		t.Fatalf("take over a stale claim: %v", err)
	}
	if _, err := s.Domain(ctx, "alice", "shop.example"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("alice still holds the name: %v", err)
	}
	d, err := s.VerifyDomain(ctx, "bob", "shop.example", t0.Add(2*day))
	if err != nil || d.Verified.IsZero() || d.Tenant != "bob" {
		t.Fatalf("verify: %+v %v", d, err)
	}
	// A verified claim never goes stale.
	if err := claim("alice", "shop.example", t0.Add(100*day)); !errors.As(err, &held) {
		t.Fatalf("alice takes a verified name: %v", err)
	}
	claim("alice", "blog.example", t0)
	if list, err := s.Domains(ctx, "alice"); err != nil || len(list) != 1 || list[0].Name != "blog.example" {
		t.Fatalf("alice's domains: %+v %v", list, err)
	}
	if list, err := s.Domains(ctx, ""); err != nil || len(list) != 2 {
		t.Fatalf("all domains: %+v %v", list, err)
	}
	if err := s.DeleteDomain(ctx, "bob", "shop.example"); err != nil {
		t.Fatal(err)
	}
	if err := claim("alice", "shop.example", t0.Add(101*day)); err != nil {
		t.Fatalf("claim a released name: %v", err)
	}
}
