package store

// Addresses of tenants' VPCs, chosen by the cluster rather than by each
// node (net/ipam does the arithmetic):
//
//	/macro/vpc/<tenant>/<namespace>   types.NamespaceNet
//
// A namespace's subnets (an IPv6 /64 of its tenant's /48, an IPv4 /24 of
// 10.0.0.0/8) are recorded with the namespace's first pod, and a pod's
// default IPv4 address (types.Pod.VPC) is chosen when the pod is created,
// both inside CreatePodGuarded's transaction (placeVPC), against claim
// keys (vpcclaims.go): a namespace's /24 and /64 are claimed with its
// record, a pod's address with the pod, each created only if it does not
// exist, so two API servers never give a tenant's two namespaces one /24,
// nor two of its pods one address; a create reads its namespace's record
// and the claims of its /24 alone. A pod's address is free again once the
// pod is gone; a namespace's subnets once the namespace is deleted (or
// its tenant). The pod carries its subnets, so a node wires it from the pod
// alone, and keeps them wherever it is scheduled.
//
// Pods created before addresses were recorded have none (their node chose
// them); when their tenant is indexed (indexTenant) their reported
// addresses are claimed, and their namespace's record takes the subnets
// they hold when no other namespace holds those.

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
