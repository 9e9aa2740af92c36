package ingress

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

func backend(tenant, pod string, age int, labels ...string) Backend {
	l := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		l[labels[i]] = labels[i+1]
	}
	return Backend{
		Tenant: tenant, Pod: pod, Name: pod, Created: t0.Add(time.Duration(age) * time.Second),
		Labels: l, Addr: netip.MustParseAddr("fd00::1"), Ready: true,
	}
}

func TestBuildRoutesAndConflicts(t *testing.T) {
	cfg := Config{Domain: "cloud.test", Verified: map[string][]string{"alice": {"example.com"}, "bob": {"example.com"}}}
	tab := Build(cfg, []Backend{
		backend("alice", "web1", 1, "kr.ingress.80", "https://app.*"),
		backend("alice", "web2", 2, "kr.ingress.8080", "https://app.*"),
		backend("alice", "api", 3, "kr.ingress.9000", "https://app.*/api"),
		// bob claims alice's host literally: refused (not under bob's domain).
		backend("bob", "evil", 0, "kr.ingress.80", "https://app.alice.cloud.test"),
		// both verified example.com: the earlier claim wins the host.
		backend("bob", "shop", 5, "kr.ingress.80", "https://shop.example.com"),
		backend("alice", "shop", 6, "kr.ingress.80", "https://shop.example.com"),
		// not verified for anybody.
		backend("alice", "other", 7, "kr.ingress.80", "https://other.org"),
		backend("alice", "bad", 8, "kr.ingress.80", "nope"),
		backend("alice", "db", 9, "kr.ingress.tcp.5432", "15432"),
		backend("bob", "db", 10, "kr.ingress.tcp.5432", "15432"),
	})
	r := tab.Lookup("app.alice.cloud.test", "/")
	if r == nil || r.Tenant != "alice" || len(r.Targets) != 2 || r.Targets[0].Addr.Port() != 80 || r.Targets[1].Addr.Port() != 8080 {
		t.Fatalf("root route: %+v", r)
	}
	if r := tab.Lookup("app.alice.cloud.test", "/api/x"); r == nil || len(r.Targets) != 1 || r.Targets[0].Pod != "api" {
		t.Fatalf("api route: %+v", r)
	}
	if r := tab.Lookup("shop.example.com", "/"); r == nil || r.Tenant != "bob" {
		t.Fatalf("shop belongs to the earlier claim: %+v", r)
	}
	if tab.Lookup("other.org", "/") != nil || tab.Lookup("nowhere.test", "/") != nil {
		t.Fatal("unverified or unknown hosts must have no route")
	}
	if tr := tab.TCP(15432); tr == nil || tr.Tenant != "alice" || len(tr.Targets) != 1 {
		t.Fatalf("tcp route: %+v", tr)
	}
	for pod, want := range map[string]string{
		"evil":  "may claim hosts under bob.cloud.test only",
		"shop":  "held by another tenant",
		"other": "not a verified domain",
		"bad":   "want https://HOST",
		"db":    "public TCP port 15432 is held",
	} {
		if got := strings.Join(tab.Problems[pod], "; "); !strings.Contains(got, want) {
			t.Errorf("problems of %s: %q, want %q", pod, got, want)
		}
	}
	if n := len(tab.Routes()); n != 3 {
		t.Errorf("%d routes, want 3", n)
	}
}

// TestBuildIsDeterministic: the same pods in any order give the same
// table, so several ingress instances agree.
func TestBuildIsDeterministic(t *testing.T) {
	cfg := Config{Domain: "cloud.test", Verified: map[string][]string{"alice": {"example.com"}, "bob": {"example.com"}}}
	bs := []Backend{
		backend("alice", "a", 1, "kr.ingress.80", "https://x.example.com"),
		backend("bob", "b", 1, "kr.ingress.80", "https://x.example.com"),
		backend("alice", "c", 0, "kr.ingress.80", "https://y.example.com"),
	}
	want := Build(cfg, bs).Lookup("x.example.com", "/").Tenant
	for i := 0; i < 10; i++ {
		bs[0], bs[1], bs[2] = bs[2], bs[0], bs[1]
		if got := Build(cfg, bs).Lookup("x.example.com", "/").Tenant; got != want {
			t.Fatalf("order %d: owner %s, want %s", i, got, want)
		}
	}
}
