package store

// What a create needs of its tenant, kept so that it reads a few keys
// rather than every pod of the tenant:
//
//	/macro/vpcaddr/<tenant>/<IPv4>      the pod ID that holds the address
//	/macro/vpcnet/<tenant>/4/<index>    the namespace that holds the /24 10.<index>.0/24
//	/macro/vpcnet/<tenant>/6/<id>       the namespace that holds the /64 of subnet ID id
//	/macro/usage/<tenant>               types.TenantUsage: pod count, memory
//
// An address claim is created (CreateRevision 0 compared) in the same
// transaction as the pod or change that takes the address (its default
// IPv4 address, or an overlay address), and freed in the same transaction
// as the pod's removal or the change that gives the address up: the pod's
// own record says which addresses it holds (podAddrs). A freed address
// rests (its claim's value emptied, on a lease of addrRest) before a
// choice takes it again, unless nothing else of its /24 or pool is free
// or it is asked for by name: the node of a removed pod tears it down
// after the removal, and a new pod given the address at once would find
// it still held there. A create chooses its default address by reading
// the claims of its /24 alone. A subnet claim is created with its namespace's VPC record and
// deleted with it. The usage record changes, compared on its ModRevision,
// in the same transaction as every write of a pod that changes what it
// counts (podUsage): it serializes a tenant's creates, on one small key.
//
// A tenant whose pods were stored before these keys has no usage record:
// its first create indexes it (indexTenant), from one read of all its
// pods, in transactions that each commit only if none of its pods and
// none of these keys changed since; the usage record, written last, says
// that the index is whole. Until then the writes of its pods leave the
// keys alone, and compare that the usage record still does not exist.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/macro-cloud/macro/net/ipam"
	"github.com/macro-cloud/macro/sched"
	"github.com/macro-cloud/macro/types"
)

func addrKey(tenant string, a netip.Addr) string {
	return prefix + "vpcaddr/" + tenant + "/" + a.String()
}

// addrs24Prefix is the prefix of the claims of the /24 of a: "10.1.2."
// holds 10.1.2.0 to 10.1.2.255 and nothing else.
func addrs24Prefix(tenant string, a netip.Addr) string {
	b := a.As4()
	return fmt.Sprintf("%svpcaddr/%s/%d.%d.%d.", prefix, tenant, b[0], b[1], b[2])
}

func subnet4Key(tenant string, i uint16) string {
	return prefix + "vpcnet/" + tenant + "/4/" + strconv.Itoa(int(i))
}

func subnet6Key(tenant string, i uint16) string {
	return prefix + "vpcnet/" + tenant + "/6/" + strconv.Itoa(int(i))
}

func usageKey(tenant string) string { return prefix + "usage/" + tenant }

// addrRest is how long a freed address rests, at least: its lease is
// taken anew after a quarter of it, so at most a quarter more.
const addrRest = time.Minute

// restLease is the lease freed addresses rest on.
func (s *Store) restLease(ctx context.Context) (clientv3.LeaseID, error) {
	s.rest.mu.Lock()
	defer s.rest.mu.Unlock()
	if s.rest.id != 0 && time.Since(s.rest.granted) < addrRest/4 {
		return s.rest.id, nil
	}
	resp, err := s.cli.Grant(ctx, int64(addrRest/time.Second))
	if err != nil {
		return 0, fmt.Errorf("lease for freed addresses: %w", err)
	}
	s.rest.id, s.rest.granted = resp.ID, time.Now()
	return resp.ID, nil
}

