// Package ipam decides the addresses of a tenant's VPC: every tenant an IPv6
// ULA /48, every namespace a /64 in it and an IPv4 /24 of its default
// overlay, every pod one address in each. It is pure: an Allocator works on
// a State that its owner persists and hands back after a restart, so the
// same pod keeps its addresses.
//
// The tenant /48 is derived from the cluster and tenant names alone, so
// every node computes the same one. Namespace subnets and pod addresses
// start from a hash too and move to the next free slot on a collision; on
// one node that is exact, across nodes two nodes could pick differently
// after a collision. The cluster issue moves Allocator next to the store
// (namespace subnets recorded on the namespace object, pod addresses on the
// pod) so that one allocator serves every node; nothing here is tied to
// being on a node.
package ipam

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sort"
)

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
			taken6[subnetID(n.Subnet6)] = true
			taken4[subnetIndex4(n.Subnet4)] = true
		}
	}
	h := sha256.Sum256([]byte("macro ns\x00" + tenant + "\x00" + name))
	start := binary.BigEndian.Uint16(h[:2])
	id6, id4 := start, start
	for taken6[id6] {
		id6++
	}
	for taken4[id4] {
		id4++
	}
	tp := TenantPrefix(a.cluster, tenant).Addr().As16()
	binary.BigEndian.PutUint16(tp[6:8], id6)
	v4 := V4Space.Addr().As4()
	binary.BigEndian.PutUint16(v4[1:3], id4)
	return Namespace{
		Tenant:  tenant,
		Name:    name,
		Subnet6: netip.PrefixFrom(netip.AddrFrom16(tp), 64),
		Subnet4: netip.PrefixFrom(netip.AddrFrom4(v4), 24),
	}
}

func subnetID(p netip.Prefix) uint16 {
	b := p.Addr().As16()
	return binary.BigEndian.Uint16(b[6:8])
}

func subnetIndex4(p netip.Prefix) uint16 {
	b := p.Addr().As4()
	return binary.BigEndian.Uint16(b[1:3])
}

// Pod returns the pod's addresses, allocating them on first use: the IPv6
// interface ID is a hash of the pod ID (past ::ffff, which the router keeps
// for itself), the IPv4 address the lowest free one from .2.
func (a *Allocator) Pod(id, tenant, namespace string) (Pod, error) {
	if p := a.pods[id]; p != nil {
		if p.Tenant != tenant || p.Namespace != namespace {
			return Pod{}, fmt.Errorf("pod %s already has addresses in %s/%s", id, p.Tenant, p.Namespace)
		}
		return *p, nil
	}
	n := a.Namespace(tenant, namespace)
	h := sha256.Sum256([]byte("macro pod\x00" + id))
	iid := binary.BigEndian.Uint64(h[:8])
	b := n.Subnet6.Addr().As16()
	var v6 netip.Addr
	for {
		if iid > 0xffff {
			binary.BigEndian.PutUint64(b[8:], iid)
			v6 = netip.AddrFrom16(b)
			if _, taken := a.used6[v6]; !taken {
				break
			}
		}
		iid++
	}
	var v4 netip.Addr
	for ip := n.Gateway4().Next(); n.Subnet4.Contains(ip); ip = ip.Next() {
		if ip.As4()[3] == 255 {
			break
		}
		if _, taken := a.used4[tenant][ip]; !taken {
			v4 = ip
			break
		}
	}
	if !v4.IsValid() {
		return Pod{}, fmt.Errorf("%s/%s %s: %w", tenant, namespace, n.Subnet4, ErrFull)
	}
	p := &Pod{ID: id, Tenant: tenant, Namespace: namespace, IPv6: v6, IPv4: v4}
	a.pods[id] = p
	a.use(p)
	return *p, nil
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
