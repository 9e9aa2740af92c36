// Package mesh decides a node's share of the VPC mesh: the WireGuard peers
// it keeps (the other nodes) and, in each tenant's routing table, the
// routes to the tenant's pods on those nodes. Plan is pure: the control
// plane's view of nodes and pods in, the desired peers, routes and names
// out, so that every node computes its part from the same store data and
// the computation is tested without a kernel. Keys (keys.go) are kept in
// the node's data dir; the router applies the plan (net/router/mesh.go).
package mesh

import (
	"cmp"
	"encoding/base64"
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
// addresses it may send from and is sent to (its pods' /128s) are its
// AllowedIPs, WireGuard's cryptokey routing.
type Peer struct {
	Node     string
	Key      Key
	Endpoint netip.AddrPort
	Allowed  []netip.Prefix // sorted
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
}

// Plan is one node's desired share of the mesh.
type Plan struct {
	Peers  []Peer  // by node name
	Routes []Route // by tenant, then address
	Names  []Name  // by ID
}

// Compute is node self's plan from the control plane's view. A remote pod
// is routed when its tenant has pods on self (other tenants' tables do
// not exist here), its node is a peer (a valid key and endpoint), and its
// IPv6 address lies in its tenant's VPC prefix of cluster and is claimed
// by no other pod: a node cannot attract another tenant's addresses, or
// another node's, by reporting them. IPv6 only: pods' default IPv4 and
// overlay addresses are not carried across nodes yet.
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
	}
	local := map[string]bool{}
	claims := map[netip.Addr]int{}
	for _, p := range v.Pods {
		if p.Node == self {
			local[p.Tenant] = true
		}
		if a, err := netip.ParseAddr(p.IPv6); err == nil {
			claims[a]++
		}
	}
	var plan Plan
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
		plan.Names = append(plan.Names, Name{ID: p.ID, Tenant: p.Tenant, Namespace: p.Namespace, Names: slices.Clone(p.Names), IPv6: a})
	}
	for _, p := range peers {
		slices.SortFunc(p.Allowed, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
		plan.Peers = append(plan.Peers, *p)
	}
	slices.SortFunc(plan.Peers, func(a, b Peer) int { return cmp.Compare(a.Node, b.Node) })
	slices.SortFunc(plan.Routes, func(a, b Route) int {
		return cmp.Or(cmp.Compare(a.Tenant, b.Tenant), a.Addr.Compare(b.Addr))
	})
	slices.SortFunc(plan.Names, func(a, b Name) int { return cmp.Compare(a.ID, b.ID) })
	return plan
}
