package ipam

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"testing"
)

func TestTenantPrefix(t *testing.T) {
	a, b := TenantPrefix("c1", "alice"), TenantPrefix("c1", "bob")
	if a.Bits() != 48 || !netip.MustParsePrefix("fd00::/8").Contains(a.Addr()) {
		t.Fatalf("alice %s is not a ULA /48", a)
	}
	if a == b {
		t.Fatalf("alice and bob share %s", a)
	}
	if a != TenantPrefix("c1", "alice") {
		t.Fatalf("not deterministic")
	}
	if a == TenantPrefix("c2", "alice") {
		t.Fatalf("another cluster gives the same prefix")
	}
	// The separator keeps ("a", "b\x00c") apart from ("a\x00b", "c").
	if TenantPrefix("a", "bc") == TenantPrefix("ab", "c") {
		t.Fatalf("names run together")
	}
}

func TestAllocate(t *testing.T) {
	al := New("c", State{})
	web, err := al.Pod("web", "alice", "shop")
	if err != nil {
		t.Fatal(err)
	}
	db, err := al.Pod("db", "alice", "shop")
	if err != nil {
		t.Fatal(err)
	}
	other, _ := al.Pod("x", "alice", "blog")
	bobs, _ := al.Pod("y", "bob", "shop")
	ns := al.Namespace("alice", "shop")

	tests := []struct {
		name string
		ok   bool
	}{
		{"pod v6 in the namespace /64", ns.Subnet6.Contains(web.IPv6) && ns.Subnet6.Contains(db.IPv6)},
		{"namespace /64 in the tenant /48", TenantPrefix("c", "alice").Contains(ns.Subnet6.Addr()) && ns.Subnet6.Bits() == 64},
		{"pod v4 in the namespace /24", ns.Subnet4.Contains(web.IPv4) && ns.Subnet4.Contains(db.IPv4) && ns.Subnet4.Bits() == 24},
		{"v4 from .2 up", web.IPv4 == ns.Subnet4.Addr().Next().Next() && db.IPv4 == web.IPv4.Next()},
		{"gateway is .1", ns.Gateway4() == ns.Subnet4.Addr().Next()},
		{"another namespace, another /64", !ns.Subnet6.Contains(other.IPv6)},
		{"another tenant, another /48", !TenantPrefix("c", "alice").Contains(bobs.IPv6)},
		{"interface IDs past ::ffff", web.IPv6.As16()[8]|web.IPv6.As16()[9]|web.IPv6.As16()[10]|web.IPv6.As16()[11]|web.IPv6.As16()[12]|web.IPv6.As16()[13] != 0},
		{"v6 addresses differ", web.IPv6 != db.IPv6},
	}
	for _, tt := range tests {
		if !tt.ok {
			t.Errorf("%s: web %+v db %+v other %+v bob %+v ns %+v", tt.name, web, db, other, bobs, ns)
		}
	}
	if _, err := al.Pod("web", "alice", "blog"); err == nil {
		t.Errorf("a pod moved namespaces without an error")
	}
}

// A pod keeps its addresses across a restart of its owner (State round
// trip through JSON), and a released address is handed out again.
func TestStableAcrossRestart(t *testing.T) {
	al := New("c", State{})
	var want []Pod
	for i := range 5 {
		p, err := al.Pod(fmt.Sprint("p", i), "t", "ns")
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, p)
	}
	data, err := json.Marshal(al.State())
	if err != nil {
		t.Fatal(err)
	}
	var st State
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatal(err)
	}
	al2 := New("c", st)
	for _, w := range want {
		got, err := al2.Pod(w.ID, "t", "ns")
		if err != nil || got != w {
			t.Fatalf("after restart %+v (%v), want %+v", got, err, w)
		}
	}
	al2.Release("p1")
	q, _ := al2.Pod("new", "t", "ns")
	if q.IPv4 != want[1].IPv4 {
		t.Fatalf("released v4 %s not reused, got %s", want[1].IPv4, q.IPv4)
	}
	for _, id := range []string{"p0", "p2", "p3", "p4", "new"} {
		al2.Release(id)
	}
	if st := al2.State(); len(st.Pods) != 0 || len(st.Namespaces) != 0 {
		t.Fatalf("left after releasing all: %+v", st)
	}
}