// podAddrs are the IPv4 addresses the pod's record says it holds: its
// default address and its overlay addresses.
func podAddrs(p *types.Pod) []netip.Addr {
	if p == nil {
		return nil
	}
	var out []netip.Addr
	seen := map[netip.Addr]bool{}
	add := func(a netip.Addr) {
		if a.Is4() && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	if p.VPC != nil {
		add(p.VPC.IPv4)
	}
	for _, e := range p.Spec.Networks {
		if a, err := netip.ParseAddr(e.IPv4Address); err == nil && e.Subnet != "" {
			add(a)
		}
	}
	return out
}

// podUsage is what the pod counts for in its tenant's usage record.
func podUsage(p *types.Pod) types.TenantUsage {
	if p == nil {
		return types.TenantUsage{}
	}
	u := types.TenantUsage{Pods: 1}
	if types.MeantToRun(*p) {
		u.MemoryBytes = sched.PodMemory(p.Spec)
	}
	return u
}

func addUsage(u, plus, minus types.TenantUsage) types.TenantUsage {
	return types.TenantUsage{Pods: u.Pods + plus.Pods - minus.Pods, MemoryBytes: u.MemoryBytes + plus.MemoryBytes - minus.MemoryBytes}
}

// usageAt is a usage record as read, with its ModRevision.
type usageAt struct {
	types.TenantUsage
	rev int64
}

// indexOps are the compares and operations that keep the tenant's usage
// record and address claims right through a write of pod id from before
// to after (nil before: a create; nil after: a removal). known is the
// usage record as the caller read it and must commit against (nil: read
// here). No change of usage or addresses: nothing to read or compare.
func (s *Store) indexOps(ctx context.Context, tenant, id string, before, after *types.Pod, known *usageAt) ([]clientv3.Cmp, []clientv3.Op, error) {
	ub, ua := podUsage(before), podUsage(after)
	had, has := map[netip.Addr]bool{}, map[netip.Addr]bool{}
	for _, a := range podAddrs(before) {
		had[a] = true
	}
	var added, removed []netip.Addr
	for _, a := range podAddrs(after) {
		has[a] = true
		if !had[a] {
			added = append(added, a)
		}
	}
	for _, a := range podAddrs(before) {
		if !has[a] {
			removed = append(removed, a)
		}
	}
	if ub == ua && len(added) == 0 && len(removed) == 0 && known == nil {
		return nil, nil, nil
	}
	uk := usageKey(tenant)
	gets := []clientv3.Op{}
	if known == nil {
		gets = append(gets, clientv3.OpGet(uk))
	}
	for _, a := range removed {
		gets = append(gets, clientv3.OpGet(addrKey(tenant, a)))
	}
	for _, a := range added {
		gets = append(gets, clientv3.OpGet(addrKey(tenant, a)))
	}
	var cmps []clientv3.Cmp
	var ops []clientv3.Op
	resp, err := s.cli.Txn(ctx).Then(gets...).Commit()
	if err != nil {
		return nil, nil, fmt.Errorf("read the usage of %s: %w", tenant, err)
	}
	rs := resp.Responses
	if known == nil {
		kvs := rs[0].GetResponseRange().Kvs
		rs = rs[1:]
		if len(kvs) == 0 {
			// Not indexed yet: its indexing will count this write.
			return []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(uk), "=", 0)}, nil, nil
		}
		known = &usageAt{rev: kvs[0].ModRevision}
		if err := json.Unmarshal(kvs[0].Value, &known.TenantUsage); err != nil {
			return nil, nil, fmt.Errorf("decode %s: %w", uk, err)
		}
	}
	if ub != ua {
		data, err := json.Marshal(addUsage(known.TenantUsage, ua, ub))
		if err != nil {
			return nil, nil, err
		}
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(uk), "=", known.rev))
		ops = append(ops, clientv3.OpPut(uk, string(data)))
	} else {
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(uk), ">", 0))
	}
	for i, a := range added {
		k := addrKey(tenant, a)
		if kvs := rs[len(removed)+i].GetResponseRange().Kvs; len(kvs) == 1 && len(kvs[0].Value) == 0 {
			// A resting address: taken over (its put leaves the lease).
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", kvs[0].ModRevision))
		} else {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(k), "=", 0))
		}
		ops = append(ops, clientv3.OpPut(k, id))
	}
	var lease clientv3.LeaseID
	for _, r := range rs[:len(removed)] {
		// A claim another pod holds (two pods of before claims reported
		// one address) stays.
		kvs := r.GetResponseRange().Kvs
		if len(kvs) != 1 || string(kvs[0].Value) != id {
			continue
		}
		if lease == 0 {
			if lease, err = s.restLease(ctx); err != nil {
				return nil, nil, err
			}
		}
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(string(kvs[0].Key)), "=", kvs[0].ModRevision))
		ops = append(ops, clientv3.OpPut(string(kvs[0].Key), "", clientv3.WithLease(lease)))
	}
	return cmps, ops, nil
}

