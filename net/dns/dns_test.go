package dns

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"testing"

	mdns "github.com/miekg/dns"
)

func testTable() *Table {
	t := NewTable()
	add := func(id, tenant, ns, v6, v4 string, names ...string) {
		e := Entry{ID: id, Tenant: tenant, Namespace: ns, Names: names, IPv6: netip.MustParseAddr(v6)}
		if v4 != "" {
			e.IPv4 = netip.MustParseAddr(v4)
		}
		t.Set(e)
	}
	add("web1", "alice", "shop", "fd00:a::1:1", "10.1.0.2", "web-1", "web")
	add("web2", "alice", "shop", "fd00:a::1:2", "10.1.0.3", "web-2", "web")
	add("db", "alice", "shop", "fd00:a::1:3", "10.1.0.4", "db")
	add("blog", "alice", "blog", "fd00:a::2:1", "10.2.0.2", "blog")
	add("bobdb", "bob", "shop", "fd00:b::1:1", "10.1.0.2", "secret", "db")
	add("v6only", "alice", "shop", "fd00:a::1:9", "", "v6only")
	return t
}

func query(name string, qtype uint16) *mdns.Msg {
	m := new(mdns.Msg)
	m.SetQuestion(mdns.Fqdn(name), qtype)
	return m
}

func answers(m *mdns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		switch r := rr.(type) {
		case *mdns.A:
			out = append(out, r.A.String())
		case *mdns.AAAA:
			out = append(out, r.AAAA.String())
		}
	}
	slices.Sort(out)
	return out
}

func TestAnswer(t *testing.T) {
	dir := testTable()
	tests := []struct {
		name       string
		tenant, ns string
		q          string
		qtype      uint16
		forward    bool
		rcode      int
		want       []string
	}{
		{"own name AAAA", "alice", "shop", "db", mdns.TypeAAAA, false, mdns.RcodeSuccess, []string{"fd00:a::1:3"}},
		{"own name A", "alice", "shop", "db", mdns.TypeA, false, mdns.RcodeSuccess, []string{"10.1.0.4"}},
		{"case-insensitive", "alice", "shop", "DB", mdns.TypeA, false, mdns.RcodeSuccess, []string{"10.1.0.4"}},
		{"shared alias gives all", "alice", "shop", "web", mdns.TypeA, false, mdns.RcodeSuccess, []string{"10.1.0.2", "10.1.0.3"}},
		{"ANY gives both families", "alice", "shop", "web-1", mdns.TypeANY, false, mdns.RcodeSuccess, []string{"10.1.0.2", "fd00:a::1:1"}},
		{"no A for a v6-only pod: NODATA", "alice", "shop", "v6only", mdns.TypeA, false, mdns.RcodeSuccess, nil},
		{"MX of a pod: NODATA", "alice", "shop", "db", mdns.TypeMX, false, mdns.RcodeSuccess, nil},
		{"other namespace needs its name", "alice", "blog", "db", mdns.TypeA, false, mdns.RcodeNameError, nil},
		{"name.namespace", "alice", "blog", "db.shop", mdns.TypeAAAA, false, mdns.RcodeSuccess, []string{"fd00:a::1:3"}},
		{"name.own-namespace", "alice", "shop", "db.shop", mdns.TypeA, false, mdns.RcodeSuccess, []string{"10.1.0.4"}},
		{"missing name in a known namespace", "alice", "blog", "nope.shop", mdns.TypeA, false, mdns.RcodeNameError, nil},
		{"another tenant's pod: NXDOMAIN", "alice", "shop", "secret", mdns.TypeA, false, mdns.RcodeNameError, nil},
		{"same name in two tenants: own only", "bob", "shop", "db", mdns.TypeA, false, mdns.RcodeSuccess, []string{"10.1.0.2"}},
		{"another tenant's name.namespace is not ours", "bob", "shop", "blog.blog", mdns.TypeA, true, 0, nil},
		{"outside name forwarded", "alice", "shop", "example.com", mdns.TypeA, true, 0, nil},
		{"three labels forwarded", "alice", "shop", "db.shop.example", mdns.TypeA, true, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, fwd := Answer(dir, Asker{Tenant: tt.tenant, Namespace: tt.ns}, query(tt.q, tt.qtype))
			if fwd != tt.forward {
				t.Fatalf("forward %v, want %v", fwd, tt.forward)
			}
			if fwd {
				return
			}
			if resp.Rcode != tt.rcode {
				t.Fatalf("rcode %s, want %s", mdns.RcodeToString[resp.Rcode], mdns.RcodeToString[tt.rcode])
			}
			if got := answers(resp); !slices.Equal(got, tt.want) {
				t.Fatalf("answers %v, want %v", got, tt.want)
			}
			if !resp.Authoritative {
				t.Fatalf("VPC answer not authoritative")
			}
		})
	}
}

