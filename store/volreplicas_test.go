package store

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/macro-cloud/macro/types"
)

// TestUpdateVolume: concurrent updates of one volume all land (each is
// applied to the record as the last one left it); an error of fn leaves
// the record; a missing volume is ErrNotFound.
func TestUpdateVolume(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	v := types.Volume{Name: "files", Tenant: "alice", Driver: "gfs", Node: "n1"}
	if err := s.CreateVolume(ctx, &v); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := s.UpdateVolume(ctx, "alice", "files", func(v *types.Volume) error {
				v.Epoch++
				return nil
			}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	refused := errors.New("no")
	if _, err := s.UpdateVolume(ctx, "alice", "files", func(v *types.Volume) error {
		v.Node = "n2"
		return refused
	}); !errors.Is(err, refused) {
		t.Fatalf("fn's error: %v", err)
	}
	got, err := s.Volume(ctx, "alice", "files")
	if err != nil || got.Epoch != 8 || got.Node != "n1" {
		t.Fatalf("after 8 updates and a refused one: %+v %v", got, err)
	}
	if _, err := s.UpdateVolume(ctx, "bob", "files", func(*types.Volume) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("another tenant's volume: %v", err)
	}
}
