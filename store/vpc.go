package store

// Addresses of tenants' VPCs, chosen by the cluster rather than by each
// node (net/ipam does the arithmetic):
//
//	/macro/vpc/<tenant>/<namespace>   types.NamespaceNet
//
// A namespace's subnets (an IPv6 /64 of its tenant's /48, an IPv4 /24 of
// 10.0.0.0/8) are recorded with the namespace's first pod, and a pod's
// default IPv4 address (types.Pod.VPC) is chosen when the pod is created,
// both inside CreatePodGuarded's transaction: it commits only if no pod
// of the tenant and no record of its VPC changed since they were read, so
// two API servers never give a tenant's two namespaces one /24, nor two of
// its pods one address. A pod's address is free again once the pod is
// gone; a namespace's subnets once the namespace is deleted (or its
// tenant). The pod carries its subnets, so a node wires it from the pod
// alone, and keeps them wherever it is scheduled.
//
// Pods created before addresses were recorded have none (their node chose
// them); their reported addresses count as taken, and their namespace's
// first record takes the subnets they hold when no other namespace holds
// those.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/macro-cloud/macro/net/ipam"
	"github.com/macro-cloud/macro/types"
)

func vpcKey(tenant, namespace string) string { return prefix + "vpc/" + tenant + "/" + namespace }

// podNamespace is the pod's namespace, "default" for none.
func podNamespace(p types.Pod) string {
	if p.Namespace == "" {
		return types.DefaultNamespace
	}
	return p.Namespace
}

// needsVPC says whether the pod gets addresses in its VPC.
func needsVPC(p *types.Pod) bool { return p.Spec.Network != "none" }

// vpcUnchangedSince compares that no VPC record of tenant changed after rev.
func vpcUnchangedSince(tenant string, rev int64) clientv3.Cmp {
	return clientv3.Compare(clientv3.ModRevision(tenantPrefix("vpc", tenant)), "<", rev+1).WithPrefix()
}

// assignVPC gives p its default addresses from tp (the tenant's pods and
// VPC records at one revision): its namespace's recorded subnets, or new
// ones (returned, to be recorded in the same transaction), and the lowest
// address of the /24 that no other pod of the tenant holds, as its default
// address, an overlay address or a reported address from before records.
func assignVPC(tp TenantPods, p *types.Pod) (*types.NamespaceNet, error) {
	p.VPC = nil
	ns := podNamespace(*p)
	n, ok := tp.Nets[ns]
	var rec *types.NamespaceNet
	if !ok {
		var err error
		if n, err = chooseNamespaceNet(tp, p.Tenant, ns); err != nil {
			return nil, err
		}
		rec = &n
	}
	taken := map[netip.Addr]bool{}
	holds := func(q types.Pod) {
		if q.VPC != nil {
			taken[q.VPC.IPv4] = true
		} else if a, err := netip.ParseAddr(tp.Statuses[q.ID].IPv4); err == nil {
			taken[a] = true
		}
		for _, e := range q.Spec.Networks {
			if a, err := netip.ParseAddr(e.IPv4Address); err == nil && e.Subnet != "" {
				taken[a] = true
			}
		}
	}
	for _, q := range tp.Pods {
		if q.ID != p.ID {
			holds(q)
		}
	}
	for _, e := range p.Spec.Networks { // its own overlay addresses
		if a, err := netip.ParseAddr(e.IPv4Address); err == nil && e.Subnet != "" {
			taken[a] = true
		}
	}
	ip, err := ipam.FreeIPv4(n.Subnet4, func(a netip.Addr) bool { return taken[a] })
	if err != nil {
		return nil, fmt.Errorf("namespace %s: %w", ns, err)
	}
	p.VPC = &types.PodVPC{Subnet6ID: n.Subnet6ID, Subnet4: n.Subnet4, IPv4: ip}
	return rec, nil
}

// chooseNamespaceNet chooses the subnets of a namespace that has no
// record: those its pods hold (recorded on them, or reported by a node
// before records) when no other namespace of the tenant holds them, or
// else ipam.ChooseSubnets past every other namespace's.
func chooseNamespaceNet(tp TenantPods, tenant, ns string) (types.NamespaceNet, error) {
	taken6, taken4 := map[uint16]bool{}, map[uint16]bool{}
	for name, n := range tp.Nets {
		if name != ns {
			taken6[n.Subnet6ID], taken4[ipam.SubnetIndex4(n.Subnet4)] = true, true
		}
	}
	var held6, held4 []uint16 // what the namespace's own pods hold
	for _, q := range tp.Pods {
		if podNamespace(q) != ns {
			if q.VPC != nil {
				taken6[q.VPC.Subnet6ID], taken4[ipam.SubnetIndex4(q.VPC.Subnet4)] = true, true
			}
			continue
		}
		if q.VPC != nil {
			held6, held4 = append(held6, q.VPC.Subnet6ID), append(held4, ipam.SubnetIndex4(q.VPC.Subnet4))
			continue
		}
		st := tp.Statuses[q.ID]
		if a, err := netip.ParseAddr(st.IPv6); err == nil && a.Is6() {
			p, _ := a.Prefix(64)
			held6 = append(held6, ipam.SubnetID(p))
		}
		if a, err := netip.ParseAddr(st.IPv4); err == nil && ipam.V4Space.Contains(a) {
			p, _ := a.Prefix(24)
			held4 = append(held4, ipam.SubnetIndex4(p))
		}
	}
	id6, id4, err := ipam.ChooseSubnets(tenant, ns, func(i uint16) bool { return taken6[i] }, func(i uint16) bool { return taken4[i] })
	if err != nil {
		return types.NamespaceNet{}, err
	}
	for _, h := range held6 {
		if !taken6[h] {
			id6 = h
			break
		}
	}
	for _, h := range held4 {
		if !taken4[h] {
			id4 = h
			break
		}
	}
	return types.NamespaceNet{Tenant: tenant, Name: ns, Subnet6ID: id6, Subnet4: ipam.Subnet4(id4)}, nil
}

// NamespaceNets returns the subnets of the tenant's namespaces names:
// those recorded, and for the others those their next pod would get.
func (s *Store) NamespaceNets(ctx context.Context, tenant string, names []string) (map[string]types.NamespaceNet, error) {
	tp, err := s.ReadTenantPods(ctx, tenant)
	if err != nil {
		return nil, err
	}
	out := map[string]types.NamespaceNet{}
	for _, name := range names {
		if n, ok := tp.Nets[name]; ok {
			out[name] = n
			continue
		}
		n, err := chooseNamespaceNet(tp, tenant, name)
		if err != nil {
			return nil, err
		}
		out[name] = n
	}
	return out, nil
}

// RecordedNamespaceNets returns the subnets recorded for the tenant's
// namespaces, by namespace: one read of the records alone.
func (s *Store) RecordedNamespaceNets(ctx context.Context, tenant string) (map[string]types.NamespaceNet, error) {
	if err := keyPart("tenant", tenant); err != nil {
		return nil, err
	}
	resp, err := s.cli.Get(ctx, tenantPrefix("vpc", tenant), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("read the VPC of %s: %w", tenant, err)
	}
	return decodeNets(resp.Kvs), nil
}

func decodeNets(kvs []*mvccpb.KeyValue) map[string]types.NamespaceNet {
	out := map[string]types.NamespaceNet{}
	for _, kv := range kvs {
		var n types.NamespaceNet
		if json.Unmarshal(kv.Value, &n) == nil && n.Name != "" {
			out[n.Name] = n
		}
	}
	return out
}
