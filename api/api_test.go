package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/macro-cloud/macro/auth"
	"github.com/macro-cloud/macro/store"
	"github.com/macro-cloud/macro/types"
)

type env struct {
	t      *testing.T
	st     *store.Store
	ca     *auth.CA
	s      *Server
	admin  *httptest.Server // AdminHandler over plain HTTP (the socket's stand-in)
	port   *httptest.Server // Handler over TLS, as the API port
	client *http.Client     // trusts the CA, no client certificate
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := store.Open(ctx, store.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ca, _, err := auth.LoadOrCreateCA(t.TempDir(), "testcloud")
	if err != nil {
		t.Fatal(err)
	}
	s := New(Config{Store: st, Auth: auth.New(auth.Config{Store: st}), CA: ca, Cluster: "testcloud", Domain: "cloud.test"})
	e := &env{t: t, st: st, ca: ca, s: s}
	e.admin = httptest.NewServer(s.AdminHandler())
	t.Cleanup(e.admin.Close)
	cert, err := ca.ServerCert([]string{"127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	e.port = httptest.NewUnstartedServer(s.Handler())
	e.port.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: ca.Pool()}
	e.port.StartTLS()
	t.Cleanup(e.port.Close)
	e.client = e.tlsClient(nil)
	return e
}

func (e *env) tlsClient(cert *tls.Certificate) *http.Client {
	cfg := &tls.Config{RootCAs: e.ca.Pool()}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
}

// call sends a request and decodes a JSON answer into out (when not nil);
// it returns the status and the raw body.
func (e *env) call(c *http.Client, method, url, token string, body any, out any) (int, string) {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(b, out); err != nil {
			e.t.Fatalf("%s %s: %v\n%s", method, url, err, b)
		}
	}
	if resp.StatusCode/100 != 2 && len(b) > 0 {
		var m struct{ Message string }
		if json.Unmarshal(b, &m) != nil || m.Message == "" {
			e.t.Errorf("%s %s: %d with a body that is not {\"message\"}: %s", method, url, resp.StatusCode, b)
		}
	}
	return resp.StatusCode, string(b)
}

func (e *env) adminURL(p string) string { return e.admin.URL + Prefix + p }
func (e *env) portURL(p string) string  { return e.port.URL + Prefix + p }

func (e *env) mustToken(tenant string) NewToken {
	e.t.Helper()
	var tok NewToken
	if code, body := e.call(http.DefaultClient, "POST", e.adminURL("/tenants/"+tenant+"/tokens"), "", map[string]string{"description": "test"}, &tok); code != 201 {
		e.t.Fatalf("create token of %s: %d %s", tenant, code, body)
	}
	return tok
}

func TestAdminTenantsAndTokens(t *testing.T) {
	e := newEnv(t)
	admin := http.DefaultClient
	for _, name := range []string{"bob", "alice"} {
		var tn types.Tenant
		if code, body := e.call(admin, "POST", e.adminURL("/tenants"), "", map[string]string{"name": name}, &tn); code != 201 || tn.Name != name || tn.Created.IsZero() {
			t.Fatalf("create tenant %s: %d %s", name, code, body)
		}
	}
	for _, c := range []struct {
		body any
		want int
	}{
		{map[string]string{"name": "alice"}, 409},
		{map[string]string{"name": "Alice"}, 400},
		{map[string]string{"name": "a/b"}, 400},
		{map[string]string{"name": ""}, 400},
		{map[string]string{"name": "-x"}, 400},
		{map[string]any{"name": "x", "quota": map[string]int{"pods": -1}}, 400},
		{map[string]string{"name": "x", "nmae": "typo"}, 400},
		{"not an object", 400},
	} {
		if code, body := e.call(admin, "POST", e.adminURL("/tenants"), "", c.body, nil); code != c.want {
			t.Errorf("create tenant %v: %d %s, want %d", c.body, code, body, c.want)
		}
	}
	var list []types.Tenant
	if code, _ := e.call(admin, "GET", e.adminURL("/tenants"), "", nil, &list); code != 200 || len(list) != 2 || list[0].Name != "alice" {
		t.Fatalf("list tenants: %d %+v", code, list)
	}
	if code, _ := e.call(admin, "GET", e.adminURL("/tenants/carol"), "", nil, nil); code != 404 {
		t.Fatalf("unknown tenant: %d", code)
	}
	if code, _ := e.call(admin, "POST", e.adminURL("/tenants/carol/tokens"), "", nil, nil); code != 404 {
		t.Fatalf("token of an unknown tenant: %d", code)
	}

	tok := e.mustToken("alice")
	if !auth.IsToken(tok.Token) || tok.Tenant != "alice" || !strings.Contains(tok.Token, tok.ID) || tok.Description != "test" {
		t.Fatalf("new token: %+v", tok)
	}
	var infos []TokenInfo
	code, body := e.call(admin, "GET", e.adminURL("/tenants/alice/tokens"), "", nil, &infos)
	if code != 200 || len(infos) != 1 || infos[0].ID != tok.ID || infos[0].LastUsed != nil {
		t.Fatalf("list tokens: %d %s", code, body)
	}
	_, secret, _ := auth.ParseToken(tok.Token)
	if strings.Contains(body, secret) || strings.Contains(body, auth.HashSecret(secret)) || strings.Contains(body, "hash") {
		t.Fatalf("token list shows the secret or its hash: %s", body)
	}

	var id Identity
	if code, body := e.call(e.client, "GET", e.portURL("/whoami"), tok.Token, nil, &id); code != 200 || id.Tenant != "alice" || id.Cluster != "testcloud" || id.Auth != "token" {
		t.Fatalf("whoami: %d %s", code, body)
	}
	e.call(admin, "GET", e.adminURL("/tenants/alice/tokens"), "", nil, &infos)
	if infos[0].LastUsed == nil {
		t.Fatal("last use not recorded")
	}

	// Bob's path cannot revoke Alice's token; Alice's can, once.
	if code, _ := e.call(admin, "DELETE", e.adminURL("/tenants/bob/tokens/"+tok.ID), "", nil, nil); code != 404 {
		t.Fatalf("revoke through another tenant: %d", code)
	}
	if code, body := e.call(admin, "DELETE", e.adminURL("/tenants/alice/tokens/"+tok.ID), "", nil, nil); code != 204 {
		t.Fatalf("revoke: %d %s", code, body)
	}
	if code, _ := e.call(admin, "DELETE", e.adminURL("/tenants/alice/tokens/"+tok.ID), "", nil, nil); code != 404 {
		t.Fatalf("revoke twice: %d", code)
	}
	if code, body := e.call(e.client, "GET", e.portURL("/whoami"), tok.Token, nil, nil); code != 401 || !strings.Contains(body, "invalid or revoked token") {
		t.Fatalf("whoami with a revoked token: %d %s", code, body)
	}
	// The admin endpoints are not on the API port.
	if code, _ := e.call(e.client, "GET", e.portURL("/tenants"), "", nil, nil); code != 404 {
		t.Fatalf("tenants on the API port: %d", code)
	}
}

func TestCerts(t *testing.T) {
	e := newEnv(t)
	e.call(http.DefaultClient, "POST", e.adminURL("/tenants"), "", map[string]string{"name": "alice"}, nil)
	tok := e.mustToken("alice")

	// The CA is public.
	code, body := e.call(e.client, "GET", e.portURL("/ca"), "", nil, nil)
	if code != 200 || body != string(e.ca.CertPEM) {
		t.Fatalf("GET /ca: %d %s", code, body)
	}
	if code, _ := e.call(e.client, "POST", e.portURL("/certs"), "", nil, nil); code != 401 {
		t.Fatalf("certs without a token: %d", code)
	}
	var certs Certs
	if code, body := e.call(e.client, "POST", e.portURL("/certs"), tok.Token, struct{}{}, &certs); code != 201 {
		t.Fatalf("certs: %d %s", code, body)
	}
	if certs.CA != string(e.ca.CertPEM) || certs.Tenant != "alice" || certs.Cluster != "testcloud" || certs.Expires.Before(time.Now().Add(300*24*time.Hour)) {
		t.Fatalf("certs: %+v", certs)
	}
	b, _ := pem.Decode([]byte(certs.Cert))
	leaf, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: e.ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("issued certificate: %v", err)
	}
	kp, err := tls.X509KeyPair([]byte(certs.Cert), []byte(certs.Key))
	if err != nil {
		t.Fatal(err)
	}
	// The certificate authenticates the native API too, but does not renew
	// itself.
	withCert := e.tlsClient(&kp)
	var id Identity
	if code, body := e.call(withCert, "GET", e.portURL("/whoami"), "", nil, &id); code != 200 || id.Tenant != "alice" || id.Auth != "certificate" {
		t.Fatalf("whoami with a certificate: %d %s", code, body)
	}
	if code, _ := e.call(withCert, "POST", e.portURL("/certs"), "", nil, nil); code != 403 {
		t.Fatalf("certs with a certificate: %d", code)
	}
}

