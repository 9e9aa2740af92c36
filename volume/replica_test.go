package volume

import (
	"fmt"
	"testing"
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
