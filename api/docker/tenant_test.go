package docker

import (
	"net/http/httptest"
	"testing"

	"github.com/macro-cloud/macro/auth"
	"github.com/macro-cloud/macro/types"
)

func TestRequestTenant(t *testing.T) {
	r := httptest.NewRequest("GET", "/containers/json", nil)
	if got := requestTenant(r); got != types.DefaultTenant {
		t.Fatalf("no identity: %q", got)
	}
	r = r.WithContext(auth.WithTenant(r.Context(), "alice"))
	if got := requestTenant(r); got != "alice" {
		t.Fatalf("alice's request: %q", got)
	}
	r = r.WithContext(auth.WithIdentity(r.Context(), auth.Identity{Tenant: "bob", Method: auth.MethodCertificate}))
	if got := requestTenant(r); got != "bob" {
		t.Fatalf("bob's request: %q", got)
	}
}
