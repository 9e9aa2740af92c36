// Package ipam decides the addresses of a tenant's VPC: every tenant an IPv6
// ULA /48, every namespace a /64 in it and an IPv4 /24 of its default
// overlay, every pod one address in each. It is pure: its functions take
// what is taken and return a choice; whoever holds the state persists it.
//
// The tenant /48 is derived from the cluster and tenant names alone, so
// every node computes the same one. A namespace's subnets and a pod's IPv4
// address are a cluster-wide choice: the store makes it (ChooseSubnets,
// FreeIPv4) inside the guarded transaction that writes the pod, records
// the namespace's subnets under /macro/vpc/ and the pod's on the pod
// (types.PodVPC), so that they are unique per tenant across the cluster
// and the same on every node, also after the pod moves to another one. A
// pod's IPv6 interface ID is a hash of its ID (PodIPv6).
//
// Allocator is a node's view: its router Assigns the recorded addresses
// of the pods it wires, and chooses on its own, as before the store
// recorded them, only for pods that have no record (created by an older
// server); it persists a State that its owner hands back after a
// restart, so the same pod keeps its addresses.
package ipam

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sort"
)

// ErrHeld is returned by Assign for an address another pod holds here.
var ErrHeld = errors.New("held by another pod on this node")

// ErrFull is returned when a namespace's IPv4 /24 has no free address.
var ErrFull = errors.New("no free IPv4 address in the namespace's overlay")

// V4Space is the tenant-private IPv4 space namespaces' default overlays are
// cut from. Tenants overlap each other in it; routing keeps them apart.
var V4Space = netip.MustParsePrefix("10.0.0.0/8")

// TenantPrefix is the tenant's VPC: fd00::/8 followed by 40 bits of
// sha256(cluster, tenant), an RFC 4193 global ID that every node computes
// alike. Two tenants of one cluster share a /48 with a probability of about
// n²/2⁴¹ for n tenants; addresses then still differ (pod interface IDs are
// hashes of pod IDs) and the router separates tenants by their own tables,
// not by prefix, so a collision costs only the prefix's meaning.
func TenantPrefix(cluster, tenant string) netip.Prefix {
	h := sha256.Sum256([]byte("macro vpc\x00" + cluster + "\x00" + tenant))
	var a [16]byte
	a[0] = 0xfd
	copy(a[1:6], h[:5])
	return netip.PrefixFrom(netip.AddrFrom16(a), 48)
}

// Gateway6 is the router's link-local address on every pod's link: pods'
// IPv6 default route.
var Gateway6 = netip.MustParseAddr("fe80::1")

// Gateway4 is the router's address in the IPv4 /24 that holds addr: .1.
func Gateway4(addr netip.Addr) netip.Addr {
	p, _ := addr.Prefix(24)
	return p.Addr().Next()
}

// Namespace is a namespace's share of its tenant's VPC.
type Namespace struct {
	Tenant  string       `json:"tenant"`
	Name    string       `json:"name"`
	Subnet6 netip.Prefix `json:"subnet6"` // a /64 of TenantPrefix
	Subnet4 netip.Prefix `json:"subnet4"` // a /24 of V4Space
}

// Gateway4 is the router's address in the namespace's IPv4 overlay: .1.
func (n Namespace) Gateway4() netip.Addr { return n.Subnet4.Addr().Next() }

// Pod is one pod's addresses.
type Pod struct {
	ID        string     `json:"id"`
	Tenant    string     `json:"tenant"`
	Namespace string     `json:"namespace"`
	IPv6      netip.Addr `json:"ipv6"`
	IPv4      netip.Addr `json:"ipv4"`
}

// State is everything an Allocator knows; its owner persists it.
type State struct {
	Namespaces []Namespace `json:"namespaces,omitempty"`
	Pods       []Pod       `json:"pods,omitempty"`
}

// Allocator hands out addresses. It is not safe for concurrent use.
type Allocator struct {
	cluster string
	ns      map[string]*Namespace // tenant "\x00" namespace
	pods    map[string]*Pod
	used6   map[netip.Addr]string            // address -> pod
	used4   map[string]map[netip.Addr]string // tenant -> address -> pod
}

// New returns an Allocator for cluster that starts from st.
func New(cluster string, st State) *Allocator {
	a := &Allocator{cluster: cluster, ns: map[string]*Namespace{}, pods: map[string]*Pod{},
		used6: map[netip.Addr]string{}, used4: map[string]map[netip.Addr]string{}}
	for _, n := range st.Namespaces {
		n := n
		a.ns[nsKey(n.Tenant, n.Name)] = &n
	}
	for _, p := range st.Pods {
		p := p
		a.pods[p.ID] = &p
		a.use(&p)
	}
	return a
}

func nsKey(tenant, ns string) string { return tenant + "\x00" + ns }

