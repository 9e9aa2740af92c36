package volume

import (
	"fmt"
	"slices"
	"testing"

	"github.com/macro-cloud/macro/types"
)

func TestCopies(t *testing.T) {
	for _, c := range []struct {
		d       string
		reduced bool
		want    int
	}{{"nfs", false, 3}, {"gfs", false, 3}, {"nfs", true, 2}, {"gfs", true, 2}, {"lv2", false, 1}, {"local", true, 1}} {
		if got := Copies(c.d, c.reduced); got != c.want {
			t.Errorf("Copies(%s, %v) = %d, want %d", c.d, c.reduced, got, c.want)
		}
	}
}

func TestPlaceReplicas(t *testing.T) {
	nodes := []ReplicaNode{
		{Name: "e", Zone: "b", Ready: true},
		{Name: "a", Zone: "a", Ready: true},
		{Name: "d", Zone: "a", Ready: false},
		{Name: "c", Zone: "a", Ready: true},
		{Name: "b", Zone: "b", Ready: true},
	}
	for _, c := range []struct {
		primary string
		copies  int
		have    []string
		nodes   []ReplicaNode
		want    string
	}{
		// The primary's zone first, then by name; never a node not ready.
		{"a", 3, nil, nodes, "[b c]"},
		{"a", 2, nil, nodes, "[c]"},
		{"b", 3, nil, nodes, "[a e]"},
		{"a", 1, nil, nodes, "[]"},
		// Fewer nodes than copies: what there is.
		{"a", 3, nil, nodes[:2], "[e]"},
		{"a", 3, nil, nodes[1:2], "[]"},
		// Replacing a lost replica keeps the others.
		{"a", 3, []string{"e"}, nodes, "[c e]"},
		{"a", 3, []string{"b", "c"}, nodes, "[b c]"},
	} {
		got := fmt.Sprint(PlaceReplicas(c.primary, c.nodes, c.copies, c.have))
		if got != c.want {
			t.Errorf("PlaceReplicas(%s, %d, %v) = %s, want %s", c.primary, c.copies, c.have, got, c.want)
		}
	}
}

func TestPromote(t *testing.T) {
	for _, c := range []struct {
		name string
		rs   []ReplicaStatus
		want string
	}{
		{"the most up to date", []ReplicaStatus{{"b", ReplicaInSync, true, 7}, {"c", ReplicaInSync, true, 8}}, "c"},
		{"equal: by name", []ReplicaStatus{{"c", ReplicaInSync, true, 8}, {"b", ReplicaInSync, true, 8}}, "b"},
		{"never a stale one, however high", []ReplicaStatus{{"b", ReplicaStale, true, 9}, {"c", ReplicaInSync, true, 3}}, "c"},
		{"never one catching up", []ReplicaStatus{{"b", ReplicaCatchingUp, true, 9}}, ""},
		{"never a dead one", []ReplicaStatus{{"b", ReplicaInSync, false, 9}, {"c", ReplicaInSync, true, 1}}, "c"},
		{"none", nil, ""},
	} {
		got, ok := Promote(c.rs)
		if got != c.want || ok != (c.want != "") {
			t.Errorf("%s: Promote = %q %v, want %q", c.name, got, ok, c.want)
		}
	}
}

func TestReplaceReplica(t *testing.T) {
	nodes := []ReplicaNode{
		{Name: "e", Zone: "b", Ready: true},
		{Name: "a", Zone: "a", Ready: true},
		{Name: "d", Zone: "a", Ready: false},
		{Name: "c", Zone: "a", Ready: true},
		{Name: "b", Zone: "b", Ready: true},
		{Name: "f", Zone: "", Ready: true},
	}
	for _, c := range []struct {
		name    string
		zone    string
		holding []string
		nodes   []ReplicaNode
		want    string
	}{
		{"the zone first", "b", []string{"a", "c", "d"}, nodes, "b"},
		{"then by name", "a", []string{"a", "d"}, nodes, "c"},
		{"another zone when the zone has no free node", "a", []string{"a", "c", "d"}, nodes, "b"},
		{"never a node that holds a copy, never one down", "b", []string{"b", "e", "a", "c"}, nodes, "f"},
		{"no zone: by name", "", []string{"a", "d"}, nodes, "f"},
		{"none free", "a", []string{"a", "b", "c", "d", "e", "f"}, nodes, ""},
		{"none ready", "a", nil, []ReplicaNode{{Name: "x", Zone: "a"}}, ""},
	} {
		got, ok := ReplaceReplica(c.zone, c.holding, c.nodes)
		if got != c.want || ok != (c.want != "") {
			t.Errorf("%s: ReplaceReplica(%q, %v) = %q %v, want %q", c.name, c.zone, c.holding, got, ok, c.want)
		}
	}
}