// TestOverlayAnswers: A gives the address on an overlay the asker shares,
// else the default overlay's; AAAA is the VPC address either way.
func TestOverlayAnswers(t *testing.T) {
	dir := testTable()
	back := map[string]netip.Addr{"net-back": netip.MustParseAddr("10.10.0.10")}
	dir.Set(Entry{ID: "db", Tenant: "alice", Namespace: "shop", Names: []string{"db"},
		IPv6: netip.MustParseAddr("fd00:a::1:3"), IPv4: netip.MustParseAddr("10.1.0.4"), Overlays: back})
	dir.Set(Entry{ID: "web1", Tenant: "alice", Namespace: "shop", Names: []string{"web-1"},
		IPv6: netip.MustParseAddr("fd00:a::1:1"), IPv4: netip.MustParseAddr("10.1.0.2"),
		Overlays: map[string]netip.Addr{"net-back": netip.MustParseAddr("10.10.0.2")}})
	web, ok := dir.Client(netip.MustParseAddr("fd00:a::1:1"))
	if !ok || web.Overlays["net-back"] != netip.MustParseAddr("10.10.0.2") {
		t.Fatalf("client: %+v %v", web, ok)
	}
	tests := []struct {
		asker Asker
		qtype uint16
		want  []string
	}{
		{web, mdns.TypeA, []string{"10.10.0.10"}},
		{web, mdns.TypeAAAA, []string{"fd00:a::1:3"}},
		{Asker{Tenant: "alice", Namespace: "shop"}, mdns.TypeA, []string{"10.1.0.4"}},
		{Asker{Tenant: "alice", Namespace: "shop", Overlays: map[string]netip.Addr{"other": {}}}, mdns.TypeA, []string{"10.1.0.4"}},
	}
	for _, tt := range tests {
		resp, _ := Answer(dir, tt.asker, query("db", tt.qtype))
		if got := answers(resp); !slices.Equal(got, tt.want) {
			t.Errorf("%+v %d: %v, want %v", tt.asker, tt.qtype, got, tt.want)
		}
	}
}

func TestTableDelete(t *testing.T) {
	dir := testTable()
	dir.Delete("web1")
	if a, _ := dir.Lookup(Asker{Tenant: "alice"}, "shop", "web"); len(a) != 2 || a[0].String() != "10.1.0.3" {
		t.Fatalf("after delete: %v", a)
	}
	if _, ok := dir.Client(netip.MustParseAddr("fd00:a::1:1")); ok {
		t.Fatalf("deleted pod still a client")
	}
	dir.Delete("blog")
	if dir.HasNamespace("alice", "blog") {
		t.Fatalf("namespace without pods still known")
	}
	// Set replaces: a renamed pod loses its old name.
	dir.Set(Entry{ID: "db", Tenant: "alice", Namespace: "shop", Names: []string{"database"}, IPv6: netip.MustParseAddr("fd00:a::1:3")})
	if _, found := dir.Lookup(Asker{Tenant: "alice"}, "shop", "db"); found {
		t.Fatalf("old name still resolves")
	}
}

// fakeUpstream answers outside.example with 192.0.2.7 and NXDOMAIN
// otherwise, on UDP and TCP of one loopback port.
func fakeUpstream(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	h := mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(r)
		if r.Question[0].Name == "outside.example." {
			m.Answer = append(m.Answer, &mdns.A{Hdr: mdns.RR_Header{Name: r.Question[0].Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 60}, A: net.ParseIP("192.0.2.7")})
		} else {
			m.Rcode = mdns.RcodeNameError
		}
		w.WriteMsg(m)
	})
	for _, s := range []*mdns.Server{{PacketConn: pc, Handler: h}, {Listener: l, Handler: h}} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		go s.ActivateAndServe()
		<-started
		t.Cleanup(func() { s.Shutdown() })
	}
	return pc.LocalAddr().String()
}

