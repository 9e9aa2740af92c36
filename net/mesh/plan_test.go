package mesh

import (
	"net/netip"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"testing"

	"github.com/macro-cloud/macro/net/ipam"
	"github.com/macro-cloud/macro/types"
)

const cluster = "c1"

// addr is the address with interface ID id in the tenant's VPC.
func addr(tenant string, id byte) string {
	a := ipam.TenantPrefix(cluster, tenant).Addr().As16()
	a[15] = id
	return netip.AddrFrom16(a).String()
}

func TestCompute(t *testing.T) {
	k2, _ := NewPrivateKey()
	k3, _ := NewPrivateKey()
	n1 := types.MeshNode{Name: "n1", Key: mustKey(t).Public().String(), Endpoint: "10.0.0.1:51820"}
	n2 := types.MeshNode{Name: "n2", Key: k2.Public().String(), Endpoint: "10.0.0.2:51820"}
	n3 := types.MeshNode{Name: "n3", Key: k3.Public().String(), Endpoint: "[fd00::3]:4000"}
	p := func(id, tenant, node string, ip string) types.MeshPod {
		return types.MeshPod{ID: id, Tenant: tenant, Namespace: "default", Node: node, Names: []string{id}, IPv6: ip}
	}
	host := func(s string) netip.Prefix { return netip.PrefixFrom(netip.MustParseAddr(s), 128) }
	peer := func(n types.MeshNode, k Key, allowed ...string) Peer {
		pr := Peer{Node: n.Name, Key: k.Public(), Endpoint: netip.MustParseAddrPort(n.Endpoint)}
		for _, a := range allowed {
			pr.Allowed = append(pr.Allowed, host(a))
		}
		// Every peer may send from its own mesh address, the carrier's.
		pr.Allowed = append(pr.Allowed, netip.PrefixFrom(NodeAddr(n.Name), 128))
		slices.SortFunc(pr.Allowed, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
		return pr
	}
	route := func(tenant, a, node string) Route {
		return Route{Tenant: tenant, Addr: netip.MustParseAddr(a), Node: node}
	}
	name := func(id, tenant, a string) Name {
		return Name{ID: id, Tenant: tenant, Namespace: "default", Names: []string{id}, IPv6: netip.MustParseAddr(a)}
	}
	tests := []struct {
		name string
		view types.MeshView
		want Plan
	}{
		{"empty", types.MeshView{}, Plan{}},
		{"peers without pods", types.MeshView{Nodes: []types.MeshNode{n1, n2, n3}},
			Plan{Peers: []Peer{peer(n2, k2), peer(n3, k3)}}},
		{"a tenant across nodes", types.MeshView{
			Nodes: []types.MeshNode{n1, n2, n3},
			Pods: []types.MeshPod{
				p("a1", "A", "n1", addr("A", 1)),
				p("a2", "A", "n2", addr("A", 2)),
				p("a3", "A", "n3", addr("A", 3)),
				p("a4", "A", "n2", addr("A", 4)),
			}},
			Plan{
				Peers:  []Peer{peer(n2, k2, addr("A", 2), addr("A", 4)), peer(n3, k3, addr("A", 3))},
				Routes: []Route{route("A", addr("A", 2), "n2"), route("A", addr("A", 3), "n3"), route("A", addr("A", 4), "n2")},
				Names:  []Name{name("a2", "A", addr("A", 2)), name("a3", "A", addr("A", 3)), name("a4", "A", addr("A", 4))},
			}},
		{"tenants without local pods are not routed", types.MeshView{
			Nodes: []types.MeshNode{n1, n2},
			Pods: []types.MeshPod{
				p("a1", "A", "n1", addr("A", 1)),
				p("b2", "B", "n2", addr("B", 2)),
			}},
			Plan{Peers: []Peer{peer(n2, k2)}}},
		{"an address outside the tenant's prefix is refused", types.MeshView{
			Nodes: []types.MeshNode{n1, n2},
			Pods: []types.MeshPod{
				p("a1", "A", "n1", addr("A", 1)),
				p("a2", "A", "n2", addr("B", 2)), // claims tenant B's space
				p("a3", "A", "n2", "10.0.0.3"),
				p("a4", "A", "n2", ""),
			}},
			Plan{Peers: []Peer{peer(n2, k2)}}},
		{"an address claimed twice is routed to neither", types.MeshView{
			Nodes: []types.MeshNode{n1, n2, n3},
			Pods: []types.MeshPod{
				p("a1", "A", "n1", addr("A", 1)),
				p("a2", "A", "n2", addr("A", 2)),
				p("a3", "A", "n3", addr("A", 2)),
				p("a5", "A", "n3", addr("A", 5)),
			}},
			Plan{
				Peers:  []Peer{peer(n2, k2), peer(n3, k3, addr("A", 5))},
				Routes: []Route{route("A", addr("A", 5), "n3")},
				Names:  []Name{name("a5", "A", addr("A", 5))},
			}},
		{"a local pod's address is not routed through the mesh", types.MeshView{
			Nodes: []types.MeshNode{n1, n2},
			Pods: []types.MeshPod{
				p("a1", "A", "n1", addr("A", 1)),
				p("a6", "A", "n1", addr("A", 6)),
			}},
			Plan{Peers: []Peer{peer(n2, k2)}}},
		{"nodes without a key or endpoint are no peers", types.MeshView{
			Nodes: []types.MeshNode{n1,
				{Name: "n2", Key: "bad", Endpoint: n2.Endpoint},
				{Name: "n3", Key: n3.Key, Endpoint: "0.0.0.0:51820"},
				{Name: "n4", Key: n3.Key, Endpoint: "10.0.0.4:0"},
				{Name: "n5", Key: n3.Key},
			},
			Pods: []types.MeshPod{
				p("a1", "A", "n1", addr("A", 1)),
				p("a2", "A", "n2", addr("A", 2)),
				p("a3", "A", "n3", addr("A", 3)),
			}},
			Plan{}},
		{"pods of a node that is gone are not routed", types.MeshView{
			Nodes: []types.MeshNode{n1},
			Pods: []types.MeshPod{
				p("a1", "A", "n1", addr("A", 1)),
				p("a2", "A", "n2", addr("A", 2)),
			}},
			Plan{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Compute(cluster, "n1", tt.view)
			tt.want.Addr = NodeAddr("n1")
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Compute:\n got  %+v\n want %+v", got, tt.want)
			}
		})
	}
}

