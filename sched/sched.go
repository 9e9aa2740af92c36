// Package sched is pure placement: given pods waiting for a node and the
// nodes with what already runs on them, it returns a plan. It does no I/O and
// imports no store, so it can be tested and benchmarked with millions of
// simulated pods; package control runs it and commits its plans.
//
// A pod goes on a node that is ready, in the pod's zone (label kr.zone
// against the node label zone), of the pod's image architecture, offering
// its runtime, and with the memory and CPU it requests free (see
// PodRequest); a pod pinned to a node by a node-local volume goes on that
// node or nowhere. Among the nodes that fit, replicas of one compose
// service go where that service has the fewest replicas, and then on the
// node with the least memory left (best fit), so that large pods still
// find room later; ties break by node name. A pod that fits nowhere gets a
// reason, counted over the nodes ("no node in zone eu-1 has 4 GiB of
// memory free (3 nodes in zone eu-1: 2 lack memory, 1 is not ready)").
//
// The same input gives the same plan. Pending pods are placed in the
// order given. Nodes that can run the same kinds of pods (zone,
// architecture, runtime) are kept in one index ordered by free memory, so
// a best fit is a binary search, not a scan of every node; the index keeps
// the most CPU free per block of 32 nodes, so a search for CPU skips
// blocks. A replica's search ends at the first fitting node with as few
// replicas of its service as any node has: it passes over at most the
// nodes with more, which for a service smaller than the cluster is at
// most its replica count. A million pods onto 5,000 nodes take seconds
// (bench/sched.sh, bench/RESULTS.md).
package sched

import (
	"sort"

	"github.com/macro-cloud/macro/types"
)

// Plan is the outcome of one placement round.
type Plan struct {
	// Assign maps pod id to the chosen node.
	Assign map[string]string
	// Unschedulable maps pod id to the reason no node fits.
	Unschedulable map[string]string
}

// Place assigns each pending pod to a node. placed are pods already bound to
// nodes: each uses its request (PodRequest) of its node's capacity and
// counts as a replica of its service, whatever it is doing; the caller
// leaves out those that no longer hold their node. Pods on nodes not in
// nodes are ignored; of two nodes of one name the first counts.
func Place(pending []types.Pod, nodes []types.Node, placed []types.Pod) Plan {
	plan, _ := place(pending, nodes, placed)
	return plan
}

// place is Place, also returning the state it ended with (for tests).
func place(pending []types.Pod, nodes []types.Node, placed []types.Pod) (Plan, *cluster) {
	plan := Plan{Assign: make(map[string]string, len(pending)), Unschedulable: map[string]string{}}
	c := newCluster(nodes)
	// Only the services of pending pods need their replicas counted.
	for i := range pending {
		if key := serviceOf(&pending[i]); key.service != "" {
			c.service(key)
		}
	}
	for i := range placed {
		p := &placed[i]
		n, ok := c.byName[p.Node]
		if !ok {
			continue
		}
		r := placedRequest(p.Spec)
		c.freeMem[n] = sub(c.freeMem[n], r.MemoryBytes)
		c.freeCPU[n] = sub(c.freeCPU[n], r.NanoCPUs)
		if key := serviceOf(p); key.service != "" {
			if s := c.services[key]; s != nil {
				s.count(n)
			}
		}
	}
	for i := range pending {
		p := &pending[i]
		if _, done := plan.Assign[p.ID]; done {
			continue
		}
		if _, done := plan.Unschedulable[p.ID]; done {
			continue
		}
		n, reason := c.place(p)
		if reason != "" {
			plan.Unschedulable[p.ID] = reason
			continue
		}
		plan.Assign[p.ID] = c.nodes[n].Name
	}
	return plan, c
}

// sub subtracts a request from a free amount. Requests are clamped (see
// clampReq) and free amounts stop at -clampReq, so neither overflows: a
// node given more than it has (by hand, or before it shrank) is full.
func sub(free, req int64) int64 {
	return max(free-req, -clampReq)
}

// cluster is the state of one round: free capacity per node, the indexes
// of the constraint classes met so far, and the replicas per service.
type cluster struct {
	nodes    []types.Node // sorted by name; a node is its index here
	byName   map[string]int32
	freeMem  []int64
	freeCPU  []int64
	classes  map[classKey]*class
	inClass  [][]*class // per node: the classes it is a member of
	services map[serviceKey]*service
}

func newCluster(nodes []types.Node) *cluster {
	sorted := make([]types.Node, 0, len(nodes))
	seen := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		if !seen[n.Name] {
			seen[n.Name] = true
			sorted = append(sorted, n)
		}
	}
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	c := &cluster{
		nodes:    sorted,
		byName:   make(map[string]int32, len(sorted)),
		freeMem:  make([]int64, len(sorted)),
		freeCPU:  make([]int64, len(sorted)),
		classes:  map[classKey]*class{},
		inClass:  make([][]*class, len(sorted)),
		services: map[serviceKey]*service{},
	}
	for i, n := range sorted {
		c.byName[n.Name] = int32(i)
		c.freeMem[i] = max(n.MemoryBytes, 0)
		c.freeCPU[i] = min(int64(max(n.CPUs, 0)), clampReq/1_000_000_000) * 1_000_000_000
	}
	return c
}

// place finds the node for p and takes its request there, or says why
// there is none.
func (c *cluster) place(p *types.Pod) (int32, string) {
	r, err := PodRequest(p.Spec)
	if err != nil {
		return 0, err.Error()
	}
	if len(c.nodes) == 0 {
		return 0, "no nodes are registered"
	}
	svc := serviceOf(p)
	if p.Spec.PinnedNode != "" {
		n, ok := c.byName[p.Spec.PinnedNode]
		if !ok {
			return 0, pinnedReason(p, "which is not registered")
		}
		if why := c.misfit(p, r, n); why != "" {
			return 0, pinnedReason(p, why)
		}
		c.take(n, r, svc)
		return n, ""
	}
	cl := c.class(classOf(p))
	var n int32
	if svc.service != "" {
		n = cl.spreadFit(c, r, c.service(svc).in(c, cl))
	} else {
		n = cl.bestFit(c, r)
	}
	if n < 0 {
		return 0, cl.explain(c, p, r)
	}
	c.take(n, r, svc)
	return n, ""
}

// take reserves r on node n: every index the node is in moves it to its
// new place, and n counts one more replica of the service.
func (c *cluster) take(n int32, r Request, svc serviceKey) {
	old := c.freeMem[n]
	c.freeCPU[n] = sub(c.freeCPU[n], r.NanoCPUs)
	for _, cl := range c.inClass[n] {
		cl.move(c, n, old, sub(old, r.MemoryBytes))
	}
	c.freeMem[n] = sub(old, r.MemoryBytes)
	if svc.service != "" {
		c.service(svc).count(n)
	}
}

// serviceKey names the compose service a pod is a replica of: tenant,
// namespace and service label; the zero key for a pod of none.
type serviceKey struct{ tenant, namespace, service string }

func serviceOf(p *types.Pod) serviceKey {
	s := p.Spec.Labels[ServiceLabel]
	if s == "" {
		return serviceKey{}
	}
	return serviceKey{p.Tenant, p.Namespace, s}
}