// AddrClaims are the claimed IPv4 addresses of a tenant, read a /24 at a
// time as a choice asks about them; what the choice takes is added.
type AddrClaims struct {
	ctx     context.Context
	s       *Store
	tenant  string
	loaded  map[[3]byte]bool
	held    map[netip.Addr]bool
	resting map[netip.Addr]bool // freed, resting (see addrRest)
	err     error
}

// AddrClaims reads the tenant's claimed addresses as a choice asks about
// them (nothing until it does).
func (s *Store) AddrClaims(ctx context.Context, tenant string) *AddrClaims {
	return &AddrClaims{ctx: ctx, s: s, tenant: tenant, loaded: map[[3]byte]bool{}, held: map[netip.Addr]bool{}, resting: map[netip.Addr]bool{}}
}

// Taken says whether a is claimed, resting, or taken by this choice: what
// a choice of a free address skips. When the claims cannot be read it
// says yes, and Err says why.
func (c *AddrClaims) Taken(a netip.Addr) bool { return c.Held(a) || c.resting[a] }

// Held says whether a is claimed by a pod or taken by this choice: what an
// address asked for by name, or a choice that found nothing else free,
// may not take.
func (c *AddrClaims) Held(a netip.Addr) bool {
	if !a.Is4() {
		return false
	}
	if c.held[a] {
		return true
	}
	b := a.As4()
	k := [3]byte{b[0], b[1], b[2]}
	if !c.loaded[k] {
		if c.err != nil {
			return true
		}
		p := addrs24Prefix(c.tenant, a)
		resp, err := c.s.cli.Get(c.ctx, p, clientv3.WithPrefix())
		if err != nil {
			c.err = fmt.Errorf("read the addresses of %s: %w", c.tenant, err)
			return true
		}
		for _, kv := range resp.Kvs {
			if h, err := netip.ParseAddr(strings.TrimPrefix(string(kv.Key), prefix+"vpcaddr/"+c.tenant+"/")); err == nil {
				if len(kv.Value) == 0 {
					c.resting[h] = true
				} else {
					c.held[h] = true
				}
			}
		}
		c.loaded[k] = true
	}
	return c.held[a]
}

// Take marks a as taken by this choice.
func (c *AddrClaims) Take(a netip.Addr) { c.held[a] = true }

// Err is why claims could not be read, if they could not.
func (c *AddrClaims) Err() error { return c.err }

