package router

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/macro-cloud/macro/types"
)

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	for _, tool := range []string{"ip", "nft", "nsenter", "unshare", "busybox"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
}

// openRouter opens a router in a fresh directory and destroys it when the
// test ends, whatever the outcome.
func openRouter(t testing.TB, cfg Config) **Router {
	t.Helper()
	// Named like a macro server's data dir, with the router where a server
	// keeps it (DIR/net): if this test binary is killed, internal/testenv's
	// sweep removes the namespaces, the host's veth and nftables table.
	dir, err := os.MkdirTemp("", "macro-e2e-router-")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Dir = filepath.Join(dir, "net")
	if cfg.Cluster == "" {
		cfg.Cluster = "test"
	}
	r, err := Open(context.Background(), cfg)
	rp := &r
	t.Cleanup(func() {
		if r := *rp; r != nil {
			if err := r.Destroy(context.Background()); err != nil {
				t.Errorf("destroy: %v", err)
			}
		}
		RemoveHostShare(context.Background(), cfg.Dir)
		os.RemoveAll(dir)
	})
	if err != nil {
		t.Fatal(err)
	}
	return rp
}

func pod(id, tenant, ns, name string, aliases ...string) types.Pod {
	return types.Pod{ID: strings.Repeat(id, 64/len(id)), Tenant: tenant, Namespace: ns, Name: name, Spec: types.PodSpec{Aliases: aliases}}
}

// in runs a command inside a network namespace and returns its output and
// whether it succeeded.
func in(t *testing.T, netns string, args ...string) (string, bool) {
	t.Helper()
	out, err := exec.Command("nsenter", append([]string{"--net=" + netns, "--"}, args...)...).CombinedOutput()
	return string(out), err == nil
}

func attach(t *testing.T, r *Router, p types.Pod) Attachment {
	t.Helper()
	a, err := r.Attach(context.Background(), p)
	if err != nil {
		t.Fatalf("attach %s: %v", p.Name, err)
	}
	return a
}

