package sched

import (
	"fmt"
	"math/rand"
	"reflect"
	"slices"
	"testing"

	"github.com/macro-cloud/macro/types"
)

// randomCluster makes nodes and pods of every kind the scheduler tells
// apart: zones, architectures, runtimes, readiness, pins, services, CPU
// and memory requests, labels that do not parse, and pods already placed
// (within capacity).
func randomCluster(rng *rand.Rand, maxNodes, maxPods int) (nodes []types.Node, pending, placed []types.Pod) {
	names := maxNodes * 5 / 3
	pick := func(list ...string) string { return list[rng.Intn(len(list))] }
	for range 1 + rng.Intn(maxNodes) {
		n := types.Node{
			Name:        fmt.Sprintf("n%03d", rng.Intn(names)), // sometimes twice
			Arch:        pick("amd64", "amd64", "arm64", ""),
			Ready:       rng.Intn(6) > 0,
			CPUs:        rng.Intn(9),
			MemoryBytes: int64(rng.Intn(17)) * gib / 2,
			Runtimes:    [][]string{{"sandbox"}, {"sandbox", "gvisor"}, {"gvisor", "microvm"}, nil}[rng.Intn(4)],
			Labels:      map[string]string{"zone": pick("z1", "z2", "z3", "")},
		}
		nodes = append(nodes, n)
	}
	newPod := func(i int) types.Pod {
		p := types.Pod{
			ID:        fmt.Sprintf("p%05d", i),
			Tenant:    pick("t1", "t2"),
			Namespace: pick("a", "b"),
			Spec: types.PodSpec{
				Runtime:   pick("sandbox", "sandbox", "gvisor", "microvm", ""),
				Arch:      pick("", "", "amd64", "arm64"),
				Labels:    map[string]string{},
				Resources: types.Resources{MemoryBytes: int64(rng.Intn(9)) * 256 * mib, NanoCPUs: int64(rng.Intn(5)) * 5e8},
			},
		}
		switch rng.Intn(10) {
		case 0:
			p.Spec.Labels[MemLabel] = pick("1G", "512M", "3G", "0.5G", "12X", "")
		case 1:
			p.Spec.Labels[ZoneLabel] = pick("z1", "z2", "z4")
		case 2:
			p.Spec.PinnedNode, p.Spec.PinnedBy = fmt.Sprintf("n%03d", rng.Intn(names)), pick("", "volume v (lv2)")
		}
		if rng.Intn(2) == 0 {
			p.Spec.Labels[ServiceLabel] = pick("web", "db", "cache")
		}
		return p
	}
	for i := range rng.Intn(maxPods) {
		pending = append(pending, newPod(i))
	}
	// Placed pods, within what their nodes have.
	mem, cpu := map[string]int64{}, map[string]int64{}
	for _, n := range nodes {
		if _, ok := mem[n.Name]; !ok {
			mem[n.Name], cpu[n.Name] = n.MemoryBytes, int64(n.CPUs)*1e9
		}
	}
	for i := range rng.Intn(maxPods / 3) {
		p := newPod(100000 + i)
		r := placedRequest(p.Spec)
		n := nodes[rng.Intn(len(nodes))].Name
		if r.MemoryBytes <= mem[n] && r.NanoCPUs <= cpu[n] {
			p.Node = n
			mem[n] -= r.MemoryBytes
			cpu[n] -= r.NanoCPUs
			placed = append(placed, p)
		}
	}
	if rng.Intn(20) == 0 {
		nodes = nil
	}
	return nodes, pending, placed
}

// fits is the scheduler's rule for one pod and one node, written as
// plainly as possible.
func fitsPlain(p types.Pod, r Request, n types.Node, mem, cpu int64) bool {
	if p.Spec.PinnedNode != "" && p.Spec.PinnedNode != n.Name {
		return false
	}
	if z := p.Spec.Labels[ZoneLabel]; z != "" && n.Labels["zone"] != z {
		return false
	}
	if p.Spec.Arch != "" && n.Arch != "" && p.Spec.Arch != n.Arch {
		return false
	}
	if p.Spec.Runtime != "" && !slices.Contains(n.Runtimes, p.Spec.Runtime) {
		return false
	}
	return n.Ready && r.MemoryBytes <= mem && (r.NanoCPUs == 0 || r.NanoCPUs <= cpu)
}