// Namespaces whose hashes collide still get distinct subnets: forced here
// by filling the namespace slots a hash would land on.
func TestNamespaceCollision(t *testing.T) {
	al := New("c", State{})
	first := al.Namespace("t", "a")
	// Pretend a second namespace hashed to the same slot.
	al.ns[nsKey("t", "b")] = &Namespace{Tenant: "t", Name: "b", Subnet6: first.Subnet6, Subnet4: first.Subnet4}
	delete(al.ns, nsKey("t", "a"))
	again := al.Namespace("t", "a")
	if again.Subnet6 == first.Subnet6 || again.Subnet4 == first.Subnet4 {
		t.Fatalf("collision not resolved: %+v", again)
	}
	// Other tenants may overlap in IPv4: they are separated by routing.
	if o := al.Namespace("u", "a"); !V4Space.Contains(o.Subnet4.Addr()) {
		t.Fatalf("%s outside %s", o.Subnet4, V4Space)
	}
}

func TestFull(t *testing.T) {
	al := New("c", State{})
	for i := range 253 {
		if _, err := al.Pod(fmt.Sprint(i), "t", "n"); err != nil {
			t.Fatalf("pod %d: %v", i, err)
		}
	}
	if _, err := al.Pod("one too many", "t", "n"); !errors.Is(err, ErrFull) {
		t.Fatalf("254th pod: %v", err)
	}
	// The same namespace name in another tenant has its own /24.
	if _, err := al.Pod("other", "u", "n"); err != nil {
		t.Fatal(err)
	}
}

func TestGateway4(t *testing.T) {
	al := New("c", State{})
	p, _ := al.Pod("p", "t", "n")
	if Gateway4(p.IPv4) != al.Namespace("t", "n").Gateway4() {
		t.Fatalf("Gateway4(%s) = %s, namespace says %s", p.IPv4, Gateway4(p.IPv4), al.Namespace("t", "n").Gateway4())
	}
}

