package api

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/macro-cloud/macro/auth"
	"github.com/macro-cloud/macro/types"
)

// fakeImages records the tenants whose images were removed.
type fakeImages struct {
	mu      sync.Mutex
	removed []string
}

func (f *fakeImages) ImageBytes(context.Context, string) int64 { return 1234 }

func (f *fakeImages) RemoveTenant(_ context.Context, tenant string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removed = append(f.removed, tenant)
	return 3, nil
}

// TestQuotaAndRemoveEndpoints: PUT /tenants/{name}/quota and DELETE
// /tenants/{name}, with the real store: a tenant with pods is refused
// without force and left as it was (its token still works); with force,
// its pods, tokens, certificates (revoked) and images go, and its token
// stops working.
func TestQuotaAndRemoveEndpoints(t *testing.T) {
	e := newEnv(t)
	imgs := &fakeImages{}
	rev := auth.NewRevocations(e.st, nil)
	if _, err := rev.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	s := New(Config{Store: e.st, Auth: auth.New(auth.Config{Store: e.st, Revocations: rev}), CA: e.ca, Images: imgs})
	admin := httptest.NewServer(s.AdminHandler())
	t.Cleanup(admin.Close)
	port := httptest.NewServer(s.Handler())
	t.Cleanup(port.Close)
	url := func(p string) string { return admin.URL + Prefix + p }
	c := http.DefaultClient

	e.call(c, "POST", url("/tenants"), "", map[string]string{"name": "alice"}, nil)
	var tok NewToken
	if code, body := e.call(c, "POST", url("/tenants/alice/tokens"), "", nil, &tok); code != 201 {
		t.Fatalf("token: %d %s", code, body)
	}
	var certs Certs
	if code, body := e.call(c, "POST", port.URL+Prefix+"/certs", tok.Token, nil, &certs); code != 201 {
		t.Fatalf("certs: %d %s", code, body)
	}

	for _, q := range []struct {
		path string
		body any
		want int
	}{
		{"/tenants/alice/quota", map[string]int64{"pods": -1}, 400},
		{"/tenants/alice/quota", map[string]any{"pods": 1, "typo": 1}, 400},
		{"/tenants/nobody/quota", map[string]int64{"pods": 1}, 404},
		{"/tenants/alice/quota", map[string]int64{"pods": 2, "memoryBytes": 1 << 30}, 200},
	} {
		if code, body := e.call(c, "PUT", url(q.path), "", q.body, nil); code != q.want {
			t.Errorf("PUT %s %v: %d %s, want %d", q.path, q.body, code, body, q.want)
		}
	}
	var tn types.Tenant
	if e.call(c, "GET", url("/tenants/alice"), "", nil, &tn); tn.Quota != (types.Quota{Pods: 2, MemoryBytes: 1 << 30}) {
		t.Errorf("quota after PUT: %+v", tn.Quota)
	}

	if err := e.st.CreatePod(context.Background(), &types.Pod{ID: "ab0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab", Name: "web", Tenant: "alice"}); err != nil {
		t.Fatal(err)
	}
	var u types.Usage
	if code, body := e.call(c, "GET", url("/tenants/alice/usage"), "", nil, &u); code != 200 || u != (types.Usage{Pods: 1, ImageBytes: 1234}) {
		t.Errorf("usage: %d %s", code, body)
	}
	if code, body := e.call(c, "DELETE", url("/tenants/alice"), "", nil, nil); code != 409 {
		t.Fatalf("DELETE a tenant with a pod: %d %s", code, body)
	}
	if e.call(c, "GET", url("/tenants/alice"), "", nil, &tn); tn.Deleting {
		t.Errorf("a refused removal left the tenant marked: %+v", tn)
	}
	if code, body := e.call(c, "GET", port.URL+Prefix+"/whoami", tok.Token, nil, nil); code != 200 {
		t.Errorf("whoami after a refused removal: %d %s", code, body)
	}

	var rm Removed
	if code, body := e.call(c, "DELETE", url("/tenants/alice?force=1"), "", nil, &rm); code != 200 {
		t.Fatalf("DELETE --force: %d %s", code, body)
	}
	if rm != (Removed{Tenant: "alice", Pods: 1, Tokens: 1, Certificates: 1, Images: 3}) || len(imgs.removed) != 1 || imgs.removed[0] != "alice" {
		t.Errorf("removed: %+v, images of %v", rm, imgs.removed)
	}
	if code, _ := e.call(c, "GET", port.URL+Prefix+"/whoami", tok.Token, nil, nil); code != 401 {
		t.Errorf("whoami with the removed tenant's token: %d", code)
	}
	if code, _ := e.call(c, "GET", url("/tenants/alice"), "", nil, nil); code != 404 {
		t.Errorf("GET the removed tenant: %d", code)
	}
	if list, _, _ := e.st.RevokedCerts(context.Background()); len(list) != 1 || list[0].Serial != certSerial(t, certs.Cert) {
		t.Errorf("revocation list: %+v", list)
	}
	if code, _ := e.call(c, "DELETE", url("/tenants/alice"), "", nil, nil); code != 404 {
		t.Errorf("DELETE twice: %d", code)
	}
}

func certSerial(t *testing.T, certPEM string) string {
	t.Helper()
	b, _ := pem.Decode([]byte(certPEM))
	if b == nil {
		t.Fatal("no PEM certificate")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return auth.Serial(c)
}