// placePlain is the placement rule as a scan of every node for every pod:
// fewest replicas of the pod's service, then least memory free, then name.
func placePlain(pending []types.Pod, nodes []types.Node, placed []types.Pod) map[string]string {
	var list []types.Node
	mem, cpu := map[string]int64{}, map[string]int64{}
	for _, n := range nodes {
		if _, dup := mem[n.Name]; !dup {
			list = append(list, n)
			mem[n.Name], cpu[n.Name] = n.MemoryBytes, int64(n.CPUs)*1e9
		}
	}
	replicas := map[serviceKey]map[string]int{}
	count := func(p *types.Pod, node string) {
		if k := serviceOf(p); k.service != "" {
			if replicas[k] == nil {
				replicas[k] = map[string]int{}
			}
			replicas[k][node]++
		}
	}
	for _, p := range placed {
		if _, ok := mem[p.Node]; ok {
			r := placedRequest(p.Spec)
			mem[p.Node] -= r.MemoryBytes
			cpu[p.Node] -= r.NanoCPUs
			count(&p, p.Node)
		}
	}
	assign := map[string]string{}
	for _, p := range pending {
		if _, done := assign[p.ID]; done {
			continue
		}
		r, err := PodRequest(p.Spec)
		if err != nil {
			continue
		}
		best := -1
		for i, n := range list {
			if !fitsPlain(p, r, n, mem[n.Name], cpu[n.Name]) {
				continue
			}
			if best < 0 {
				best = i
				continue
			}
			b := list[best]
			k := serviceOf(&p)
			cn, cb := replicas[k][n.Name], replicas[k][b.Name]
			if cn < cb || cn == cb && (mem[n.Name] < mem[b.Name] || mem[n.Name] == mem[b.Name] && n.Name < b.Name) {
				best = i
			}
		}
		if best < 0 {
			assign[p.ID] = ""
			continue
		}
		n := list[best].Name
		assign[p.ID] = n
		mem[n] -= r.MemoryBytes
		cpu[n] -= r.NanoCPUs
		count(&p, n)
	}
	for id, n := range assign {
		if n == "" {
			delete(assign, id)
		}
	}
	return assign
}

// TestPlaceProperties checks, over random clusters: every pod is assigned
// or explained; no node gets more memory or CPU than it has; every
// assignment honours every constraint; a pod left out fits on no node
// even after the round; the plan is that of a plain scan of every node;
// the same input, in any order of nodes (of distinct names), gives the
// same plan.
func TestPlaceProperties(t *testing.T) {
	sizes := []struct{ rounds, nodes, pods int }{
		{2000, 12, 120}, // small: every corner of a class's order
		{30, 200, 2000}, // classes of several blocks (cpuMax)
	}
	if testing.Short() {
		sizes[0].rounds, sizes[1].rounds = 300, 10
	}
	for _, size := range sizes {
		t.Run(fmt.Sprintf("%d nodes", size.nodes), func(t *testing.T) {
			for seed := range size.rounds {
				checkProperties(t, int64(seed), size.nodes, size.pods)
			}
		})
	}
}