// TestServer runs the real server on loopback sockets: answers by the
// asker's address, forwarding over UDP and TCP, refusal of strangers.
func TestServer(t *testing.T) {
	dir := testTable()
	// The pod "asker" asks from ::1 in this test.
	dir.Set(Entry{ID: "asker", Tenant: "alice", Namespace: "shop", Names: []string{"asker"}, IPv6: netip.MustParseAddr("::1")})
	srv := &Server{Dir: dir, Upstream: []string{fakeUpstream(t)}}
	pc, err := net.ListenPacket("udp", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	srv.Serve(pc, l)
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	addr := pc.LocalAddr().String()

	for _, network := range []string{"udp", "tcp"} {
		c := &mdns.Client{Net: network}
		for _, tt := range []struct {
			q     string
			rcode int
			want  []string
		}{
			{"web", mdns.RcodeSuccess, []string{"10.1.0.2", "10.1.0.3"}},
			{"outside.example", mdns.RcodeSuccess, []string{"192.0.2.7"}},
			{"nowhere.example", mdns.RcodeNameError, nil},
			{"secret", mdns.RcodeNameError, nil},
		} {
			resp, _, err := c.Exchange(query(tt.q, mdns.TypeA), addr)
			if err != nil {
				t.Fatalf("%s %s: %v", network, tt.q, err)
			}
			if resp.Rcode != tt.rcode || !slices.Equal(answers(resp), tt.want) {
				t.Errorf("%s %s: %s %v, want %s %v", network, tt.q, mdns.RcodeToString[resp.Rcode], answers(resp), mdns.RcodeToString[tt.rcode], tt.want)
			}
		}
	}

	// Nobody the directory knows: refused.
	dir.Delete("asker")
	resp, _, err := (&mdns.Client{}).Exchange(query("web", mdns.TypeA), addr)
	if err != nil || resp.Rcode != mdns.RcodeRefused {
		t.Fatalf("stranger: %v %v", resp, err)
	}

	// No upstream reachable: SERVFAIL, not silence.
	dir.Set(Entry{ID: "asker", Tenant: "alice", Namespace: "shop", Names: []string{"asker"}, IPv6: netip.MustParseAddr("::1")})
	noUp := &Server{Dir: dir}
	resp = noUp.Handle(&net.UDPAddr{IP: net.ParseIP("::1")}, "udp", query("outside.example", mdns.TypeA))
	if resp.Rcode != mdns.RcodeServerFailure {
		t.Fatalf("no upstream: %v", resp)
	}
}

func TestUpstreamsFromResolvConf(t *testing.T) {
	got := UpstreamsFromResolvConf([]byte("# x\nsearch example\nnameserver 10.0.0.2\nnameserver ::1\nnameserver bogus\n"))
	if !slices.Equal(got, []string{"10.0.0.2:53", "[::1]:53"}) {
		t.Fatalf("%v", got)
	}
}

// FuzzAnswer feeds arbitrary packets to the answer logic as a pod would
// send them: it must not panic, and every reply must pack.
func FuzzAnswer(f *testing.F) {
	for _, q := range []*mdns.Msg{query("web", mdns.TypeA), query("db.shop", mdns.TypeAAAA), query("example.com", mdns.TypeMX), query(".", mdns.TypeANY)} {
		b, _ := q.Pack()
		f.Add(b)
	}
	dir := testTable()
	f.Fuzz(func(t *testing.T, data []byte) {
		req := new(mdns.Msg)
		if err := req.Unpack(data); err != nil {
			return
		}
		resp, fwd := Answer(dir, Asker{Tenant: "alice", Namespace: "shop"}, req)
		if fwd {
			return
		}
		if resp == nil {
			t.Fatalf("no reply and no forward")
		}
		if _, err := resp.Pack(); err != nil {
			t.Fatalf("reply does not pack: %v", err)
		}
		if resp.Id != req.Id {
			t.Fatalf("reply id %d for query %d", resp.Id, req.Id)
		}
	})
}

// TestClientByLinkAndV4: a query over IPv4 is known by its link, or by
// tenant and address; IPv4 addresses overlap across tenants.
func TestClientByLinkAndV4(t *testing.T) {
	dir := NewTable()
	dir.Set(Entry{ID: "a", Tenant: "alice", Namespace: "shop", Names: []string{"a"}, Link: "va",
		IPv6: netip.MustParseAddr("fd00:a::1"), IPv4: netip.MustParseAddr("10.1.0.2"),
		Overlays: map[string]netip.Addr{"n1": netip.MustParseAddr("10.10.0.10")}})
	dir.Set(Entry{ID: "b", Tenant: "bob", Namespace: "shop", Names: []string{"b"}, Link: "vb",
		IPv6: netip.MustParseAddr("fd00:b::1"), IPv4: netip.MustParseAddr("10.1.0.2")})
	tests := []struct {
		got    Asker
		ok     bool
		tenant string
	}{}
	add := func(a Asker, ok bool, tenant string) {
		tests = append(tests, struct {
			got    Asker
			ok     bool
			tenant string
		}{a, ok, tenant})
	}
	a, ok := dir.ClientOnLink("va")
	add(a, ok, "alice")
	a, ok = dir.ClientOnLink("vb")
	add(a, ok, "bob")
	a, ok = dir.ClientV4("bob", netip.MustParseAddr("10.1.0.2"))
	add(a, ok, "bob")
	a, ok = dir.ClientV4("alice", netip.MustParseAddr("10.10.0.10"))
	add(a, ok, "alice")
	for i, tt := range tests {
		if !tt.ok || tt.got.Tenant != tt.tenant {
			t.Errorf("%d: %+v %v, want %s", i, tt.got, tt.ok, tt.tenant)
		}
	}
	if _, ok := dir.ClientV4("bob", netip.MustParseAddr("10.10.0.10")); ok {
		t.Errorf("bob asks as alice's overlay address")
	}
	if _, ok := dir.ClientOnLink("vz"); ok {
		t.Errorf("unknown link known")
	}
	dir.Delete("a")
	if _, ok := dir.ClientOnLink("va"); ok {
		t.Errorf("deleted pod's link still known")
	}
	if _, ok := dir.ClientV4("alice", netip.MustParseAddr("10.10.0.10")); ok {
		t.Errorf("deleted pod's overlay address still known")
	}
}
