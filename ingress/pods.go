package ingress

import (
	"net/netip"

	"github.com/macro-cloud/macro/types"
)

// FromPod is the ingress's view of a pod and its status. A pod is ready
// while it runs, is not suspended, and its healthcheck, if it has one,
// says healthy; one whose healthcheck is still starting gets traffic only
// while no replica is ready (Starting).
func FromPod(p types.Pod, st types.PodStatus) Backend {
	node := p.Node // the assignment: the node whose agent will answer
	if node == "" {
		node = st.Node
	}
	b := Backend{
		Tenant: p.Tenant, Pod: p.ID, Name: p.Name, Created: p.Created, Labels: p.Spec.Labels,
		Suspended: st.Suspended(),
		Ready:     st.Phase == types.PhaseRunning && !st.Suspended() && (st.Health == nil || st.Health.Status == "healthy"),
		Node:      node,
		Starting:  st.Phase == types.PhaseRunning && !st.Suspended() && st.Health != nil && st.Health.Status == "starting",
	}
	// IPv6 is the VPC's own address; IPv4 only where a pod has no IPv6.
	for _, a := range []string{st.IPv6, st.IPv4} {
		if addr, err := netip.ParseAddr(a); err == nil && !b.Addr.IsValid() {
			b.Addr = addr
		}
	}
	return b
}
