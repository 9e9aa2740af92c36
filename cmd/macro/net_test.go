package main

import (
	"testing"

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