func (a *Allocator) use(p *Pod) {
	a.used6[p.IPv6] = p.ID
	if a.used4[p.Tenant] == nil {
		a.used4[p.Tenant] = map[netip.Addr]string{}
	}
	a.used4[p.Tenant][p.IPv4] = p.ID
}

// Namespace returns the namespace's subnets, allocating them on first use.
// The /64's subnet ID and the /24's index start at a hash of (tenant,
// namespace) and move on past the ones the tenant's other namespaces hold.
func (a *Allocator) Namespace(tenant, name string) Namespace {
	if n := a.ns[nsKey(tenant, name)]; n != nil {
		return *n
	}
	n := a.next(tenant, name)
	a.ns[nsKey(tenant, name)] = &n
	return n
}

// Peek returns the namespace's subnets as Namespace would, without
// allocating them: those it holds, or those its first pod would get.
func (a *Allocator) Peek(tenant, name string) Namespace {
	if n := a.ns[nsKey(tenant, name)]; n != nil {
		return *n
	}
	return a.next(tenant, name)
}

// next chooses the subnets of a namespace that has none.
func (a *Allocator) next(tenant, name string) Namespace {
	taken6, taken4 := map[uint16]bool{}, map[uint16]bool{}
	for _, n := range a.ns {
		if n.Tenant == tenant {
			taken6[SubnetID(n.Subnet6)] = true
			taken4[SubnetIndex4(n.Subnet4)] = true
		}
	}
	id6, id4, err := ChooseSubnets(tenant, name, func(i uint16) bool { return taken6[i] }, func(i uint16) bool { return taken4[i] })
	if err != nil {
		// 65536 namespaces of one tenant on one node: share the hash's.
		id6, id4 = nsHash(tenant, name), nsHash(tenant, name)
	}
	return Namespace{
		Tenant:  tenant,
		Name:    name,
		Subnet6: Subnet6(TenantPrefix(a.cluster, tenant), id6),
		Subnet4: Subnet4(id4),
	}
}

// ErrNoSubnet is returned when every /64 or /24 of a tenant is taken.
var ErrNoSubnet = errors.New("every subnet of the tenant's VPC is taken")

func nsHash(tenant, name string) uint16 {
	h := sha256.Sum256([]byte("macro ns\x00" + tenant + "\x00" + name))
	return binary.BigEndian.Uint16(h[:2])
}

// ChooseSubnets chooses a namespace's IPv6 subnet ID and IPv4 /24 index:
// each starts at a hash of (tenant, namespace) and moves on past those
// taken says the tenant's other namespaces hold.
func ChooseSubnets(tenant, name string, taken6, taken4 func(uint16) bool) (id6, id4 uint16, err error) {
	start := nsHash(tenant, name)
	pick := func(taken func(uint16) bool) (uint16, bool) {
		id := start
		for range 1 << 16 {
			if !taken(id) {
				return id, true
			}
			id++
		}
		return 0, false
	}
	id6, ok6 := pick(taken6)
	id4, ok4 := pick(taken4)
	if !ok6 || !ok4 {
		return 0, 0, fmt.Errorf("%s/%s: %w", tenant, name, ErrNoSubnet)
	}
	return id6, id4, nil
}

// Subnet6 is the /64 of subnet ID id in the tenant's /48.
func Subnet6(tenant netip.Prefix, id uint16) netip.Prefix {
	b := tenant.Masked().Addr().As16()
	binary.BigEndian.PutUint16(b[6:8], id)
	return netip.PrefixFrom(netip.AddrFrom16(b), 64)
}

// Subnet4 is the /24 of V4Space of index i: 10.<i>.0/24.
func Subnet4(i uint16) netip.Prefix {
	v4 := V4Space.Addr().As4()
	binary.BigEndian.PutUint16(v4[1:3], i)
	return netip.PrefixFrom(netip.AddrFrom4(v4), 24)
}

// SubnetID is the subnet ID of a /64 of a tenant's /48.
func SubnetID(p netip.Prefix) uint16 {
	b := p.Addr().As16()
	return binary.BigEndian.Uint16(b[6:8])
}

// SubnetIndex4 is the index of a /24 of V4Space (see Subnet4).
func SubnetIndex4(p netip.Prefix) uint16 {
	b := p.Addr().As4()
	return binary.BigEndian.Uint16(b[1:3])
}

// PodIPv6 is the pod's address in the /64 subnet: the interface ID is a
// hash of the pod ID, past ::ffff (which the router keeps for itself),
// moved on past those taken holds (nil: none).
func PodIPv6(subnet netip.Prefix, id string, taken func(netip.Addr) bool) netip.Addr {
	h := sha256.Sum256([]byte("macro pod\x00" + id))
	iid := binary.BigEndian.Uint64(h[:8])
	b := subnet.Masked().Addr().As16()
	for {
		if iid > 0xffff {
			binary.BigEndian.PutUint64(b[8:], iid)
			v6 := netip.AddrFrom16(b)
			if taken == nil || !taken(v6) {
				return v6
			}
		}
		iid++
	}
}