// TestPodIPv6AcrossNodes: a pod's IPv6 address is a function of the
// cluster, tenant, namespace and pod ID alone, so the node it is
// rescheduled to gives it the same one (barring a hash collision with a
// namespace or pod already there, which moves it to the next free slot),
// whatever else each node runs.
func TestPodIPv6AcrossNodes(t *testing.T) {
	node1, node2 := New("c", State{}), New("c", State{})
	for i := range 50 { // different neighbours on each node
		if _, err := node1.Pod(fmt.Sprintf("n1-%d", i), "alice", fmt.Sprintf("ns%d", i%7)); err != nil {
			t.Fatal(err)
		}
		if _, err := node2.Pod(fmt.Sprintf("n2-%d", i), "bob", "shop"); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct{ id, tenant, ns string }{
		{"web", "alice", "shop"},
		{"db", "alice", "ns3"},
		{"cache", "bob", "shop"},
	} {
		a, err := node1.Pod(tt.id, tt.tenant, tt.ns)
		if err != nil {
			t.Fatal(err)
		}
		node1.Release(tt.id)
		b, err := node2.Pod(tt.id, tt.tenant, tt.ns)
		if err != nil {
			t.Fatal(err)
		}
		if a.IPv6 != b.IPv6 {
			t.Errorf("%s: %s on node 1, %s on node 2", tt.id, a.IPv6, b.IPv6)
		}
	}
}

// TestChooseSubnets: the choice starts at the namespace's hash and moves
// past what is taken; with everything taken it says so.
func TestChooseSubnets(t *testing.T) {
	id6, id4, err := ChooseSubnets("alice", "shop", func(uint16) bool { return false }, func(uint16) bool { return false })
	if err != nil || id6 != id4 {
		t.Fatalf("nothing taken: %x %x %v", id6, id4, err)
	}
	start := id4
	m6, m4, err := ChooseSubnets("alice", "shop", func(i uint16) bool { return i == start }, func(i uint16) bool { return i == start || i == start+1 })
	if err != nil || m6 != start+1 || m4 != start+2 {
		t.Fatalf("past taken: %x %x %v", m6, m4, err)
	}
	if _, _, err := ChooseSubnets("alice", "shop", func(uint16) bool { return false }, func(uint16) bool { return true }); !errors.Is(err, ErrNoSubnet) {
		t.Fatalf("all taken: %v", err)
	}
	if Subnet4(SubnetIndex4(Subnet4(0x1234))) != netip.MustParsePrefix("10.18.52.0/24") {
		t.Fatalf("Subnet4(0x1234) = %s", Subnet4(0x1234))
	}
	tp := TenantPrefix("c", "alice")
	if s := Subnet6(tp, 0xbeef); SubnetID(s) != 0xbeef || !tp.Contains(s.Addr()) || s.Bits() != 64 {
		t.Fatalf("Subnet6: %s", s)
	}
}

// TestFreeIPv4: the lowest untaken of .2 to .254.
func TestFreeIPv4(t *testing.T) {
	sub := netip.MustParsePrefix("10.1.2.0/24")
	taken := map[netip.Addr]bool{netip.MustParseAddr("10.1.2.2"): true}
	if a, err := FreeIPv4(sub, func(a netip.Addr) bool { return taken[a] }); err != nil || a != netip.MustParseAddr("10.1.2.3") {
		t.Fatalf("%s %v", a, err)
	}
	for a := netip.MustParseAddr("10.1.2.0"); sub.Contains(a); a = a.Next() {
		if a != netip.MustParseAddr("10.1.2.254") {
			taken[a] = true
		}
	}
	if a, err := FreeIPv4(sub, func(a netip.Addr) bool { return taken[a] }); err != nil || a != netip.MustParseAddr("10.1.2.254") {
		t.Fatalf("last: %s %v", a, err)
	}
	taken[netip.MustParseAddr("10.1.2.254")] = true
	if _, err := FreeIPv4(sub, func(a netip.Addr) bool { return taken[a] }); !errors.Is(err, ErrFull) {
		t.Fatalf("full: %v", err)
	}
}

// TestAssign: recorded addresses are taken as they are (also after a
// restart), replace the namespace's subnets this node chose, leave the
// addresses of pods it chose for, and are refused when held here.
func TestAssign(t *testing.T) {
	al := New("c", State{})
	old, err := al.Pod("old", "alice", "shop") // addressed by this node
	if err != nil {
		t.Fatal(err)
	}
	n := Namespace{Tenant: "alice", Name: "shop", Subnet6: Subnet6(TenantPrefix("c", "alice"), 7), Subnet4: netip.MustParsePrefix("10.9.9.0/24")}
	p := Pod{ID: "new", Tenant: "alice", Namespace: "shop", IPv6: PodIPv6(n.Subnet6, "new", nil), IPv4: netip.MustParseAddr("10.9.9.2")}
	if err := al.Assign(p, n); err != nil {
		t.Fatal(err)
	}
	if err := al.Assign(p, n); err != nil {
		t.Fatalf("again: %v", err)
	}
	if got, _ := al.Lookup("old"); got != old {
		t.Fatalf("old pod now %+v", got)
	}
	if al.Peek("alice", "shop") != n {
		t.Fatalf("namespace: %+v", al.Peek("alice", "shop"))
	}
	// A pod this node addresses now lands in the recorded /24.
	if q, _ := al.Pod("later", "alice", "shop"); q.IPv4 != netip.MustParseAddr("10.9.9.3") {
		t.Fatalf("later: %s", q.IPv4)
	}
	re := New("c", al.State())
	if got, ok := re.Lookup("new"); !ok || got != p {
		t.Fatalf("after a restart: %+v", got)
	}
	if err := re.Assign(Pod{ID: "dup", Tenant: "alice", Namespace: "shop", IPv6: PodIPv6(n.Subnet6, "dup", nil), IPv4: old.IPv4}, n); err == nil {
		t.Fatal("an address held here was assigned again")
	}
	moved := p
	moved.IPv4 = netip.MustParseAddr("10.9.9.9")
	if err := re.Assign(moved, n); err == nil {
		t.Fatal("a pod took other addresses")
	}
}
