package main

import (
	"testing"

	"github.com/macro-cloud/macro/nodeproto"

	"github.com/macro-cloud/macro/types"
)

// TestTenantEgressApply: a Sync replaces the set, a change updates one
// tenant, a removed tenant's switch goes, and apply says when anything
// changed (the router is refreshed only then).
func TestTenantEgressApply(t *testing.T) {
	e := &tenantEgress{node: true, off: map[string]bool{}}
	steps := []struct {
		msg     types.TenantNets
		changed bool
		off     []string
	}{
		{types.TenantNets{Sync: true, Tenants: []types.TenantNet{{Name: "a", NoEgress: true}, {Name: "b"}}}, true, []string{"a"}},
		{types.TenantNets{Tenants: []types.TenantNet{{Name: "b"}}}, false, []string{"a"}},
		{types.TenantNets{Tenants: []types.TenantNet{{Name: "b", NoEgress: true}}}, true, []string{"a", "b"}},
		{types.TenantNets{Tenants: []types.TenantNet{{Name: "a", NoEgress: true, Gone: true}}}, true, []string{"b"}},
		{types.TenantNets{Sync: true, Tenants: []types.TenantNet{{Name: "b", NoEgress: true}}}, false, []string{"b"}},
		{types.TenantNets{Sync: true}, true, nil},
	}
	for i, s := range steps {
		if got := e.apply(s.msg); got != s.changed {
			t.Errorf("step %d: changed %v, want %v", i, got, s.changed)
		}
		for _, name := range []string{"a", "b", "c"} {
			want := true
			for _, o := range s.off {
				if o == name {
					want = false
				}
			}
			if e.allowed(name) != want {
				t.Errorf("step %d: egress of %s %v, want %v", i, name, !want, want)
			}
		}
	}
	if (&tenantEgress{node: false, off: map[string]bool{}}).allowed("a") {
		t.Errorf("a node without --egress lets a tenant out")
	}
}

// TestTenantEgressKeyed: an agent's stream names tenants keyed
// (nodeproto.KeyedName); the router still asks by name, and a new stream's
// Sync brings its own key.
func TestTenantEgressKeyed(t *testing.T) {
	e := &tenantEgress{node: true, off: map[string]bool{}}
	k1, k2 := []byte("0123456789abcdef"), []byte("fedcba9876543210")
	e.apply(types.TenantNets{Sync: true, Key: k1, Tenants: []types.TenantNet{{Name: nodeproto.KeyedName(k1, "a"), NoEgress: true}, {Name: nodeproto.KeyedName(k1, "b")}}})
	if e.allowed("a") || !e.allowed("b") || !e.allowed("c") {
		t.Fatalf("under k1: a %v b %v c %v, want false true true", e.allowed("a"), e.allowed("b"), e.allowed("c"))
	}
	e.apply(types.TenantNets{Key: k1, Tenants: []types.TenantNet{{Name: nodeproto.KeyedName(k1, "b"), NoEgress: true}}})
	if e.allowed("b") {
		t.Fatal("b's change under k1 was not applied")
	}
	e.apply(types.TenantNets{Sync: true, Key: k2, Tenants: []types.TenantNet{{Name: nodeproto.KeyedName(k2, "b"), NoEgress: true}}})
	if !e.allowed("a") || e.allowed("b") {
		t.Fatalf("under k2: a %v b %v, want true false", e.allowed("a"), e.allowed("b"))
	}
}