// FreeIPv4 is the lowest address of the /24 subnet from .2 to .254 that
// taken does not hold (.1 is the gateway); ErrFull when there is none.
func FreeIPv4(subnet netip.Prefix, taken func(netip.Addr) bool) (netip.Addr, error) {
	gw := subnet.Masked().Addr().Next()
	for ip := gw.Next(); subnet.Contains(ip) && ip.As4()[3] != 255; ip = ip.Next() {
		if !taken(ip) {
			return ip, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("%s: %w", subnet, ErrFull)
}

// Pod returns the pod's addresses, allocating them on first use (a pod
// the cluster recorded none for): PodIPv6, and the lowest free IPv4
// address from .2 (FreeIPv4).
func (a *Allocator) Pod(id, tenant, namespace string) (Pod, error) {
	if p := a.pods[id]; p != nil {
		if p.Tenant != tenant || p.Namespace != namespace {
			return Pod{}, fmt.Errorf("pod %s already has addresses in %s/%s", id, p.Tenant, p.Namespace)
		}
		return *p, nil
	}
	n := a.Namespace(tenant, namespace)
	v6 := PodIPv6(n.Subnet6, id, func(ip netip.Addr) bool { _, taken := a.used6[ip]; return taken })
	v4, err := FreeIPv4(n.Subnet4, func(ip netip.Addr) bool { _, taken := a.used4[tenant][ip]; return taken })
	if err != nil {
		return Pod{}, fmt.Errorf("%s/%s: %w", tenant, namespace, err)
	}
	p := &Pod{ID: id, Tenant: tenant, Namespace: namespace, IPv6: v6, IPv4: v4}
	a.pods[id] = p
	a.use(p)
	return *p, nil
}

// Assign gives the pod the addresses the cluster recorded for it, and its
// namespace n's subnets (which replace any this node chose on its own:
// the pods it gave addresses before keep them). It is idempotent; it
// fails when another pod here holds one of the addresses, or when the pod
// holds others.
func (a *Allocator) Assign(p Pod, n Namespace) error {
	if q := a.pods[p.ID]; q != nil {
		if *q != p {
			return fmt.Errorf("pod %s has %s and %s here, the cluster recorded %s and %s", p.ID, q.IPv4, q.IPv6, p.IPv4, p.IPv6)
		}
		a.ns[nsKey(n.Tenant, n.Name)] = &n
		return nil
	}
	if id, taken := a.used6[p.IPv6]; taken {
		return fmt.Errorf("address %s of pod %s: %w (%s)", p.IPv6, p.ID, ErrHeld, id)
	}
	if id, taken := a.used4[p.Tenant][p.IPv4]; taken {
		return fmt.Errorf("address %s of pod %s: %w (%s)", p.IPv4, p.ID, ErrHeld, id)
	}
	a.ns[nsKey(n.Tenant, n.Name)] = &n
	a.pods[p.ID] = &p
	a.use(&p)
	return nil
}

// Lookup returns the pod's addresses if it has some.
func (a *Allocator) Lookup(id string) (Pod, bool) {
	p := a.pods[id]
	if p == nil {
		return Pod{}, false
	}
	return *p, true
}

// Release frees the pod's addresses, and its namespace's subnets when it
// was the namespace's last pod here.
func (a *Allocator) Release(id string) {
	p := a.pods[id]
	if p == nil {
		return
	}
	delete(a.pods, id)
	delete(a.used6, p.IPv6)
	delete(a.used4[p.Tenant], p.IPv4)
	if len(a.used4[p.Tenant]) == 0 {
		delete(a.used4, p.Tenant)
	}
	for _, q := range a.pods {
		if q.Tenant == p.Tenant && q.Namespace == p.Namespace {
			return
		}
	}
	delete(a.ns, nsKey(p.Tenant, p.Namespace))
}

// State returns what the Allocator holds, in a stable order.
func (a *Allocator) State() State {
	var st State
	for _, n := range a.ns {
		st.Namespaces = append(st.Namespaces, *n)
	}
	for _, p := range a.pods {
		st.Pods = append(st.Pods, *p)
	}
	sort.Slice(st.Namespaces, func(i, j int) bool {
		return nsKey(st.Namespaces[i].Tenant, st.Namespaces[i].Name) < nsKey(st.Namespaces[j].Tenant, st.Namespaces[j].Name)
	})
	sort.Slice(st.Pods, func(i, j int) bool { return st.Pods[i].ID < st.Pods[j].ID })
	return st
}