// placeVPC gives p its default addresses (p.VPC): its namespace's recorded
// subnets, or new ones past the other namespaces' records (recorded in the
// same transaction, with their subnet claims), and the lowest address of
// the /24 that claims does not hold. It returns what the transaction must
// compare and do.
func (s *Store) placeVPC(ctx context.Context, claims *AddrClaims, p *types.Pod) ([]clientv3.Cmp, []clientv3.Op, error) {
	p.VPC = nil
	ns := podNamespace(*p)
	k := vpcKey(p.Tenant, ns)
	resp, err := s.cli.Get(ctx, k)
	if err != nil {
		return nil, nil, fmt.Errorf("read the VPC of %s: %w", p.Tenant, err)
	}
	var n types.NamespaceNet
	var cmps []clientv3.Cmp
	var ops []clientv3.Op
	if len(resp.Kvs) > 0 && json.Unmarshal(resp.Kvs[0].Value, &n) == nil && n.Name == ns {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", resp.Kvs[0].ModRevision))
	} else {
		all, err := s.cli.Get(ctx, tenantPrefix("vpc", p.Tenant), clientv3.WithPrefix())
		if err != nil {
			return nil, nil, fmt.Errorf("read the VPC of %s: %w", p.Tenant, err)
		}
		taken6, taken4 := map[uint16]bool{}, map[uint16]bool{}
		for name, o := range decodeNets(all.Kvs) {
			if name != ns {
				taken6[o.Subnet6ID], taken4[ipam.SubnetIndex4(o.Subnet4)] = true, true
			}
		}
		id6, id4, err := ipam.ChooseSubnets(p.Tenant, ns, func(i uint16) bool { return taken6[i] }, func(i uint16) bool { return taken4[i] })
		if err != nil {
			return nil, nil, err
		}
		n = types.NamespaceNet{Tenant: p.Tenant, Name: ns, Subnet6ID: id6, Subnet4: ipam.Subnet4(id4)}
		data, err := json.Marshal(n)
		if err != nil {
			return nil, nil, err
		}
		k4, k6 := subnet4Key(p.Tenant, id4), subnet6Key(p.Tenant, id6)
		// A record that exists but does not decode is replaced.
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", modRev(resp)),
			clientv3.Compare(clientv3.CreateRevision(k4), "=", 0), clientv3.Compare(clientv3.CreateRevision(k6), "=", 0))
		ops = append(ops, clientv3.OpPut(k, string(data)), clientv3.OpPut(k4, ns), clientv3.OpPut(k6, ns))
	}
	own := map[netip.Addr]bool{}
	for _, a := range podAddrs(p) { // its own overlay addresses
		own[a] = true
	}
	ip, err := ipam.FreeIPv4(n.Subnet4, func(a netip.Addr) bool { return own[a] || claims.Taken(a) })
	if errors.Is(err, ipam.ErrFull) { // then a resting one
		ip, err = ipam.FreeIPv4(n.Subnet4, func(a netip.Addr) bool { return own[a] || claims.Held(a) })
	}
	if err := claims.Err(); err != nil {
		return nil, nil, err
	}
	if err != nil {
		return nil, nil, fmt.Errorf("namespace %s: %w", ns, err)
	}
	p.VPC = &types.PodVPC{Subnet6ID: n.Subnet6ID, Subnet4: n.Subnet4, IPv4: ip}
	return cmps, ops, nil
}

func modRev(resp *clientv3.GetResponse) int64 {
	if len(resp.Kvs) == 0 {
		return 0
	}
	return resp.Kvs[0].ModRevision
}