func checkProperties(t *testing.T, seed int64, maxNodes, maxPods int) {
	rng := rand.New(rand.NewSource(seed))
	nodes, pending, placed := randomCluster(rng, maxNodes, maxPods)
	plan, state := place(pending, nodes, placed)
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("seed %d: %s", seed, fmt.Sprintf(format, args...))
	}

	if err := state.check(); err != nil {
		fail("index: %v", err)
	}

	byName := map[string]types.Node{}
	for _, n := range nodes {
		if _, dup := byName[n.Name]; !dup {
			byName[n.Name] = n
		}
	}
	mem, cpu := map[string]int64{}, map[string]int64{}
	for name, n := range byName {
		mem[name], cpu[name] = n.MemoryBytes, int64(n.CPUs)*1e9
	}
	for _, p := range placed {
		if _, ok := byName[p.Node]; !ok {
			continue
		}
		r := placedRequest(p.Spec)
		mem[p.Node] -= r.MemoryBytes
		cpu[p.Node] -= r.NanoCPUs
	}
	seen := map[string]bool{}
	for _, p := range pending {
		if seen[p.ID] {
			continue
		}
		seen[p.ID] = true
		n, ok := plan.Assign[p.ID]
		why, explained := plan.Unschedulable[p.ID]
		if ok == explained {
			fail("pod %s: assigned %v (%s), explained %v (%q)", p.ID, ok, n, explained, why)
		}
		if explained {
			if why == "" {
				fail("pod %s: empty reason", p.ID)
			}
			continue
		}
		node, known := byName[n]
		r, err := PodRequest(p.Spec)
		if !known || err != nil {
			fail("pod %s on unknown node %q (request error %v)", p.ID, n, err)
		}
		if !fitsPlain(p, r, node, mem[n], cpu[n]) {
			fail("pod %s %+v on node %s %+v with %d memory and %d CPU free", p.ID, p.Spec, n, node, mem[n], cpu[n])
		}
		mem[n] -= r.MemoryBytes
		cpu[n] -= r.NanoCPUs
	}
	for n := range mem {
		if mem[n] < 0 || cpu[n] < 0 {
			fail("node %s overcommitted: %d memory and %d CPU free", n, mem[n], cpu[n])
		}
	}
	for id := range plan.Unschedulable {
		var p types.Pod
		for _, q := range pending {
			if q.ID == id {
				p = q
				break
			}
		}
		r, err := PodRequest(p.Spec)
		if err != nil {
			continue
		}
		for name, n := range byName {
			if fitsPlain(p, r, n, mem[name], cpu[name]) {
				fail("pod %s left out (%q) but fits %s after the round", id, plan.Unschedulable[id], name)
			}
		}
	}
	if want := placePlain(pending, nodes, placed); !reflect.DeepEqual(plan.Assign, want) {
		fail("plan differs from a plain scan:\n got %v\nwant %v", plan.Assign, want)
	}
	if len(byName) < len(nodes) {
		return // which of two nodes of one name counts depends on their order
	}
	shuffled := slices.Clone(nodes)
	rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	if again := Place(pending, shuffled, placed); !reflect.DeepEqual(plan, again) {
		fail("another order of the same nodes gives another plan")
	}
}

// check verifies the indexes against what they index: each class's
// order sorted, its cpuMax exact, each service group's levels counted
// from the replicas, its floor no higher than the fewest.
func (c *cluster) check() error {
	for k, cl := range c.classes {
		for i := 1; i < len(cl.order); i++ {
			if !c.before(cl.order[i-1], cl.order[i]) {
				return fmt.Errorf("class %v: order %v not sorted at %d", k, cl.order, i)
			}
		}
		for b := range cl.cpuMax {
			m := int64(-clampReq)
			for _, n := range cl.order[b*block : min((b+1)*block, len(cl.order))] {
				m = max(m, c.freeCPU[n])
			}
			if cl.cpuMax[b] != m {
				return fmt.Errorf("class %v: cpuMax[%d] = %d, want %d", k, b, cl.cpuMax[b], m)
			}
		}
	}
	for k, s := range c.services {
		for _, g := range s.groups {
			levels := map[int32]int32{}
			fewest := int32(-1)
			for _, n := range g.cl.order {
				levels[s.counts[n]]++
				if fewest < 0 || s.counts[n] < fewest {
					fewest = s.counts[n]
				}
			}
			for l, want := range levels {
				if int(l) >= len(g.levels) || g.levels[l] != want {
					return fmt.Errorf("service %v in class %v: levels %v, want %v", k, g.cl.key, g.levels, levels)
				}
			}
			if fewest >= 0 && g.floor() > fewest {
				return fmt.Errorf("service %v in class %v: floor %d above %d", k, g.cl.key, g.floor(), fewest)
			}
		}
	}
	return nil
}
