package store

import (
	"context"
	"errors"
	"maps"
	"testing"

	"github.com/macro-cloud/macro/types"
)

func TestRotateMeshKey(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	if _, err := s.RotateMeshKey(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("RotateMeshKey of an unknown node = %v, want ErrNotFound", err)
	}
	for _, n := range []string{"n1", "n2"} {
		if err := s.PutNode(ctx, types.Node{Name: n}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		node string
		want int64
	}{{"n1", 1}, {"n1", 2}, {"n2", 1}, {"n1", 3}} {
		if got, err := s.RotateMeshKey(ctx, tc.node); err != nil || got != tc.want {
			t.Errorf("RotateMeshKey(%s) = %d, %v, want %d", tc.node, got, err, tc.want)
		}
	}
	got, err := s.MeshRotations(ctx)
	if want := map[string]int64{"n1": 3, "n2": 1}; err != nil || !maps.Equal(got, want) {
		t.Fatalf("MeshRotations = %v, %v, want %v", got, err, want)
	}
}
