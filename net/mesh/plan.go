// Package mesh decides a node's share of the VPC mesh: the WireGuard peers
// it keeps (the other nodes) and, in each tenant's routing table, the
// routes to the tenant's pods on those nodes: IPv6 straight through the
// WireGuard device, IPv4 (which overlaps between tenants) through a
// VXLAN carrier per tenant on top of it (see Carrier). Plan is pure: the control
// plane's view of nodes and pods in, the desired peers, routes and names
// out, so that every node computes its part from the same store data and
// the computation is tested without a kernel. Keys (keys.go) are kept in
// the node's data dir; the router applies the plan (net/router/mesh.go).
package mesh

import (
	"cmp"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"net"
	"net/netip"
	"slices"

	"github.com/macro-cloud/macro/net/ipam"
	"github.com/macro-cloud/macro/types"
)

// Key is a WireGuard (Curve25519) key.
type Key [32]byte

// ParseKey reads a base64 key as `wg` prints it.
func ParseKey(s string) (Key, bool) {
	var k Key
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != len(k) {
		return k, false
	}
	copy(k[:], b)
	return k, true
}

func (k Key) String() string { return base64.StdEncoding.EncodeToString(k[:]) }

// Peer is another node as this node's WireGuard device sees it: the
// addresses it may send from and is sent to (its pods' /128s and its own
// mesh address, NodeAddr) are its AllowedIPs, WireGuard's cryptokey
// routing.
type Peer struct {
	Node     string
	Key      Key
	Endpoint netip.AddrPort
	Allowed  []netip.Prefix // sorted
	// Next is the key the node is about to switch to (zero: none): the
	// device stands by for it, and moves Allowed over when it shakes
	// hands.
	Next Key
}

// Route is a remote pod's address in its tenant's table, through the mesh.
type Route struct {
	Tenant string
	Addr   netip.Addr
	Node   string
}

// Name is a remote pod for the node's DNS table.
type Name struct {
	ID        string
	Tenant    string
	Namespace string
	Names     []string
	IPv6      netip.Addr
	IPv4      netip.Addr            // invalid when not carried
	Overlays  map[string]netip.Addr // by network ID; nil when none
}

// The IPv4 carrier. IPv4 addresses overlap between tenants, so a remote
// pod's IPv4 cannot be a WireGuard allowed address: each tenant with pods
// on two nodes gets a VXLAN device on both, with a cluster-wide network
// identifier (VNI), whose underlay is the nodes' mesh addresses
// (NodeAddr) inside the WireGuard device. WireGuard authenticates the
// outer source (the sending node); the VNI says the tenant; the receiver
// accepts an inner IPv4 source only when it is a pod of that tenant on
// that node (Carried). Each node's device of a tenant has the MAC address
// NodeMAC(node, tenant), so that a sender needs no address resolution:
// static neighbour and forwarding entries say where each remote pod is.

// NodePrefix holds the nodes' mesh addresses.
var NodePrefix = netip.MustParsePrefix("fd6d:6163:726f:2::/64")

// NodeAddr is node's address inside the mesh (the carrier's underlay): a
// hash of its name in NodePrefix, the same on every node.
func NodeAddr(node string) netip.Addr {
	h := sha256.Sum256([]byte("macro mesh node\x00" + node))
	a := NodePrefix.Addr().As16()
	copy(a[8:], h[:8])
	return netip.AddrFrom16(a)
}

// VNI is the tenant's VXLAN network identifier in cluster: 24 bits of a
// hash, never 0. Two tenants may share one (Compute carries neither on a
// node that has both).
func VNI(cluster, tenant string) uint32 {
	h := sha256.Sum256([]byte("macro vni\x00" + cluster + "\x00" + tenant))
	if v := binary.BigEndian.Uint32(h[:4]) >> 8; v != 0 {
		return v
	}
	return 1
}

// NodeMAC is the MAC address of node's carrier device for tenant: local,
// unicast.
func NodeMAC(node, tenant string) net.HardwareAddr {
	h := sha256.Sum256([]byte("macro mesh mac\x00" + node + "\x00" + tenant))
	mac := net.HardwareAddr(h[:6])
	mac[0] = mac[0]&^1 | 2
	return mac
}

