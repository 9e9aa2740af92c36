package store

import (
	"context"
	"errors"
	"testing"

	"github.com/macro-cloud/macro/types"
)

func TestRemoveNode(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	if _, err := s.RegisterNode(ctx, types.Node{Name: "up", CPUs: 2}, 60); err != nil {
		t.Fatal(err)
	}
	// A record without liveness: a node whose lease expired.
	if err := s.PutNode(ctx, types.Node{Name: "down", CPUs: 4}); err != nil {
		t.Fatal(err)
	}
	nodes, err := s.Nodes(ctx)
	if err != nil || len(nodes) != 2 || !nodes[1].Ready || nodes[0].Ready {
		t.Fatalf("Nodes = %+v, %v", nodes, err)
	}
	for _, tc := range []struct {
		name string
		want error
	}{
		{"up", ErrNodeReady},
		{"down", nil},
		{"down", ErrNotFound},
		{"never", ErrNotFound},
	} {
		if err := s.RemoveNode(ctx, tc.name); !errors.Is(err, tc.want) {
			t.Errorf("RemoveNode(%s) = %v, want %v", tc.name, err, tc.want)
		}
	}
	nodes, err = s.Nodes(ctx)
	if err != nil || len(nodes) != 1 || nodes[0].Name != "up" || !nodes[0].Ready {
		t.Fatalf("after removing: Nodes = %+v, %v", nodes, err)
	}
}
