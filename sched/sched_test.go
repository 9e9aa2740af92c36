package sched

import (
	"fmt"
	"strings"
	"testing"

	"github.com/macro-cloud/macro/types"
)

const (
	mib = 1 << 20
	gib = 1 << 30
)

func pod(id string, mem int64, labels map[string]string) types.Pod {
	return types.Pod{ID: id, Tenant: "t", Namespace: "ns", Spec: types.PodSpec{Runtime: "sandbox", Labels: labels, Resources: types.Resources{MemoryBytes: mem}}}
}

func node(name string, mem int64, zone string) types.Node {
	return types.Node{Name: name, Arch: "amd64", Ready: true, CPUs: 4, MemoryBytes: mem, Runtimes: []string{"sandbox", "gvisor"}, Labels: map[string]string{"zone": zone}}
}

// with returns a copy of p changed by f.
func with[T any](v T, f func(*T)) T {
	f(&v)
	return v
}

func replica(id, service string) types.Pod {
	return pod(id, gib, map[string]string{ServiceLabel: service})
}

func TestPlace(t *testing.T) {
	notReady := func(n *types.Node) { n.Ready = false }
	arm := func(n *types.Node) { n.Arch = "arm64" }
	sandboxOnly := func(n *types.Node) { n.Runtimes = []string{"sandbox"} }
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
			nodes:   []types.Node{node("n1", 8*gib, "z1"), node("n2", 2*gib, "z1"), node("n3", 512*mib, "z1")},
			assign:  map[string]string{"a": "n2"},
		},
		{
			name:    "ties break by name, whatever the order of the nodes",
			pending: []types.Pod{pod("a", 1*gib, nil)},
			nodes:   []types.Node{node("n2", 8*gib, "z1"), node("n1", 8*gib, "z1")},
			assign:  map[string]string{"a": "n1"},
		},
		{
			name:    "best fit fills a node before the next",
			pending: []types.Pod{pod("a", 3*gib, nil), pod("b", 3*gib, nil), pod("c", 3*gib, nil)},
			nodes:   []types.Node{node("n1", 8*gib, "z1"), node("n2", 8*gib, "z1")},
			assign:  map[string]string{"a": "n1", "b": "n1", "c": "n2"},
		},
		{
			name:    "capacity counts placed pods",
			pending: []types.Pod{pod("a", 2*gib, nil)},
			nodes:   []types.Node{node("n1", 4*gib, "z1"), node("n2", 4*gib, "z1")},
			placed:  []types.Pod{with(pod("x", 3*gib, nil), func(p *types.Pod) { p.Node = "n1" })},
			assign:  map[string]string{"a": "n2"},
		},
		{
			name:    "placed pods without a limit count 256 MiB",
			pending: []types.Pod{pod("a", 1*gib, nil)},
			nodes:   []types.Node{node("n1", 1*gib+255*mib, "z1")},
			placed:  []types.Pod{with(pod("x", 0, nil), func(p *types.Pod) { p.Node = "n1" })},
			reasons: map[string]string{"a": "no node has 1 GiB of memory free"},
		},
		{
			name:    "a pod without a limit counts 256 MiB",
			pending: []types.Pod{pod("a", 0, nil)},
			nodes:   []types.Node{node("n1", 200*mib, "z1")},
			reasons: map[string]string{"a": "no node has 256 MiB of memory free"},
		},
		{
			name:    "placed pods on nodes that are gone use nothing",
			pending: []types.Pod{pod("a", 4*gib, nil)},
			nodes:   []types.Node{node("n1", 4*gib, "z1")},
			placed:  []types.Pod{with(pod("x", 4*gib, nil), func(p *types.Pod) { p.Node = "gone" })},
			assign:  map[string]string{"a": "n1"},
		},
		{
			name:    "kr.res.mem asks for more than --memory",
			pending: []types.Pod{pod("a", 1*gib, map[string]string{MemLabel: "4G"})},
			nodes:   []types.Node{node("n1", 2*gib, "z1")},
			reasons: map[string]string{"a": "no node has 4 GiB of memory free"},
		},
		{
			name:    "kr.res.mem without --memory",
			pending: []types.Pod{pod("a", 0, map[string]string{MemLabel: "1536M"}), pod("b", 0, map[string]string{MemLabel: "1.5gib"})},
			nodes:   []types.Node{node("n1", 2*gib, "z1"), node("n2", 1*gib, "z1")},
			assign:  map[string]string{"a": "n1"},
			reasons: map[string]string{"b": "no node has 1.5 GiB of memory free"},
		},
		{
			name:    "--memory larger than kr.res.mem wins",
			pending: []types.Pod{pod("a", 3*gib, map[string]string{MemLabel: "512M"})},
			nodes:   []types.Node{node("n1", 2*gib, "z1")},
			reasons: map[string]string{"a": "no node has 3 GiB of memory free"},
		},
		{
			name:    "a bad kr.res.mem is the reason",
			pending: []types.Pod{pod("a", 0, map[string]string{MemLabel: "4X"}), pod("b", 0, map[string]string{MemLabel: "512"})},
			nodes:   []types.Node{node("n1", 8*gib, "z1")},
			reasons: map[string]string{
				"a": `label kr.res.mem="4X": want a size with a unit, such as 512M or 4G (binary units: K, M, G, T)`,
				"b": `label kr.res.mem="512": want a size with a unit, such as 512M or 4G (binary units: K, M, G, T)`,
			},
		},
		{
			name: "CPU is packed too",
			pending: []types.Pod{
				with(pod("a", gib, nil), func(p *types.Pod) { p.Spec.Resources.NanoCPUs = 3e9 }),
				with(pod("b", gib, nil), func(p *types.Pod) { p.Spec.Resources.NanoCPUs = 1.5e9 }),
			},
			nodes:   []types.Node{node("n1", 8*gib, "z1")},
			assign:  map[string]string{"a": "n1"},
			reasons: map[string]string{"b": "no node has 1.5 CPUs free"},
		},
		{
			name:    "a pod without a CPU request fits a node whose CPUs are taken",
			pending: []types.Pod{pod("a", gib, nil)},
			nodes:   []types.Node{node("n1", 8*gib, "z1")},
			placed:  []types.Pod{with(pod("x", gib, nil), func(p *types.Pod) { p.Node, p.Spec.Resources.NanoCPUs = "n1", 4e9 })},
			assign:  map[string]string{"a": "n1"},
		},
		{
			name:    "CPU decides between nodes with memory",
			pending: []types.Pod{with(pod("a", gib, nil), func(p *types.Pod) { p.Spec.Resources.NanoCPUs = 2e9 })},
			nodes:   []types.Node{node("n1", 2*gib, "z1"), node("n2", 8*gib, "z1")},
			placed:  []types.Pod{with(pod("x", gib, nil), func(p *types.Pod) { p.Node, p.Spec.Resources.NanoCPUs = "n1", 3e9 })},
			assign:  map[string]string{"a": "n2"},
		},
		{
			name:    "memory and CPU both short",
			pending: []types.Pod{with(pod("a", 4*gib, nil), func(p *types.Pod) { p.Spec.Resources.NanoCPUs = 8e9 })},
			nodes:   []types.Node{node("n1", 2*gib, "z1"), with(node("n2", 8*gib, "z1"), func(n *types.Node) { n.CPUs = 2 })},
			reasons: map[string]string{"a": "no node has 4 GiB of memory and 8 CPUs free (2 nodes: 1 lacks memory, 1 lacks CPU)"},
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
			nodes:   []types.Node{node("n1", 8*gib, "z1"), node("n2", 8*gib, "z2"), node("n3", 8*gib, "z1")},
			reasons: map[string]string{"a": "no node is in zone mars (nodes are in zones z1 and z2)"},
		},
		{
			name:    "unknown zone, one node",
			pending: []types.Pod{pod("a", 0, map[string]string{ZoneLabel: "mars"})},
			nodes:   []types.Node{node("n1", 8*gib, "default")},
			reasons: map[string]string{"a": "no node is in zone mars (the node is in zone default)"},
		},
		{
			name:    "unknown zone, nodes without zones",
			pending: []types.Pod{pod("a", 0, map[string]string{ZoneLabel: "mars"})},
			nodes:   []types.Node{node("n1", 8*gib, ""), node("n2", 8*gib, "")},
			reasons: map[string]string{"a": "no node is in zone mars (no node has a zone label)"},
		},
		{
			name:    "unknown zone, some nodes without zones",
			pending: []types.Pod{pod("a", 0, map[string]string{ZoneLabel: "mars"})},
			nodes:   []types.Node{node("n1", 8*gib, ""), node("n2", 8*gib, "z1")},
			reasons: map[string]string{"a": "no node is in zone mars (nodes are in zone z1, or have no zone label)"},
		},
		{
			name:    "a full zone, counted over its nodes",
			pending: []types.Pod{pod("a", 4*gib, map[string]string{ZoneLabel: "eu-1"})},
			nodes: []types.Node{
				node("n1", 2*gib, "eu-1"), node("n2", 3*gib, "eu-1"), with(node("n3", 8*gib, "eu-1"), notReady),
				node("n4", 8*gib, "eu-2"),
			},
			reasons: map[string]string{"a": "no node in zone eu-1 has 4 GiB of memory free (3 nodes in zone eu-1: 2 lack memory, 1 is not ready)"},
		},
		{
			name:    "not ready nodes take nothing",
			pending: []types.Pod{pod("a", 0, nil)},
			nodes:   []types.Node{with(node("n1", 8*gib, "z1"), notReady), with(node("n2", 8*gib, "z1"), notReady)},
			reasons: map[string]string{"a": "no node is ready"},
		},
		{
			name: "architecture is honoured; a node that did not say takes any",
			pending: []types.Pod{
				with(pod("a", gib, nil), func(p *types.Pod) { p.Spec.Arch = "arm64" }),
				with(pod("b", gib, nil), func(p *types.Pod) { p.Spec.Arch = "riscv64" }),
			},
			nodes:  []types.Node{node("n1", 2*gib, "z1"), with(node("n2", 8*gib, "z1"), arm), with(node("n3", 4*gib, "z1"), func(n *types.Node) { n.Arch = "" })},
			assign: map[string]string{"a": "n3", "b": "n3"},
		},
		{
			name:    "no node of the architecture",
			pending: []types.Pod{with(pod("a", gib, nil), func(p *types.Pod) { p.Spec.Arch = "arm64" })},
			nodes:   []types.Node{node("n1", 8*gib, "z1"), node("n2", 8*gib, "z1")},
			reasons: map[string]string{"a": "no node is arm64"},
		},
		{
			name:    "full nodes of the architecture",
			pending: []types.Pod{with(pod("a", 4*gib, nil), func(p *types.Pod) { p.Spec.Arch = "arm64" })},
			nodes:   []types.Node{node("n1", 8*gib, "z1"), node("n2", 8*gib, "z1"), with(node("n3", 2*gib, "z1"), arm)},
			reasons: map[string]string{"a": "no arm64 node has 4 GiB of memory free (3 nodes: 1 lacks memory, 2 are not arm64)"},
		},
		{
			name:    "runtime must be offered",
			pending: []types.Pod{{ID: "a", Spec: types.PodSpec{Runtime: "microvm"}}},
			nodes:   []types.Node{node("n1", 8*gib, "z1")},
			reasons: map[string]string{"a": "no node offers runtime microvm"},
		},
		{
			name:    "runtime picks the node",
			pending: []types.Pod{with(pod("a", gib, nil), func(p *types.Pod) { p.Spec.Runtime = "gvisor" })},
			nodes:   []types.Node{with(node("n1", 2*gib, "z1"), sandboxOnly), node("n2", 8*gib, "z1")},
			assign:  map[string]string{"a": "n2"},
		},
		{
			name:    "several checks fail, each node counted once",
			pending: []types.Pod{with(pod("a", gib, map[string]string{ZoneLabel: "z1"}), func(p *types.Pod) { p.Spec.Runtime = "gvisor" })},
			nodes: []types.Node{
				with(node("n1", 8*gib, "z1"), sandboxOnly), with(node("n2", 8*gib, "z1"), sandboxOnly),
				with(with(node("n3", 8*gib, "z1"), sandboxOnly), notReady), node("n4", 8*gib, "z2"),
			},
			reasons: map[string]string{"a": "no node in zone z1 is ready and offers runtime gvisor (3 nodes in zone z1: 1 is not ready, 2 lack runtime gvisor)"},
		},
		{
			name:    "runtime lacking beside memory",
			pending: []types.Pod{with(pod("a", 4*gib, nil), func(p *types.Pod) { p.Spec.Runtime = "gvisor" })},
			nodes:   []types.Node{with(node("n1", 8*gib, "z1"), sandboxOnly), node("n2", 2*gib, "z1")},
			reasons: map[string]string{"a": "no node with runtime gvisor has 4 GiB of memory free (2 nodes: 1 lacks memory, 1 lacks runtime gvisor)"},
		},
		{
			name:    "no nodes",
			pending: []types.Pod{pod("a", 0, nil)},
			reasons: map[string]string{"a": "no nodes are registered"},
		},
		{
			name:    "a pinned pod goes on its node, not the best fit",
			pending: []types.Pod{with(pod("a", gib, nil), func(p *types.Pod) { p.Spec.PinnedNode, p.Spec.PinnedBy = "n1", "volume db (lv2)" })},
			nodes:   []types.Node{node("n1", 8*gib, "z1"), node("n2", 2*gib, "z1")},
			assign:  map[string]string{"a": "n1"},
		},
		{
			name: "a pinned pod whose node cannot take it stays pending",
			pending: []types.Pod{
				with(pod("gone", gib, nil), func(p *types.Pod) { p.Spec.PinnedNode, p.Spec.PinnedBy = "n9", "volume db (lv2)" }),
				with(pod("down", gib, nil), func(p *types.Pod) { p.Spec.PinnedNode, p.Spec.PinnedBy = "n3", "volume db (lv2)" }),
				with(pod("full", 4*gib, nil), func(p *types.Pod) { p.Spec.PinnedNode, p.Spec.PinnedBy = "n2", "volume db (lv2)" }),
				with(pod("cpu", gib, nil), func(p *types.Pod) { p.Spec.PinnedNode, p.Spec.Resources.NanoCPUs = "n2", 6e9 }),
				with(pod("zone", gib, map[string]string{ZoneLabel: "z2"}), func(p *types.Pod) { p.Spec.PinnedNode = "n1" }),
				with(pod("arch", gib, nil), func(p *types.Pod) { p.Spec.PinnedNode, p.Spec.Arch = "n1", "arm64" }),
				with(pod("rt", gib, nil), func(p *types.Pod) { p.Spec.PinnedNode, p.Spec.Runtime = "n1", "microvm" }),
			},
			nodes: []types.Node{node("n1", 8*gib, "z1"), node("n2", 2*gib, "z1"), with(node("n3", 8*gib, "z1"), notReady)},
			reasons: map[string]string{
				"gone": "volume db (lv2) pins it to node n9, which is not registered",
				"down": "volume db (lv2) pins it to node n3, which is not ready",
				"full": "volume db (lv2) pins it to node n2, which has 2 GiB of memory free, not 4 GiB",
				"cpu":  "pinned to node n2, which has 4 CPUs free, not 6 CPUs",
				"zone": "pinned to node n1, which is in zone z1, not z2",
				"arch": "pinned to node n1, which is amd64, not arm64",
				"rt":   "pinned to node n1, which does not offer runtime microvm",
			},
		},
		{
			name:    "replicas of a service spread across nodes",
			pending: []types.Pod{replica("a", "web"), replica("b", "web"), replica("c", "web"), pod("d", gib, nil)},
			nodes:   []types.Node{node("n1", 8*gib, "z1"), node("n2", 8*gib, "z1"), node("n3", 8*gib, "z1")},
			assign:  map[string]string{"a": "n1", "b": "n2", "c": "n3", "d": "n1"},
		},
		{
			name:    "more replicas than nodes: even counts, then best fit",
			pending: []types.Pod{replica("a", "web"), replica("b", "web"), replica("c", "web"), replica("d", "web")},
			nodes:   []types.Node{node("n1", 8*gib, "z1"), node("n2", 16*gib, "z1")},
			assign:  map[string]string{"a": "n1", "b": "n2", "c": "n1", "d": "n2"},
		},
		{
			name:    "placed replicas count",
			pending: []types.Pod{replica("a", "web")},
			nodes:   []types.Node{node("n1", 8*gib, "z1"), node("n2", 16*gib, "z1")},
			placed:  []types.Pod{with(replica("x", "web"), func(p *types.Pod) { p.Node = "n1" })},
			assign:  map[string]string{"a": "n2"},
		},
		{
			name: "services of other namespaces and tenants do not spread each other",
			pending: []types.Pod{
				replica("a", "web"),
				with(replica("b", "web"), func(p *types.Pod) { p.Namespace = "other" }),
				with(replica("c", "web"), func(p *types.Pod) { p.Tenant = "other" }),
			},
			nodes:  []types.Node{node("n1", 8*gib, "z1"), node("n2", 8*gib, "z1")},
			assign: map[string]string{"a": "n1", "b": "n1", "c": "n1"},
		},
		{
			name:    "spread prefers a node that fits over an empty one that does not",
			pending: []types.Pod{with(replica("a", "web"), func(p *types.Pod) { p.Spec.Resources.MemoryBytes = 4 * gib })},
			nodes:   []types.Node{node("n1", 8*gib, "z1"), node("n2", 2*gib, "z1")},
			placed:  []types.Pod{with(replica("x", "web"), func(p *types.Pod) { p.Node = "n1" })},
			assign:  map[string]string{"a": "n1"},
		},
		{
			name:    "a pod listed twice is placed once",
			pending: []types.Pod{pod("a", 3*gib, nil), pod("a", 3*gib, nil), pod("b", 3*gib, nil)},
			nodes:   []types.Node{node("n1", 6*gib, "z1")},
			assign:  map[string]string{"a": "n1", "b": "n1"},
		},
		{
			name:    "duplicate node names count once",
			pending: []types.Pod{pod("a", 3*gib, nil), pod("b", 3*gib, nil)},
			nodes:   []types.Node{node("n1", 4*gib, "z1"), node("n1", 4*gib, "z1")},
			assign:  map[string]string{"a": "n1"},
			reasons: map[string]string{"b": "no node has 3 GiB of memory free"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan := Place(tt.pending, tt.nodes, tt.placed)
			if fmt.Sprint(plan.Assign) != fmt.Sprint(orEmpty(tt.assign)) {
				t.Errorf("assign = %v, want %v", plan.Assign, tt.assign)
			}
			if fmt.Sprint(plan.Unschedulable) != fmt.Sprint(orEmpty(tt.reasons)) {
				t.Errorf("unschedulable:\n got %q\nwant %q", plan.Unschedulable, orEmpty(tt.reasons))
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

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  string
	}{
		{"512M", 512 * mib, ""},
		{"4G", 4 * gib, ""},
		{"4g", 4 * gib, ""},
		{"4GiB", 4 * gib, ""},
		{"4gb", 4 * gib, ""},
		{"4Gi", 4 * gib, ""},
		{"1.5G", 1536 * mib, ""},
		{"0.5K", 512, ""},
		{"1T", 1 << 40, ""},
		{"1024T", 1 << 50, ""},
		{"1025T", 0, "more than 1 PiB"},
		{"99999999999999999999999G", 0, "more than 1 PiB"},
		{"0M", 0, "must be more than zero"},
		{"0.0001K", 0, "want a size"},
		{"512", 0, "want a size"},
		{"", 0, "want a size"},
		{"G", 0, "want a size"},
		{"-1G", 0, "want a size"},
		{"+1G", 0, "want a size"},
		{" 1G", 0, "want a size"},
		{"1G ", 0, "want a size"},
		{"1 G", 0, "want a size"},
		{"1.G", 0, "want a size"},
		{".5G", 0, "want a size"},
		{"1.2.3G", 0, "want a size"},
		{"1P", 0, "want a size"},
		{"1GG", 0, "want a size"},
		{"1e3M", 0, "want a size"},
		{"٣G", 0, "want a size"},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if tt.err == "" && (err != nil || got != tt.want) {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
		if tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("ParseSize(%q) = %d, %v; want error %q", tt.in, got, err, tt.err)
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"512M", "4G", "1.5GiB", "0.001k", "1024T", "512", "", "-1G", "1.2.3G", "9999999999999999999T"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err != nil {
			if n != 0 || err.Error() == "" {
				t.Fatalf("ParseSize(%q) = %d, %v", s, n, err)
			}
			return
		}
		if n <= 0 || n > maxSize {
			t.Fatalf("ParseSize(%q) = %d, out of range", s, n)
		}
		// The label goes through PodRequest the same way.
		r, err := PodRequest(types.PodSpec{Labels: map[string]string{MemLabel: s}})
		if err != nil || r.MemoryBytes != n {
			t.Fatalf("PodRequest with %s=%q: %+v, %v", MemLabel, s, r, err)
		}
	})
}

func TestHumanText(t *testing.T) {
	for in, want := range map[int64]string{
		100: "100 B", 1024: "1 KiB", 1536 * mib: "1.5 GiB", 4 * gib: "4 GiB", gib + 1: "1 GiB", 1 << 50: "1 PiB", 1<<62 + 1<<61: "6 EiB",
	} {
		if got := humanBytes(in); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[int64]string{1e9: "1 CPU", 5e8: "0.5 CPUs", 2e9: "2 CPUs", 125e7: "1.25 CPUs"} {
		if got := humanCPUs(in); got != want {
			t.Errorf("humanCPUs(%d) = %q, want %q", in, got, want)
		}
	}
}

func TestPodMemory(t *testing.T) {
	for _, tt := range []struct {
		spec types.PodSpec
		want int64
	}{
		{types.PodSpec{}, types.DefaultPodMemory},
		{types.PodSpec{Resources: types.Resources{MemoryBytes: gib}}, gib},
		{types.PodSpec{Labels: map[string]string{MemLabel: "128M"}}, 128 * mib},
		{types.PodSpec{Labels: map[string]string{MemLabel: "2G"}, Resources: types.Resources{MemoryBytes: gib}}, 2 * gib},
		{types.PodSpec{Labels: map[string]string{MemLabel: "512M"}, Resources: types.Resources{MemoryBytes: gib}}, gib},
		{types.PodSpec{Labels: map[string]string{MemLabel: "lots"}}, types.DefaultPodMemory},
		{types.PodSpec{Labels: map[string]string{MemLabel: "lots"}, Resources: types.Resources{MemoryBytes: gib}}, gib},
	} {
		if got := PodMemory(tt.spec); got != tt.want {
			t.Errorf("PodMemory(%+v) = %d, want %d", tt.spec, got, tt.want)
		}
	}
}