func mustKey(t *testing.T) Key {
	k, err := NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestKeyStore(t *testing.T) {
	s := KeyStore{Dir: filepath.Join(t.TempDir(), "mesh")}
	k1, gen, err := s.Load()
	if err != nil || gen != 0 {
		t.Fatalf("Load: %v %d", err, gen)
	}
	k1b, _, err := s.Load()
	if err != nil || k1b != k1 {
		t.Fatalf("Load again: %v, same key %v", err, k1b == k1)
	}
	k2, err := s.Rotate(3)
	if err != nil || k2 == k1 {
		t.Fatalf("Rotate: %v, new key %v", err, k2 != k1)
	}
	k2b, gen, err := s.Load()
	if err != nil || k2b != k2 || gen != 3 {
		t.Fatalf("Load after rotate: %v %v %d", err, k2b == k2, gen)
	}
	if k2.Public() == k1.Public() || k2.Public() == k2 {
		t.Fatal("public keys do not differ")
	}
	if pk, ok := ParseKey(k2.Public().String()); !ok || pk != k2.Public() {
		t.Fatal("ParseKey does not read String")
	}
}

// TestCompute4: remote pods' IPv4 addresses, default and overlay, are
// carried when unique in their tenant and plainly unicast; a tenant is
// carried only where its VNI is no other local tenant's.
func TestCompute4(t *testing.T) {
	k2, _ := NewPrivateKey()
	n1 := types.MeshNode{Name: "n1", Key: mustKey(t).Public().String(), Endpoint: "10.0.0.1:51820"}
	n2 := types.MeshNode{Name: "n2", Key: k2.Public().String(), Endpoint: "10.0.0.2:51820"}
	p := func(id, tenant, node string, v6 byte, v4 string, overlays map[string]string) types.MeshPod {
		return types.MeshPod{ID: id, Tenant: tenant, Namespace: "default", Node: node, Names: []string{id},
			IPv6: addr(tenant, v6), IPv4: v4, Overlays: overlays}
	}
	view := types.MeshView{Nodes: []types.MeshNode{n1, n2}, Pods: []types.MeshPod{
		p("a1", "A", "n1", 1, "10.1.0.2", nil),
		p("a2", "A", "n2", 2, "10.1.0.3", map[string]string{"back": "192.168.0.10", "dup": "10.1.0.2"}),
		p("a3", "A", "n2", 3, "127.0.0.1", map[string]string{"x": "100.64.0.5", "y": "::ffff:10.9.0.1", "z": "224.0.0.1"}),
		p("a4", "A", "n2", 4, "10.1.0.9", nil),
		p("a5", "A", "n2", 5, "10.1.0.9", nil), // claimed twice: neither
		p("b1", "B", "n1", 1, "10.1.0.2", nil),
		p("b2", "B", "n2", 2, "10.1.0.3", map[string]string{"back": "192.168.0.10"}), // A's addresses: B's own too
	}}
	got := Compute(cluster, "n1", view)
	a := netip.MustParseAddr
	r4 := func(tenant, addr string) Route4 {
		return Route4{Tenant: tenant, Addr: a(addr), Node: "n2", NodeAddr: NodeAddr("n2"), MAC: NodeMAC("n2", tenant).String()}
	}
	want := []Route4{r4("A", "10.1.0.3"), r4("A", "192.168.0.10"), r4("B", "10.1.0.3"), r4("B", "192.168.0.10")}
	if !reflect.DeepEqual(got.Routes4, want) {
		t.Errorf("Routes4:\n got  %+v\n want %+v", got.Routes4, want)
	}
	wantC := []Carrier{{Tenant: "A", VNI: VNI(cluster, "A"), MAC: NodeMAC("n1", "A").String()}, {Tenant: "B", VNI: VNI(cluster, "B"), MAC: NodeMAC("n1", "B").String()}}
	if !reflect.DeepEqual(got.Carriers, wantC) {
		t.Errorf("Carriers:\n got  %+v\n want %+v", got.Carriers, wantC)
	}
	for _, n := range got.Names {
		switch n.ID {
		case "a2":
			if n.IPv4 != a("10.1.0.3") || !reflect.DeepEqual(n.Overlays, map[string]netip.Addr{"back": a("192.168.0.10")}) {
				t.Errorf("a2's name: %+v", n)
			}
		case "a3", "a4", "a5":
			if n.IPv4.IsValid() || n.Overlays != nil {
				t.Errorf("%s's name has IPv4: %+v", n.ID, n)
			}
		}
	}
	if VNI(cluster, "A") == VNI(cluster, "B") || NodeAddr("n1") == NodeAddr("n2") || NodeMAC("n1", "A").String() == NodeMAC("n2", "A").String() {
		t.Error("identifiers do not differ")
	}
	if m := NodeMAC("n1", "A"); m[0]&1 != 0 || m[0]&2 == 0 {
		t.Errorf("NodeMAC %s is not local unicast", m)
	}
	if !NodePrefix.Contains(NodeAddr("n1")) {
		t.Error("NodeAddr outside NodePrefix")
	}

	// Two local tenants with one VNI: neither is carried here.
	var t1, t2 string
	seen := map[uint32]string{}
	for i := 0; t1 == ""; i++ {
		name := "t" + strconv.Itoa(i)
		if o, ok := seen[VNI(cluster, name)]; ok {
			t1, t2 = o, name
		}
		seen[VNI(cluster, name)] = name
	}
	view = types.MeshView{Nodes: []types.MeshNode{n1, n2}, Pods: []types.MeshPod{
		p("a1", t1, "n1", 1, "10.1.0.2", nil), p("a2", t1, "n2", 2, "10.1.0.3", nil),
		p("b1", t2, "n1", 1, "10.1.0.2", nil), p("b2", t2, "n2", 2, "10.1.0.3", nil),
	}}
	got = Compute(cluster, "n1", view)
	if got.Routes4 != nil || got.Carriers != nil || len(got.Routes) != 2 || !slices.Equal(got.Clashes, []string{min(t1, t2), max(t1, t2)}) {
		t.Errorf("tenants %s and %s share VNI %d: %+v", t1, t2, VNI(cluster, t1), got)
	}
}

// TestComputeNextKey: a rotating node's announced key is its peer's Next,
// unless it is no key or its current one.
func TestComputeNextKey(t *testing.T) {
	k2, next := mustKey(t), mustKey(t)
	for _, tt := range []struct {
		next string
		want Key
	}{
		{next.Public().String(), next.Public()},
		{"", Key{}},
		{"bad", Key{}},
		{k2.Public().String(), Key{}},
	} {
		v := types.MeshView{Nodes: []types.MeshNode{{Name: "n2", Key: k2.Public().String(), Endpoint: "10.0.0.2:51820", NextKey: tt.next}}}
		got := Compute(cluster, "n1", v)
		if len(got.Peers) != 1 || got.Peers[0].Key != k2.Public() || got.Peers[0].Next != tt.want {
			t.Errorf("NextKey %q: %+v", tt.next, got.Peers)
		}
	}
}