func TestPromoteIn(t *testing.T) {
	v := types.Volume{Name: "v", Node: "a", Epoch: 4, Replicas: []types.VolumeReplica{
		{Node: "b", State: ReplicaInSync}, {Node: "c", State: ReplicaInSync}, {Node: "d", State: ReplicaInSync}, {Node: "e", State: ReplicaSyncing}}}
	// b is ahead of c; d did not answer (down).
	if err := PromoteIn(&v, "b", map[string]uint64{"b": 9, "c": 8}); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprintf("%s %d %v", v.Node, v.Epoch, v.Replicas); got != "b 5 [{a stale} {c stale} {d stale} {e syncing}]" {
		t.Fatalf("after promoting b: %s", got)
	}
	if err := PromoteIn(&v, "c", nil); err == nil {
		t.Fatal("a stale replica promoted")
	}
	if err := PromoteIn(&v, "x", nil); err == nil {
		t.Fatal("a node without a copy promoted")
	}
	w := types.Volume{Node: "a", Replicas: []types.VolumeReplica{{Node: "b", State: ReplicaInSync}, {Node: "c", State: ReplicaInSync}}}
	if err := PromoteIn(&w, "c", map[string]uint64{"b": 3, "c": 3}); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprintf("%s %d %v", w.Node, w.Epoch, w.Replicas); got != "c 1 [{a stale} {b in-sync}]" {
		t.Fatalf("equal replicas: %s", got)
	}
}

func TestReplaceIn(t *testing.T) {
	v := types.Volume{Name: "v", Node: "a", Epoch: 2, Replicas: []types.VolumeReplica{{Node: "b", State: ReplicaInSync}, {Node: "d", State: ReplicaStale}}}
	if InSyncCopies(v) != 2 {
		t.Fatalf("in sync: %d", InSyncCopies(v))
	}
	for _, bad := range [][2]string{{"x", "c"}, {"d", "b"}, {"d", "a"}, {"d", "d"}} {
		w := v
		w.Replicas = slices.Clone(v.Replicas)
		if err := ReplaceIn(&w, bad[0], bad[1]); err == nil {
			t.Errorf("ReplaceIn(%s, %s) accepted", bad[0], bad[1])
		}
	}
	if err := ReplaceIn(&v, "d", "c"); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprintf("%s %d %v %v", v.Node, v.Epoch, v.Replicas, Holding(v)); got != "a 3 [{b in-sync} {c syncing}] [a b c]" {
		t.Fatalf("after replacing d by c: %s", got)
	}
	if InSyncCopies(v) != 2 {
		t.Fatalf("a syncing replica counts: %d", InSyncCopies(v))
	}
}

func TestAddReplicaIn(t *testing.T) {
	v := types.Volume{Name: "v", Node: "b", Epoch: 2, Replicas: []types.VolumeReplica{{Node: "c", State: ReplicaInSync}}}
	for _, bad := range []struct {
		node   string
		copies int
	}{{"b", 3}, {"c", 3}, {"a", 2}, {"a", 1}} {
		w := v
		w.Replicas = slices.Clone(v.Replicas)
		if err := AddReplicaIn(&w, bad.node, bad.copies); err == nil {
			t.Errorf("AddReplicaIn(%s, %d) accepted", bad.node, bad.copies)
		}
	}
	if err := AddReplicaIn(&v, "a", 3); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprintf("%s %d %v", v.Node, v.Epoch, v.Replicas); got != "b 2 [{a syncing} {c in-sync}]" {
		t.Fatalf("after adding a: %s", got)
	}
	if err := AddReplicaIn(&v, "d", 3); err == nil {
		t.Fatal("a fourth copy added")
	}
}
