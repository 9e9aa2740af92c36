package api

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/macro-cloud/macro/auth"
	"github.com/macro-cloud/macro/internal/testenv"
	"github.com/macro-cloud/macro/types"
)

func TestCustomDomains(t *testing.T) {
	e := newEnv(t)
	dns := testenv.StartDNS(t)
	// This test's server asks the fake DNS server.
	s := New(Config{Store: e.st, Auth: auth.New(auth.Config{Store: e.st}), CA: e.ca, Cluster: "testcloud", Domain: "cloud.test",
		Resolver: &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, dns.Addr)
		}}})
	e.port.Config.Handler = s.Handler()
	for _, n := range []string{"alice", "bob"} {
		e.call(http.DefaultClient, "POST", e.adminURL("/tenants"), "", map[string]string{"name": n}, nil)
	}
	alice, bob := e.mustToken("alice").Token, e.mustToken("bob").Token

	for _, bad := range []struct{ name, want string }{
		{"", "required"}, {"localhost", "want a name such as"}, {"10.0.0.1", "is an address"},
		{"a_b.example", "not a DNS label"}, {"app.alice.cloud.test", "under the cluster's domain"},
	} {
		if code, body := e.call(e.client, "POST", e.portURL("/domains"), alice, map[string]string{"name": bad.name}, nil); code != 400 || !strings.Contains(body, bad.want) {
			t.Errorf("claim %q: %d %s", bad.name, code, body)
		}
	}
	var d Domain
	if code, body := e.call(e.client, "POST", e.portURL("/domains"), alice, map[string]string{"name": "Shop.Example."}, &d); code != 201 || d.Name != "shop.example" || d.Verified {
		t.Fatalf("claim: %d %s", code, body)
	}
	if !strings.HasPrefix(d.Record, `_macro-challenge.shop.example. TXT "macro-`) {
		t.Fatalf("record: %s", d.Record)
	}
	token := strings.Trim(strings.Fields(d.Record)[2], `"`)
	if code, body := e.call(e.client, "POST", e.portURL("/domains"), bob, map[string]string{"name": "shop.example"}, nil); code != 409 || !strings.Contains(body, "held by another tenant") {
		t.Fatalf("bob claims alice's domain: %d %s", code, body)
	}
	for _, m := range []string{"GET", "DELETE"} {
		if code, _ := e.call(e.client, m, e.portURL("/domains/shop.example"), bob, nil, nil); code != 404 {
			t.Fatalf("bob %s alice's domain: %d", m, code)
		}
	}
	if code, _ := e.call(e.client, "POST", e.portURL("/domains/shop.example/verify"), bob, nil, nil); code != 404 {
		t.Fatalf("bob verifies alice's domain: %d", code)
	}

	// Not yet published, then a wrong value, then the right one.
	if code, body := e.call(e.client, "POST", e.portURL("/domains/shop.example/verify"), alice, nil, nil); code != 409 || !strings.Contains(body, "has TXT records none") {
		t.Fatalf("verify without a record: %d %s", code, body)
	}
	dns.SetTXT("_macro-challenge.shop.example", "something else")
	if code, body := e.call(e.client, "POST", e.portURL("/domains/shop.example/verify"), alice, nil, nil); code != 409 || !strings.Contains(body, "something else") {
		t.Fatalf("verify with a wrong record: %d %s", code, body)
	}
	// A route on the domain gives no route while it is pending.
	p := &types.Pod{ID: strings.Repeat("c", 64), Name: "shop", Tenant: "alice", Namespace: "default",
		Spec: types.PodSpec{Labels: map[string]string{"kr.ingress.80": "https://www.shop.example"}}}
	if err := e.st.CreatePod(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	var list IngressList
	e.call(e.client, "GET", e.portURL("/ingresses"), alice, nil, &list)
	if len(list.Routes) != 0 || len(list.Problems) != 1 || !strings.Contains(list.Problems[0].Problem, "not a verified domain") {
		t.Fatalf("ingress before verification: %+v", list)
	}
	dns.SetTXT("_macro-challenge.shop.example", "something else", token)
	if code, body := e.call(e.client, "POST", e.portURL("/domains/shop.example/verify"), alice, nil, &d); code != 200 || !d.Verified {
		t.Fatalf("verify: %d %s", code, body)
	}
	e.call(e.client, "GET", e.portURL("/ingresses"), alice, nil, &list)
	if len(list.Routes) != 1 || list.Routes[0].URL != "https://www.shop.example" {
		t.Fatalf("ingress after verification: %+v", list)
	}
	var all []Domain
	if code, _ := e.call(e.client, "GET", e.portURL("/domains"), bob, nil, &all); code != 200 || len(all) != 0 {
		t.Fatalf("bob's domains: %+v", all)
	}
	if code, _ := e.call(e.client, "GET", e.portURL("/domains"), alice, nil, &all); code != 200 || len(all) != 1 || !all[0].Verified {
		t.Fatalf("alice's domains: %+v", all)
	}
	if code, _ := e.call(e.client, "DELETE", e.portURL("/domains/shop.example"), alice, nil, nil); code != 204 {
		t.Fatalf("delete: %d", code)
	}
	if code, _ := e.call(e.client, "POST", e.portURL("/domains"), bob, map[string]string{"name": "shop.example"}, nil); code != 201 {
		t.Fatalf("bob claims the released name: %d", code)
	}
}

