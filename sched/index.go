package sched

import (
	"slices"
	"sort"

	"github.com/macro-cloud/macro/types"
)

// classKey is what a pod asks of a node besides capacity. Pods of one
// class can run on the same nodes.
type classKey struct {
	zone, arch, runtime string
}

func classOf(p *types.Pod) classKey {
	return classKey{zone: p.Spec.Labels[ZoneLabel], arch: p.Spec.Arch, runtime: p.Spec.Runtime}
}

// class is the index of the nodes that can run pods of one class: its
// members ordered by free memory (then by name), and, for explanations,
// how many nodes it left out and why.
type class struct {
	key    classKey
	order  []int32 // members, by (free memory, node index)
	member []bool  // by node index
	// cpuMax[b] is the most CPU free on a member at positions
	// [b*block, (b+1)*block) of order: a search for CPU skips blocks.
	cpuMax []int64

	// Counted once, in this order of checks: nodes in another zone (when
	// the class has one); of the others (the scope), those not ready, of
	// another architecture, without the runtime.
	otherZone, scope, notReady, otherArch, noRuntime int
	zones                                            []string // the zones of the nodes in another zone, sorted
}

// class returns the index of a class, made on first use from the free
// capacity of that moment (a class made later in a round sees what the
// round took before).
func (c *cluster) class(k classKey) *class {
	if cl := c.classes[k]; cl != nil {
		return cl
	}
	cl := &class{key: k, member: make([]bool, len(c.nodes))}
	zones := map[string]bool{}
	for i, n := range c.nodes {
		switch {
		case k.zone != "" && n.Labels[NodeZoneLabel] != k.zone:
			cl.otherZone++
			zones[n.Labels[NodeZoneLabel]] = true
			continue
		case !n.Ready:
			cl.notReady++
		case !archFits(k.arch, n.Arch):
			cl.otherArch++
		case k.runtime != "" && !slices.Contains(n.Runtimes, k.runtime):
			cl.noRuntime++
		default:
			cl.member[i] = true
			cl.order = append(cl.order, int32(i))
			c.inClass[i] = append(c.inClass[i], cl)
		}
		cl.scope++
	}
	for z := range zones {
		cl.zones = append(cl.zones, z)
	}
	sort.Strings(cl.zones)
	sort.Slice(cl.order, func(a, b int) bool { return c.before(cl.order[a], cl.order[b]) })
	cl.cpuMax = make([]int64, (len(cl.order)+block-1)/block)
	cl.reblock(c, 0, len(cl.order)-1)
	c.classes[k] = cl
	return cl
}

// archFits: a pod of an architecture runs on nodes of that architecture;
// a pod without one (image of unknown architecture) anywhere, and a node
// that did not say its architecture takes any pod.
func archFits(pod, node string) bool {
	return pod == "" || node == "" || pod == node
}

// cpuFits: a pod that asks for no CPU fits even a node whose CPUs are
// all taken.
func cpuFits(free, need int64) bool { return need == 0 || free >= need }

// before orders nodes by free memory, then by name.
func (c *cluster) before(a, b int32) bool {
	fa, fb := c.freeMem[a], c.freeMem[b]
	return fa < fb || fa == fb && a < b
}

// firstWith is the position of the first member with at least mem free:
// also the number of members with less.
func (cl *class) firstWith(c *cluster, mem int64) int {
	return sort.Search(len(cl.order), func(k int) bool { return c.freeMem[cl.order[k]] >= mem })
}

// block is the number of positions of a class's order that cpuMax
// sums up.
const block = 32

// reblock recomputes cpuMax for the blocks of positions from to to.
func (cl *class) reblock(c *cluster, from, to int) {
	for b := from / block; b <= to/block && b < len(cl.cpuMax); b++ {
		m := int64(-clampReq)
		for _, n := range cl.order[b*block : min((b+1)*block, len(cl.order))] {
			m = max(m, c.freeCPU[n])
		}
		cl.cpuMax[b] = m
	}
}