func TestNamespaces(t *testing.T) {
	e := newEnv(t)
	for _, n := range []string{"alice", "bob"} {
		e.call(http.DefaultClient, "POST", e.adminURL("/tenants"), "", map[string]string{"name": n}, nil)
	}
	alice, bob := e.mustToken("alice").Token, e.mustToken("bob").Token
	names := func(token string) []string {
		var list []Namespace
		if code, body := e.call(e.client, "GET", e.portURL("/namespaces"), token, nil, &list); code != 200 {
			t.Fatalf("list: %d %s", code, body)
		}
		var out []string
		for _, n := range list {
			out = append(out, n.Name)
		}
		return out
	}
	if got := names(alice); strings.Join(got, ",") != "default" {
		t.Fatalf("a new tenant's namespaces: %v", got)
	}
	var ns Namespace
	if code, body := e.call(e.client, "POST", e.portURL("/namespaces"), alice, map[string]string{"name": "shop"}, &ns); code != 201 || ns.Name != "shop" || ns.Created.IsZero() {
		t.Fatalf("create: %d %s", code, body)
	}
	for _, c := range []struct {
		name string
		want int
	}{{"shop", 409}, {"default", 409}, {"Shop", 400}, {"", 400}, {"a/b", 400}, {"_x", 400}, {strings.Repeat("a", 64), 400}, {"my_project-2", 201}} {
		if code, body := e.call(e.client, "POST", e.portURL("/namespaces"), alice, map[string]string{"name": c.name}, nil); code != c.want {
			t.Errorf("create %q: %d %s, want %d", c.name, code, body, c.want)
		}
	}
	// Bob sees none of it.
	if got := names(bob); strings.Join(got, ",") != "default" {
		t.Fatalf("bob's namespaces: %v", got)
	}
	if code, _ := e.call(e.client, "GET", e.portURL("/namespaces/shop"), bob, nil, nil); code != 404 {
		t.Fatalf("bob gets alice's namespace: %d", code)
	}
	if code, _ := e.call(e.client, "DELETE", e.portURL("/namespaces/shop"), bob, nil, nil); code != 404 {
		t.Fatalf("bob deletes alice's namespace: %d", code)
	}

	// A namespace that pods name exists while they do, and cannot be
	// deleted under them.
	created := time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC)
	for i, id := range []string{strings.Repeat("a", 64), strings.Repeat("b", 64)} {
		p := &types.Pod{ID: id, Name: "web" + string(rune('1'+i)), Tenant: "alice", Namespace: "web", Created: created.Add(time.Duration(i) * time.Hour)}
		if err := e.st.CreatePod(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
	if got := names(alice); strings.Join(got, ",") != "default,my_project-2,shop,web" {
		t.Fatalf("alice's namespaces: %v", got)
	}
	if code, body := e.call(e.client, "GET", e.portURL("/namespaces/web"), alice, nil, &ns); code != 200 || ns.Pods != 2 || !ns.Created.Equal(created) {
		t.Fatalf("namespace web: %d %s", code, body)
	}
	if code, body := e.call(e.client, "DELETE", e.portURL("/namespaces/web"), alice, nil, nil); code != 409 || !strings.Contains(body, "still has 2 pods") {
		t.Fatalf("delete a namespace with pods: %d %s", code, body)
	}
	if code, _ := e.call(e.client, "DELETE", e.portURL("/namespaces/default"), alice, nil, nil); code != 409 {
		t.Fatalf("delete default: %d", code)
	}
	if code, body := e.call(e.client, "DELETE", e.portURL("/namespaces/shop"), alice, nil, nil); code != 204 {
		t.Fatalf("delete shop: %d %s", code, body)
	}
	if code, _ := e.call(e.client, "GET", e.portURL("/namespaces/shop"), alice, nil, nil); code != 404 {
		t.Fatalf("deleted namespace: %d", code)
	}
	if code, _ := e.call(e.client, "DELETE", e.portURL("/namespaces/shop"), alice, nil, nil); code != 404 {
		t.Fatalf("delete twice: %d", code)
	}
}

func TestRouting(t *testing.T) {
	e := newEnv(t)
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/nope", 404},
		{"PUT", "/namespaces", 405},
		{"POST", "/whoami", 405},
		{"GET", "/whoami", 401},
		{"GET", "/namespaces", 401},
		{"DELETE", "/namespaces/x", 401},
	} {
		code, body := e.call(e.client, c.method, e.portURL(c.path), "", nil, nil)
		if code != c.want || !strings.Contains(body, `"message"`) {
			t.Errorf("%s %s: %d %s, want %d", c.method, c.path, code, body, c.want)
		}
	}
	if code, body := e.call(e.client, "GET", e.portURL("/whoami"), "kr_"+strings.Repeat("0", 16)+"_"+strings.Repeat("0", 64), nil, nil); code != 401 || !strings.Contains(body, "invalid or revoked token") {
		t.Fatalf("unknown token: %d %s", code, body)
	}
}

// FuzzDecodeNamespace feeds arbitrary bodies to the parser of tenant input
// on POST /namespaces: it answers an error or a valid name, never panics.
func FuzzDecodeNamespace(f *testing.F) {
	f.Add([]byte(`{"name":"shop"}`))
	f.Add([]byte(`{"name":"../x"}`))
	f.Add([]byte(`{"name":"a"}{"name":"b"}`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := httptest.NewRequest("POST", "/", bytes.NewReader(b))
		var body struct {
			Name string `json:"name"`
		}
		if err := decodeBody(r, &body); err != nil {
			return
		}
		if ValidNamespaceName(body.Name) == nil && (strings.ContainsAny(body.Name, "/.\x00 ") || len(body.Name) > 63) {
			t.Fatalf("accepted namespace name %q", body.Name)
		}
	})
}