// Carrier is a tenant's IPv4 carrier on this node: its VNI and the MAC
// address of this node's device.
type Carrier struct {
	Tenant string
	VNI    uint32
	MAC    string
}

// Route4 is a remote pod's IPv4 address (default or overlay) in its
// tenant's table, through the tenant's carrier to the pod's node.
type Route4 struct {
	Tenant   string
	Addr     netip.Addr
	Node     string
	NodeAddr netip.Addr
	MAC      string // the remote node's device for the tenant
}

// Plan is one node's desired share of the mesh.
type Plan struct {
	// Addr is this node's mesh address (NodeAddr).
	Addr     netip.Addr
	Peers    []Peer    // by node name
	Routes   []Route   // by tenant, then address
	Carriers []Carrier // by tenant
	Routes4  []Route4  // by tenant, then address
	Names    []Name    // by ID
	// Clashes are the local tenants whose VNI another local tenant has:
	// their IPv4 does not cross nodes here (sorted).
	Clashes []string
}

// Carried reports whether an IPv4 address may cross the mesh: a unicast
// address outside loopback, link-local and the routers' transfer network
// (100.64.0.0/10).
func Carried(a netip.Addr) bool {
	return a.Is4() && !a.IsUnspecified() && !a.IsLoopback() && !a.IsMulticast() && !a.IsLinkLocalUnicast() &&
		a != netip.AddrFrom4([4]byte{255, 255, 255, 255}) && !transferNet.Contains(a)
}

var transferNet = netip.MustParsePrefix("100.64.0.0/10")

// addrs4 are a pod's IPv4 addresses as its node reported them: default
// first, then overlays by network ID; unparsable ones are left out.
func addrs4(p types.MeshPod) (def netip.Addr, overlays map[string]netip.Addr) {
	if a, err := netip.ParseAddr(p.IPv4); err == nil {
		def = a
	}
	for nw, s := range p.Overlays {
		if a, err := netip.ParseAddr(s); err == nil {
			if overlays == nil {
				overlays = map[string]netip.Addr{}
			}
			overlays[nw] = a
		}
	}
	return def, overlays
}

