package docker

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/macro-cloud/macro/store"
	"github.com/macro-cloud/macro/types"
)

// TestClusterSummary: docker info's CPUs and memory are those of the ready
// nodes; SystemStatus counts the nodes and names their zones.
func TestClusterSummary(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := store.Open(ctx, store.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := New(Config{Store: st, Info: Info{CPUs: 3, MemoryBytes: 5 << 30}})

	type summary struct {
		cpus   int
		mem    int64
		status [][2]string
	}
	get := func() summary {
		c, m, s := s.clusterSummary(ctx)
		return summary{c, m, s}
	}
	// No node registered yet: this machine.
	if got, want := get(), (summary{3, 5 << 30, nil}); !reflect.DeepEqual(got, want) {
		t.Errorf("without nodes: %+v, want %+v", got, want)
	}
	for _, n := range []types.Node{
		{Name: "a", CPUs: 4, MemoryBytes: 8 << 30, Labels: map[string]string{"zone": "eu-2"}},
		{Name: "b", CPUs: 2, MemoryBytes: 2 << 30, Labels: map[string]string{"zone": "eu-1"}},
	} {
		if _, err := st.RegisterNode(ctx, n, 60); err != nil {
			t.Fatal(err)
		}
	}
	// c is down (no lease): it counts as a node, not in the capacity.
	if err := st.PutNode(ctx, types.Node{Name: "c", CPUs: 16, MemoryBytes: 64 << 30, Labels: map[string]string{"zone": "us-1"}}); err != nil {
		t.Fatal(err)
	}
	want := summary{6, 10 << 30, [][2]string{{"Nodes", "3 (2 ready)"}, {"Zones", "eu-1, eu-2, us-1"}}}
	if got := get(); !reflect.DeepEqual(got, want) {
		t.Errorf("with nodes: %+v, want %+v", got, want)
	}
}