// TestCustomDomainHTTPCheck: a claim is proven by its token served over
// HTTP by the domain's current hosting; not from a loopback address in
// production, and never for a name under another tenant's verified domain.
func TestCustomDomainHTTPCheck(t *testing.T) {
	e := newEnv(t)
	dns := testenv.StartDNS(t) // no TXT records at all
	s := New(Config{Store: e.st, Auth: auth.New(auth.Config{Store: e.st}), CA: e.ca, Cluster: "testcloud", Domain: "cloud.test",
		Resolver: &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, dns.Addr)
		}}})
	var served sync.Map // path -> body
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if v, ok := served.Load(r.Host + r.URL.Path); ok {
			io.WriteString(w, v.(string)+"\n")
			return
		}
		http.NotFound(w, r)
	}))
	defer site.Close()
	port := site.Listener.Addr().(*net.TCPAddr).Port
	s.httpCheck = httpCheck{port: port, lookup: func(context.Context, string) ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	}}
	e.port.Config.Handler = s.Handler()
	for _, n := range []string{"alice", "bob"} {
		e.call(http.DefaultClient, "POST", e.adminURL("/tenants"), "", map[string]string{"name": n}, nil)
	}
	alice, bob := e.mustToken("alice").Token, e.mustToken("bob").Token
	var d Domain
	if code, body := e.call(e.client, "POST", e.portURL("/domains"), alice, map[string]string{"name": "old.example"}, &d); code != 201 {
		t.Fatalf("claim: %d %s", code, body)
	}
	if d.CheckURL != "http://old.example/.well-known/macro-domain/"+d.Token {
		t.Fatalf("check URL %q", d.CheckURL)
	}
	served.Store("old.example/.well-known/macro-domain/"+d.Token, d.Token)
	if code, body := e.call(e.client, "POST", e.portURL("/domains/old.example/verify"), alice, nil, nil); code != 409 || !strings.Contains(body, "not an address on the Internet") {
		t.Fatalf("verify from loopback in production: %d %s", code, body)
	}
	s.httpCheck.allowLocal = true
	served.Store("old.example/.well-known/macro-domain/"+d.Token, "not it")
	if code, body := e.call(e.client, "POST", e.portURL("/domains/old.example/verify"), alice, nil, nil); code != 409 || !strings.Contains(body, "not the token") {
		t.Fatalf("verify with a wrong answer: %d %s", code, body)
	}
	served.Store("old.example/.well-known/macro-domain/"+d.Token, d.Token)
	if code, body := e.call(e.client, "POST", e.portURL("/domains/old.example/verify"), alice, nil, &d); code != 200 || !d.Verified {
		t.Fatalf("verify over HTTP: %d %s", code, body)
	}
	// Bob serves the token of his claim under alice's domain: refused.
	var bd Domain
	if code, body := e.call(e.client, "POST", e.portURL("/domains"), bob, map[string]string{"name": "shop.old.example"}, &bd); code != 201 {
		t.Fatalf("bob claims: %d %s", code, body)
	}
	served.Store("shop.old.example/.well-known/macro-domain/"+bd.Token, bd.Token)
	if code, body := e.call(e.client, "POST", e.portURL("/domains/shop.old.example/verify"), bob, nil, nil); code != 409 || !strings.Contains(body, "another tenant holds old.example") {
		t.Fatalf("bob's HTTP check under alice's domain: %d %s", code, body)
	}
}
