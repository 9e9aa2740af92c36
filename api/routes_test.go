package api

import (
	"slices"
	"strings"
	"testing"
)

// TestRoutes checks the lists of the tenant and admin sides: full paths,
// and no admin endpoint on the tenant side.
func TestRoutes(t *testing.T) {
	s := New(Config{})
	tenant, admin := s.Routes(), s.AdminRoutes()
	for _, want := range []string{"GET " + Prefix + "/whoami", "DELETE " + Prefix + "/namespaces/{name}"} {
		if !slices.Contains(tenant, want) {
			t.Errorf("Routes lacks %q: %q", want, tenant)
		}
	}
	if !slices.Contains(admin, "POST "+Prefix+"/tenants/{name}/tokens") {
		t.Errorf("AdminRoutes: %q", admin)
	}
	for _, r := range tenant {
		if strings.Contains(r, "/tenants") {
			t.Errorf("the tenant side serves an admin route: %s", r)
		}
	}
}