// Compute is node self's plan from the control plane's view. A remote pod
// is routed when its tenant has pods on self (other tenants' tables do
// not exist here), its node is a peer (a valid key and endpoint), and its
// IPv6 address lies in its tenant's VPC prefix of cluster and is claimed
// by no other pod: a node cannot attract another tenant's addresses, or
// another node's, by reporting them.
//
// A remote pod's IPv4 addresses (default and overlays) are routed through
// its tenant's carrier under the same conditions, when they are Carried
// and claimed by no other pod of the tenant, and when the tenant's VNI is
// no other local tenant's.
func Compute(cluster, self string, v types.MeshView) Plan {
	peers := map[string]*Peer{}
	for _, n := range v.Nodes {
		if n.Name == self || n.Name == "" {
			continue
		}
		k, ok := ParseKey(n.Key)
		ep, err := netip.ParseAddrPort(n.Endpoint)
		if !ok || err != nil || !ep.Addr().IsValid() || ep.Port() == 0 || ep.Addr().IsUnspecified() {
			continue
		}
		if _, dup := peers[n.Name]; dup {
			continue
		}
		peers[n.Name] = &Peer{Node: n.Name, Key: k, Endpoint: ep}
		if next, ok := ParseKey(n.NextKey); ok && next != k {
			peers[n.Name].Next = next
		}
	}
	local := map[string]bool{}
	claims := map[netip.Addr]int{}
	type claim4 struct {
		tenant string
		addr   netip.Addr
	}
	claims4 := map[claim4]int{}
	for _, p := range v.Pods {
		if p.Node == self {
			local[p.Tenant] = true
		}
		if a, err := netip.ParseAddr(p.IPv6); err == nil {
			claims[a]++
		}
		def, ovl := addrs4(p)
		seen := map[netip.Addr]bool{}
		if def.IsValid() {
			seen[def] = true
		}
		for _, a := range ovl {
			seen[a] = true
		}
		for a := range seen {
			claims4[claim4{p.Tenant, a}]++
		}
	}
	// Tenants whose VNI another local tenant has: not carried here.
	vnis := map[uint32][]string{}
	for t := range local {
		vnis[VNI(cluster, t)] = append(vnis[VNI(cluster, t)], t)
	}
	carried := map[string]bool{}
	var clashes []string
	for _, ts := range vnis {
		if len(ts) == 1 {
			carried[ts[0]] = true
		} else {
			clashes = append(clashes, ts...)
		}
	}
	slices.Sort(clashes)
	plan := Plan{Addr: NodeAddr(self), Clashes: clashes}
	carriers := map[string]bool{}
	prefixes := map[string]netip.Prefix{}
	for _, p := range v.Pods {
		if p.Node == self || !local[p.Tenant] {
			continue
		}
		peer := peers[p.Node]
		a, err := netip.ParseAddr(p.IPv6)
		if peer == nil || err != nil || !a.Is6() || a.Is4In6() || a.Zone() != "" || claims[a] != 1 {
			continue
		}
		pfx, ok := prefixes[p.Tenant]
		if !ok {
			pfx = ipam.TenantPrefix(cluster, p.Tenant)
			prefixes[p.Tenant] = pfx
		}
		if !pfx.Contains(a) {
			continue
		}
		peer.Allowed = append(peer.Allowed, netip.PrefixFrom(a, 128))
		plan.Routes = append(plan.Routes, Route{Tenant: p.Tenant, Addr: a, Node: p.Node})
		name := Name{ID: p.ID, Tenant: p.Tenant, Namespace: p.Namespace, Names: slices.Clone(p.Names), IPv6: a}
		if carried[p.Tenant] {
			ok4 := func(a netip.Addr) bool { return Carried(a) && claims4[claim4{p.Tenant, a}] == 1 }
			def, ovl := addrs4(p)
			var routed []netip.Addr
			if ok4(def) {
				name.IPv4 = def
				routed = append(routed, def)
			}
			for nw, a := range ovl {
				if ok4(a) && a != def {
					if name.Overlays == nil {
						name.Overlays = map[string]netip.Addr{}
					}
					name.Overlays[nw] = a
					if !slices.Contains(routed, a) {
						routed = append(routed, a)
					}
				}
			}
			mac := NodeMAC(p.Node, p.Tenant).String()
			for _, a := range routed {
				plan.Routes4 = append(plan.Routes4, Route4{Tenant: p.Tenant, Addr: a, Node: p.Node, NodeAddr: NodeAddr(p.Node), MAC: mac})
			}
			if len(routed) > 0 && !carriers[p.Tenant] {
				carriers[p.Tenant] = true
				plan.Carriers = append(plan.Carriers, Carrier{Tenant: p.Tenant, VNI: VNI(cluster, p.Tenant), MAC: NodeMAC(self, p.Tenant).String()})
			}
		}
		plan.Names = append(plan.Names, name)
	}
	for _, p := range peers {
		p.Allowed = append(p.Allowed, netip.PrefixFrom(NodeAddr(p.Node), 128))
		slices.SortFunc(p.Allowed, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
		plan.Peers = append(plan.Peers, *p)
	}
	slices.SortFunc(plan.Peers, func(a, b Peer) int { return cmp.Compare(a.Node, b.Node) })
	slices.SortFunc(plan.Routes, func(a, b Route) int {
		return cmp.Or(cmp.Compare(a.Tenant, b.Tenant), a.Addr.Compare(b.Addr))
	})
	slices.SortFunc(plan.Carriers, func(a, b Carrier) int { return cmp.Compare(a.Tenant, b.Tenant) })
	slices.SortFunc(plan.Routes4, func(a, b Route4) int {
		return cmp.Or(cmp.Compare(a.Tenant, b.Tenant), a.Addr.Compare(b.Addr))
	})
	slices.SortFunc(plan.Names, func(a, b Name) int { return cmp.Compare(a.ID, b.ID) })
	return plan
}
