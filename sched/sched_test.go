package sched

import (
	"fmt"
	"math/rand"
	"testing"

	"github.com/macro-cloud/macro/types"
)

const gib = 1 << 30

func pod(id string, mem int64, labels map[string]string) types.Pod {
	return types.Pod{ID: id, Spec: types.PodSpec{Runtime: "sandbox", Labels: labels, Resources: types.Resources{MemoryBytes: mem}}}
}

func node(name string, mem int64, zone string) types.Node {
	return types.Node{Name: name, Ready: true, CPUs: 4, MemoryBytes: mem, Runtimes: []string{"sandbox", "gvisor"}, Labels: map[string]string{"zone": zone}}
}

func TestPlace(t *testing.T) {
	tests := []struct {
		name    string
		pending []types.Pod
		nodes   []types.Node
		placed  []types.Pod
		assign  map[string]string
		reasons map[string]string
	}{
		{
			name:    "best fit picks the fullest node that fits",
			pending: []types.Pod{pod("a", 1*gib, nil)},
			nodes:   []types.Node{node("n1", 8*gib, "z1"), node("n2", 2*gib, "z1")},
			assign:  map[string]string{"a": "n2"},
		},
		{
			name:    "capacity counts placed pods",
			pending: []types.Pod{pod("a", 2*gib, nil)},
			nodes:   []types.Node{node("n1", 4*gib, "z1"), node("n2", 4*gib, "z1")},
			placed:  []types.Pod{{ID: "x", Node: "n1", Spec: types.PodSpec{Resources: types.Resources{MemoryBytes: 3 * gib}}}},
			assign:  map[string]string{"a": "n2"},
		},
		{
			name:    "zone label is honoured",
			pending: []types.Pod{pod("a", 0, map[string]string{ZoneLabel: "z2"})},
			nodes:   []types.Node{node("n1", 8*gib, "z1"), node("n2", 8*gib, "z2")},
			assign:  map[string]string{"a": "n2"},
		},
		{
			name:    "unknown zone is explained",
			pending: []types.Pod{pod("a", 0, map[string]string{ZoneLabel: "mars"})},
			nodes:   []types.Node{node("n1", 8*gib, "z1")},
			reasons: map[string]string{"a": "no node in zone mars"},
		},
		{
			name:    "too big is explained",
			pending: []types.Pod{pod("a", 16*gib, nil)},
			nodes:   []types.Node{node("n1", 8*gib, "z1")},
			reasons: map[string]string{"a": "no node has 16 GiB of memory free"},
		},
		{
			name:    "no nodes",
			pending: []types.Pod{pod("a", 0, nil)},
			reasons: map[string]string{"a": "no nodes are registered"},
		},
		{
			name:    "runtime must be offered",
			pending: []types.Pod{{ID: "a", Spec: types.PodSpec{Runtime: "microvm"}}},
			nodes:   []types.Node{node("n1", 8*gib, "z1")},
			reasons: map[string]string{"a": "no node offers runtime microvm"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan := Place(tt.pending, tt.nodes, tt.placed)
			if fmt.Sprint(plan.Assign) != fmt.Sprint(orEmpty(tt.assign)) {
				t.Errorf("assign = %v, want %v", plan.Assign, tt.assign)
			}
			if fmt.Sprint(plan.Unschedulable) != fmt.Sprint(orEmpty(tt.reasons)) {
				t.Errorf("unschedulable = %v, want %v", plan.Unschedulable, tt.reasons)
			}
		})
	}
}

func orEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// TestPlaceNeverOvercommits is a property test: over random clusters and
// pods, no node ever gets more memory or CPU than it has, and every zone
// constraint holds.
func TestPlaceNeverOvercommits(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for round := 0; round < 200; round++ {
		var nodes []types.Node
		for i := 0; i < 1+rng.Intn(8); i++ {
			nodes = append(nodes, node(fmt.Sprintf("n%d", i), int64(1+rng.Intn(16))*gib, fmt.Sprintf("z%d", rng.Intn(3))))
		}
		var pending []types.Pod
		for i := 0; i < rng.Intn(100); i++ {
			p := pod(fmt.Sprintf("p%d", i), int64(rng.Intn(4096))<<20, nil)
			p.Spec.Resources.NanoCPUs = int64(rng.Intn(3)) * 5e8
			if rng.Intn(4) == 0 {
				p.Spec.Labels = map[string]string{ZoneLabel: fmt.Sprintf("z%d", rng.Intn(4))}
			}
			pending = append(pending, p)
		}
		plan := Place(pending, nodes, nil)
		mem, cpu := map[string]int64{}, map[string]int64{}
		byName := map[string]types.Node{}
		for _, n := range nodes {
			byName[n.Name] = n
		}
		for _, p := range pending {
			n, ok := plan.Assign[p.ID]
			_, why := plan.Unschedulable[p.ID]
			if ok == why {
				t.Fatalf("pod %s must be either assigned or explained", p.ID)
			}
			if !ok {
				continue
			}
			mem[n] += p.Spec.Resources.MemoryBytes
			cpu[n] += p.Spec.Resources.NanoCPUs
			if z := p.Spec.Labels[ZoneLabel]; z != "" && byName[n].Labels["zone"] != z {
				t.Fatalf("pod %s in zone %s placed on %s", p.ID, z, n)
			}
		}
		for n, m := range mem {
			if m > byName[n].MemoryBytes || cpu[n] > int64(byName[n].CPUs)*1e9 {
				t.Fatalf("node %s overcommitted: mem %d cpu %d", n, m, cpu[n])
			}
		}
	}
}

func BenchmarkPlace(b *testing.B) {
	var nodes []types.Node
	for i := 0; i < 1000; i++ {
		nodes = append(nodes, node(fmt.Sprintf("n%04d", i), 64*gib, "z1"))
	}
	pending := make([]types.Pod, 1000)
	for i := range pending {
		pending[i] = pod(fmt.Sprintf("p%d", i), 256<<20, nil)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		Place(pending, nodes, nil)
	}
}