// nextCPU is the first position from k on whose member has need CPU
// free, or len(order).
func (cl *class) nextCPU(c *cluster, k int, need int64) int {
	for k < len(cl.order) {
		if need > 0 && cl.cpuMax[k/block] < need {
			k = (k/block + 1) * block
			continue
		}
		if cpuFits(c.freeCPU[cl.order[k]], need) {
			return k
		}
		k++
	}
	return len(cl.order)
}

// bestFit is the member with the least memory free that has r free, or
// -1.
func (cl *class) bestFit(c *cluster, r Request) int32 {
	if k := cl.nextCPU(c, cl.firstWith(c, r.MemoryBytes), r.NanoCPUs); k < len(cl.order) {
		return cl.order[k]
	}
	return -1
}

// spreadFit is, among the members that have r free, one with the fewest
// replicas of the service and of those the best fit; or -1. The search
// runs in best-fit order and stops at the first node with as few
// replicas as any member has.
func (cl *class) spreadFit(c *cluster, r Request, g *group) int32 {
	floor := g.floor()
	best, bestCount := int32(-1), int32(0)
	for k := cl.nextCPU(c, cl.firstWith(c, r.MemoryBytes), r.NanoCPUs); k < len(cl.order); k = cl.nextCPU(c, k+1, r.NanoCPUs) {
		n := cl.order[k]
		count := g.svc.counts[n]
		if count == floor {
			return n
		}
		if best < 0 || count < bestCount {
			best, bestCount = n, count
		}
	}
	return best
}

// move puts member n, whose free memory goes from old to now (less), at
// its new place in the order, and updates cpuMax where positions moved.
// c.freeMem[n] must still be old; c.freeCPU[n] must be new.
func (cl *class) move(c *cluster, n int32, old, now int64) {
	at := sort.Search(len(cl.order), func(k int) bool {
		m := cl.order[k]
		f := c.freeMem[m]
		return f > old || f == old && m >= n
	})
	to := sort.Search(at, func(k int) bool {
		m := cl.order[k]
		f := c.freeMem[m]
		return f > now || f == now && m >= n
	})
	copy(cl.order[to+1:at+1], cl.order[to:at])
	cl.order[to] = n
	cl.reblock(c, to, at)
}

// service is the replicas of one compose service on each node.
type service struct {
	counts map[int32]int32
	groups []*group
}

// group is a service's replicas seen from one class: how many members
// have each number of replicas.
type group struct {
	svc    *service
	cl     *class
	levels []int32 // levels[k]: members with k replicas
	min    int     // no member has fewer replicas than this
}

func (c *cluster) service(key serviceKey) *service {
	s := c.services[key]
	if s == nil {
		s = &service{counts: map[int32]int32{}}
		c.services[key] = s
	}
	return s
}

// in returns the service's group for a class, made on first use.
func (s *service) in(c *cluster, cl *class) *group {
	for _, g := range s.groups {
		if g.cl == cl {
			return g
		}
	}
	g := &group{svc: s, cl: cl, levels: []int32{int32(len(cl.order))}}
	for n, k := range s.counts {
		if cl.member[n] {
			g.levels[0]--
			g.add(int(k))
		}
	}
	s.groups = append(s.groups, g)
	return g
}

func (g *group) add(level int) {
	for len(g.levels) <= level {
		g.levels = append(g.levels, 0)
	}
	g.levels[level]++
}

// floor is the fewest replicas any member has.
func (g *group) floor() int32 {
	for g.min < len(g.levels) && g.levels[g.min] == 0 {
		g.min++
	}
	return int32(g.min)
}

// count adds a replica of the service on node n.
func (s *service) count(n int32) {
	k := s.counts[n]
	for _, g := range s.groups {
		if g.cl.member[n] {
			g.levels[k]--
			g.add(int(k) + 1)
		}
	}
	s.counts[n] = k + 1
}