// indexTenant builds the tenant's usage record, address claims and subnet
// claims from its pods and VPC records, once: it records subnets for each
// namespace whose pods have none recorded (chooseNamespaceNet: those its
// pods hold), claims for every address a pod holds (recorded, or reported
// by its node for a pod from before records), and removes claims that no
// pod or record holds (left by an indexing that lost a race). It commits
// in transactions of at most txnOps operations, each only if none of the
// tenant's pods changed since they were read, none of its VPC keys
// changed since its own previous transaction, and the usage record still
// does not exist; the usage record comes last.
func (s *Store) indexTenant(ctx context.Context, tenant string) error {
	for attempt := 0; attempt < maxGuardedAttempts; attempt++ {
		resp, err := s.cli.Txn(ctx).Then(
			clientv3.OpGet(tenantPrefix("pods", tenant), clientv3.WithPrefix()),
			clientv3.OpGet(tenantPrefix("status", tenant), clientv3.WithPrefix()),
			clientv3.OpGet(tenantPrefix("vpc", tenant), clientv3.WithPrefix()),
			clientv3.OpGet(tenantPrefix("vpcaddr", tenant), clientv3.WithPrefix()),
			clientv3.OpGet(tenantPrefix("vpcnet", tenant), clientv3.WithPrefix()),
			clientv3.OpGet(usageKey(tenant)),
		).Commit()
		if err != nil {
			return fmt.Errorf("index %s: %w", tenant, err)
		}
		r := func(i int) *clientv3.GetResponse {
			return (*clientv3.GetResponse)(resp.Responses[i].GetResponseRange())
		}
		if len(r(5).Kvs) > 0 {
			return nil // indexed meanwhile
		}
		tp := TenantPods{Statuses: map[string]types.PodStatus{}, Nets: decodeNets(r(2).Kvs), Revision: resp.Header.Revision}
		for _, kv := range r(0).Kvs {
			if p, err := decodePod(kv.Value, kv.ModRevision); err == nil {
				tp.Pods = append(tp.Pods, p)
			}
		}
		for _, kv := range r(1).Kvs {
			var st types.PodStatus
			if json.Unmarshal(kv.Value, &st) == nil {
				tp.Statuses[st.ID] = st
			}
		}
		want := map[string]string{} // key -> value of every claim and new record
		var usage types.TenantUsage
		for i := range tp.Pods {
			q := &tp.Pods[i]
			usage = addUsage(usage, podUsage(q), types.TenantUsage{})
			addrs := podAddrs(q)
			if q.VPC == nil {
				if a, err := netip.ParseAddr(tp.Statuses[q.ID].IPv4); err == nil && a.Is4() {
					addrs = append(addrs, a)
				}
			}
			for _, a := range addrs {
				if _, ok := want[addrKey(tenant, a)]; !ok {
					want[addrKey(tenant, a)] = q.ID
				}
			}
			if ns := podNamespace(*q); needsVPC(q) {
				if _, ok := tp.Nets[ns]; !ok {
					n, err := chooseNamespaceNet(tp, tenant, ns)
					if err != nil {
						return err
					}
					tp.Nets[ns] = n
					data, err := json.Marshal(n)
					if err != nil {
						return err
					}
					want[vpcKey(tenant, ns)] = string(data)
				}
			}
		}
		for name, n := range tp.Nets {
			for _, k := range []string{subnet4Key(tenant, ipam.SubnetIndex4(n.Subnet4)), subnet6Key(tenant, n.Subnet6ID)} {
				if cur, ok := want[k]; !ok || name < cur {
					want[k] = name
				}
			}
		}
		var ops []clientv3.Op
		have := map[string]string{}
		for _, kv := range append(r(3).Kvs, r(4).Kvs...) {
			have[string(kv.Key)] = string(kv.Value)
			if _, ok := want[string(kv.Key)]; !ok && len(kv.Value) > 0 { // resting ones expire
				ops = append(ops, clientv3.OpDelete(string(kv.Key)))
			}
		}
		for k, v := range want {
			if cur, ok := have[k]; !ok || cur != v {
				ops = append(ops, clientv3.OpPut(k, v))
			}
		}
		data, err := json.Marshal(usage)
		if err != nil {
			return err
		}
		ops = append(ops, clientv3.OpPut(usageKey(tenant), string(data)))
		last, lost := tp.Revision, false
		for len(ops) > 0 && !lost {
			n := min(len(ops), s.txnOps)
			cmps := []clientv3.Cmp{unchangedSince(tenant, tp.Revision), clientv3.Compare(clientv3.CreateRevision(usageKey(tenant)), "=", 0)}
			for _, kind := range []string{"vpc", "vpcaddr", "vpcnet"} {
				cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(tenantPrefix(kind, tenant)), "<", last+1).WithPrefix())
			}
			tresp, err := s.cli.Txn(ctx).If(cmps...).Then(ops[:n]...).Commit()
			if err != nil {
				return fmt.Errorf("index %s: %w", tenant, err)
			}
			ops, last, lost = ops[n:], tresp.Header.Revision, !tresp.Succeeded
		}
		if !lost {
			s.log.Info("indexed a tenant's pods for quotas and VPC addresses", "tenant", tenant, "pods", usage.Pods, "claims", len(want))
			return nil
		}
		backoff(ctx, attempt)
	}
	return ErrConflict
}