// TestRouter wires pods of two tenants with the real router and sends
// real packets between their namespaces (no container runtime needed).
func TestRouter(t *testing.T) {
	requireRoot(t)
	rp := openRouter(t, Config{})
	r := *rp
	web := attach(t, r, pod("a1", "alice", "shop", "web", "front"))
	db := attach(t, r, pod("a2", "alice", "shop", "db"))
	blog := attach(t, r, pod("a3", "alice", "blog", "blog"))
	eve := attach(t, r, pod("b1", "eve", "shop", "eve"))

	reach := func(from Attachment, to string) bool {
		_, ok := in(t, from.Netns, "busybox", "ping", "-c", "1", "-W", "2", to)
		return ok
	}
	tests := []struct {
		name string
		from Attachment
		to   string
		want bool
	}{
		{"same namespace v6", web, db.IPv6.String(), true},
		{"same namespace v4", web, db.IPv4.String(), true},
		{"other namespace same tenant v6", web, blog.IPv6.String(), true},
		{"other namespace same tenant v4", blog, web.IPv4.String(), true},
		{"gateway v4", web, web.Gateway4.String(), true},
		{"other tenant v6", eve, web.IPv6.String(), false},
		{"other tenant v4", eve, web.IPv4.String(), false},
		{"to other tenant v6", web, eve.IPv6.String(), false},
		{"to other tenant v4", web, eve.IPv4.String(), false},
		{"router uplink", web, r.st.Uplink.Addr().String(), false},
		{"host end of uplink", web, r.hostAddr().String(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := reach(tt.from, tt.to); got != tt.want {
				t.Fatalf("ping %s: %v, want %v", tt.to, got, tt.want)
			}
		})
	}

	t.Run("routing alone keeps tenants apart", func(t *testing.T) {
		// With alice's mark, eve's address has no route (the nftables
		// rules are a second wall, not the only one).
		for _, dst := range []string{eve.IPv6.String(), eve.IPv4.String()} {
			out, ok := in(t, r.ns, "ip", "route", "get", dst, "mark", fmt.Sprintf("0x%x", tenantMark(r.st.Tenants["alice"])), "iif", vethName(pod("a1", "", "", "").ID))
			if ok && strings.Contains(out, vethName(pod("b1", "", "", "").ID)) {
				t.Errorf("alice's table routes %s to eve: %s", dst, out)
			}
		}
	})

	t.Run("dns", func(t *testing.T) {
		for _, tt := range []struct {
			from    Attachment
			name    string
			want    []string
			wantErr bool
		}{
			{web, "db", []string{db.IPv6.String(), db.IPv4.String()}, false},
			{web, "front", []string{web.IPv6.String(), web.IPv4.String()}, false},
			{blog, "db.shop", []string{db.IPv6.String(), db.IPv4.String()}, false},
			{blog, "db", nil, true},
			{eve, "web", nil, true},
			{eve, "web.shop", nil, true},
		} {
			out, ok := in(t, tt.from.Netns, "busybox", "nslookup", tt.name, DNSAddr.String())
			if ok == tt.wantErr {
				t.Errorf("nslookup %s: ok %v\n%s", tt.name, ok, out)
				continue
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("nslookup %s: no %s in\n%s", tt.name, w, out)
				}
			}
		}
	})

	t.Run("dns over IPv4", func(t *testing.T) {
		// Tenants' IPv4 addresses overlap: the server knows the asker by
		// its link (UDP) or by the tenant mark of its connection (TCP).
		tcp := func(from Attachment, name string) (int, []string) {
			var resp *mdns.Msg
			err := inNetns(from.Netns, func() error {
				m := new(mdns.Msg)
				m.SetQuestion(mdns.Fqdn(name), mdns.TypeA)
				var err error
				resp, _, err = (&mdns.Client{Net: "tcp", Timeout: 5 * time.Second}).Exchange(m, netip.AddrPortFrom(from.Nameserver4, 53).String())
				return err
			})
			if err != nil {
				t.Fatalf("tcp query %s: %v", name, err)
			}
			var out []string
			for _, rr := range resp.Answer {
				if a, ok := rr.(*mdns.A); ok {
					out = append(out, a.A.String())
				}
			}
			return resp.Rcode, out
		}
		for _, tt := range []struct {
			from Attachment
			name string
			want string // "" for NXDOMAIN
		}{
			{web, "db", db.IPv4.String()},
			{blog, "db.shop", db.IPv4.String()},
			{eve, "eve", eve.IPv4.String()},
			{eve, "web", ""},
			{eve, "db.shop", ""},
		} {
			out, ok := in(t, tt.from.Netns, "busybox", "nslookup", "-type=a", tt.name, tt.from.Nameserver4.String())
			if ok != (tt.want != "") || !strings.Contains(out, tt.want) {
				t.Errorf("udp nslookup %s: ok %v, want %q in\n%s", tt.name, ok, tt.want, out)
			}
			rcode, got := tcp(tt.from, tt.name)
			if tt.want == "" && rcode != mdns.RcodeNameError || tt.want != "" && !slices.Contains(got, tt.want) {
				t.Errorf("tcp %s: rcode %d %v, want %q", tt.name, rcode, got, tt.want)
			}
		}
	})

	t.Run("a stopped pod leaves DNS until attached again", func(t *testing.T) {
		r.Stopped(pod("a2", "", "", "").ID)
		if out, ok := in(t, web.Netns, "busybox", "nslookup", "db", DNSAddr.String()); ok {
			t.Fatalf("stopped db still resolves:\n%s", out)
		}
		attach(t, r, pod("a2", "alice", "shop", "db"))
		if out, ok := in(t, web.Netns, "busybox", "nslookup", "db", DNSAddr.String()); !ok {
			t.Fatalf("db does not resolve after its next attach:\n%s", out)
		}
	})

	t.Run("spoofed source dropped", func(t *testing.T) {
		// eve takes web's address as a second one and pings db from it.
		if out, ok := in(t, eve.Netns, "ip", "addr", "add", web.IPv4.String()+"/32", "dev", "eth0"); !ok {
			t.Fatal(out)
		}
		defer in(t, eve.Netns, "ip", "addr", "del", web.IPv4.String()+"/32", "dev", "eth0")
		if _, ok := in(t, eve.Netns, "busybox", "ping", "-c", "1", "-W", "2", "-I", web.IPv4.String(), db.IPv4.String()); ok {
			t.Fatalf("spoofed ping went through")
		}
		// Its own address still works toward the router.
		if _, ok := in(t, eve.Netns, "busybox", "ping", "-c", "1", "-W", "2", "-I", eve.IPv4.String(), eve.Gateway4.String()); !ok {
			t.Fatalf("eve cannot reach its gateway from its own address")
		}
	})

	t.Run("adoption keeps addresses and traffic", func(t *testing.T) {
		r.Close()
		r2, err := Open(context.Background(), r.cfg)
		if err != nil {
			t.Fatal(err)
		}
		r, *rp = r2, r2 // the test's cleanup destroys whatever *rp is
		again := attach(t, r, pod("a1", "alice", "shop", "web", "front"))
		if again != web {
			t.Fatalf("after reopen %+v, was %+v", again, web)
		}
		if !reach(db, web.IPv6.String()) {
			t.Fatalf("no traffic after reopen")
		}
		if out, ok := in(t, db.Netns, "busybox", "nslookup", "web", DNSAddr.String()); !ok {
			t.Fatalf("no DNS after reopen: %s", out)
		}
	})

	t.Run("a veth left by a crash does not stop a new pod", func(t *testing.T) {
		p := pod("c7", "alice", "shop", "late")
		if out, ok := in(t, r.ns, "ip", "link", "add", vethName(p.ID), "type", "veth", "peer", "name", "stray"); !ok {
			t.Fatal(out)
		}
		late := attach(t, r, p)
		if !reach(late, db.IPv4.String()) {
			t.Fatalf("the pod attached over a stray veth has no traffic")
		}
		if err := r.Detach(context.Background(), p.ID); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("detach and reconcile", func(t *testing.T) {
		if err := r.Detach(context.Background(), pod("a3", "", "", "").ID); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(blog.Netns); !os.IsNotExist(err) {
			t.Fatalf("netns file still there: %v", err)
		}
		if linkExists(context.Background(), r.ns, vethName(pod("a3", "", "", "").ID)) {
			t.Fatalf("veth still there")
		}
		keep := map[string]bool{pod("a1", "", "", "").ID: true, pod("a2", "", "", "").ID: true}
		if err := r.Reconcile(context.Background(), keep); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(eve.Netns); !os.IsNotExist(err) {
			t.Fatalf("eve's netns survived reconcile")
		}
		ents, _ := os.ReadDir(filepath.Join(r.cfg.Dir, "ns"))
		if len(ents) != 2 {
			t.Fatalf("%d namespaces left, want 2", len(ents))
		}
		if !reach(web, db.IPv4.String()) {
			t.Fatalf("kept pods lost traffic")
		}
	})
}
