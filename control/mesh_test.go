package control

import (
	"testing"

	"github.com/macro-cloud/macro/types"
)

// TestMeshPods: a node's mesh view holds the running pods, with the
// addresses their own node reported, of the tenants it runs pods of, and
// nothing of the other tenants.
func TestMeshPods(t *testing.T) {
	s := NewState(nil, nil)
	put := func(id, tenant, node string, st *types.PodStatus) {
		p := &types.Pod{ID: id, Tenant: tenant, Namespace: "default", Name: "name-" + id, Node: node,
			Spec: types.PodSpec{Aliases: []string{"alias-" + id, "name-" + id}}}
		s.mu.Lock()
		s.putLocked(p, false)
		if st != nil {
			st.ID = id
			s.status[id] = *st
		}
		s.mu.Unlock()
	}
	running := func(node, v6 string) *types.PodStatus {
		return &types.PodStatus{Node: node, Phase: types.PhaseRunning, IPv6: v6, IPv4: "10.0.0.2"}
	}
	put("a1", "alice", "n1", running("n1", "fd00::a1"))
	put("a2", "alice", "n2", running("n2", "fd00::a2"))
	put("a3", "alice", "n2", &types.PodStatus{Node: "n2", Phase: types.PhaseExited, IPv6: "fd00::a3"}) // stopped
	put("a4", "alice", "n3", running("n2", "fd00::a4"))                                                // moved, old node's report
	put("a5", "alice", "n3", running("n3", ""))                                                        // no network
	put("a6", "alice", "", nil)                                                                        // pending
	put("b2", "bob", "n2", running("n2", "fd00::b2"))

	for _, tt := range []struct {
		node string
		want []string
	}{
		{"n1", []string{"a1", "a2"}},
		{"n2", []string{"a1", "a2", "b2"}},
		{"n9", nil},
	} {
		got := s.meshPods(tt.node)
		var ids []string
		for _, p := range got {
			ids = append(ids, p.ID)
		}
		if len(ids) != len(tt.want) {
			t.Fatalf("meshPods(%s) = %v, want %v", tt.node, ids, tt.want)
		}
		for i := range ids {
			if ids[i] != tt.want[i] {
				t.Fatalf("meshPods(%s) = %v, want %v", tt.node, ids, tt.want)
			}
		}
	}
	p := s.meshPods("n1")[1]
	if p.Node != "n2" || p.IPv6 != "fd00::a2" || p.IPv4 != "10.0.0.2" || len(p.Names) != 2 || p.Names[0] != "name-a2" || p.Names[1] != "alias-a2" {
		t.Fatalf("a2 in n1's view: %+v", p)
	}
	if p.Overlays != nil {
		t.Fatalf("a2 has overlays: %+v", p.Overlays)
	}
	// Overlay addresses (the API's choice, in the spec) come along.
	s.mu.Lock()
	a2 := *s.pods["a2"]
	a2.Spec.Networks = map[string]types.Endpoint{"back": {NetworkID: "net1", IPv4Address: "192.168.0.10", Subnet: "192.168.0.0/24"}}
	s.putLocked(&a2, false)
	s.mu.Unlock()
	if p := s.meshPods("n1")[1]; p.ID != "a2" || len(p.Overlays) != 1 || p.Overlays["net1"] != "192.168.0.10" {
		t.Fatalf("a2's overlays in n1's view: %+v", p)
	}
}
