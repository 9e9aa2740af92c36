package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

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

// replicated stores a volume of alice with primary n1 and in-sync
// replicas n2 and n3, at epoch 0.
func replicated(t *testing.T, s *Store) {
	t.Helper()
	v := types.Volume{Name: "ha", Tenant: "alice", Driver: "gfs", Node: "n1",
		Replicas: []types.VolumeReplica{{Node: "n2", State: "in-sync"}, {Node: "n3", State: "in-sync"}}}
	if err := s.CreateVolume(context.Background(), &v); err != nil {
		t.Fatal(err)
	}
}

// TestConcurrentPromoters: servers that all saw the primary's node n1
// down at epoch 0 promote different replicas at once: exactly one lands,
// the others get ErrEpochOver, and the record has that one primary. A
// promotion while n1 is alive is refused with ErrNodeReady.
func TestConcurrentPromoters(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	replicated(t, s)
	for _, n := range []string{"n1", "n2", "n3"} {
		if err := s.PutNode(ctx, types.Node{Name: n}); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var won []string
	for i := range 8 {
		next := []string{"n2", "n3"}[i%2]
		wg.Go(func() {
			_, err := s.UpdateVolumeWhileDown(ctx, "alice", "ha", 0, "n1", func(v *types.Volume) error {
				for j := range v.Replicas {
					if v.Replicas[j].Node == next {
						v.Replicas[j].Node = v.Node
						v.Replicas[j].State = "stale"
					}
				}
				v.Node = next
				v.Epoch++
				return nil
			})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won = append(won, next)
			case !errors.Is(err, ErrEpochOver):
				t.Errorf("a promoter that lost: %v", err)
			}
		})
	}
	wg.Wait()
	v, err := s.Volume(ctx, "alice", "ha")
	if err != nil {
		t.Fatal(err)
	}
	if len(won) != 1 || v.Node != won[0] || v.Epoch != 1 {
		t.Fatalf("promotions that landed: %v; record %+v", won, v)
	}

	// n2 or n3 is primary now, n1 a replica; the primary's node is alive:
	// no promotion.
	if _, err := s.RegisterNode(ctx, types.Node{Name: v.Node}, 60); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateVolumeWhileDown(ctx, "alice", "ha", 1, v.Node, func(v *types.Volume) error {
		v.Node = "n1"
		v.Epoch++
		return nil
	}); !errors.Is(err, ErrNodeReady) {
		t.Fatalf("a promotion over a live primary: %v", err)
	}
	if _, err := s.UpdateVolumeWhileDown(ctx, "bob", "ha", 1, "n1", func(*types.Volume) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("another tenant's volume: %v", err)
	}
}

// TestReplacementRacesReturningNode: the leader replaces the replica of a
// node n3 that is down by one on n4 while n3 comes back and its primary
// records it in sync again (SetReplicaState's compare on the epoch), many
// times over in both orders. Whichever lands first, the record stays
// whole: either n4 replaced n3 (epoch 1) and n3's state change was
// refused, or n3 came back first and the replacement was refused
// (ErrNodeReady). Replica state changes that leave the epoch alone do
// not stop a replacement.
func TestReplacementRacesReturningNode(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	replaced, returned := 0, 0
	for i := range 30 {
		tenant := fmt.Sprintf("t%d", i)
		v := types.Volume{Name: "ha", Tenant: tenant, Driver: "gfs", Node: "n1",
			Replicas: []types.VolumeReplica{{Node: "n2", State: "in-sync"}, {Node: "n3", State: "stale"}}}
		if err := s.CreateVolume(ctx, &v); err != nil {
			t.Fatal(err)
		}
		n3 := fmt.Sprintf("n3-%d", i) // a node name per round: its lease stays
		for j := range v.Replicas {
			if v.Replicas[j].Node == "n3" {
				v.Replicas[j].Node = n3
			}
		}
		if _, err := s.UpdateVolume(ctx, tenant, "ha", func(cur *types.Volume) error { *cur = v; return nil }); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var replErr, stateErr error
		wg.Go(func() {
			// Vary the order: some rounds let the node come back first.
			time.Sleep(time.Duration(i%4) * time.Millisecond)
			_, replErr = s.UpdateVolumeWhileDown(ctx, tenant, "ha", 0, n3, func(cur *types.Volume) error {
				for j := range cur.Replicas {
					if cur.Replicas[j].Node == n3 {
						cur.Replicas[j] = types.VolumeReplica{Node: "n4", State: "syncing"}
					}
				}
				cur.Epoch++
				return nil
			})
		})
		wg.Go(func() {
			if _, err := s.RegisterNode(ctx, types.Node{Name: n3}, 60); err != nil {
				stateErr = err
				return
			}
			_, stateErr = s.UpdateVolume(ctx, tenant, "ha", func(cur *types.Volume) error {
				if cur.Epoch != 0 {
					return ErrEpochOver
				}
				for j := range cur.Replicas {
					if cur.Replicas[j].Node == n3 {
						cur.Replicas[j].State = "in-sync"
						return nil
					}
				}
				return errors.New("no replica")
			})
		})
		wg.Go(func() {
			// The primary marks n2 stale and back meanwhile.
			for _, st := range []string{"stale", "in-sync"} {
				if _, err := s.UpdateVolume(ctx, tenant, "ha", func(cur *types.Volume) error {
					cur.Replicas[0].State = st
					return nil
				}); err != nil {
					t.Error(err)
				}
			}
		})
		wg.Wait()
		got, err := s.Volume(ctx, tenant, "ha")
		if err != nil {
			t.Fatal(err)
		}
		reps := fmt.Sprint(got.Replicas)
		switch {
		case replErr == nil:
			replaced++
			if !errors.Is(stateErr, ErrEpochOver) || got.Epoch != 1 || reps != "[{n2 in-sync} {n4 syncing}]" {
				t.Fatalf("round %d: replaced, then n3's state: %v; record %d %s", i, stateErr, got.Epoch, reps)
			}
		case errors.Is(replErr, ErrNodeReady):
			returned++
			if stateErr != nil || got.Epoch != 0 || reps != "[{n2 in-sync} {"+n3+" in-sync}]" {
				t.Fatalf("round %d: n3 back first, its state: %v; record %d %s", i, stateErr, got.Epoch, reps)
			}
		default:
			t.Fatalf("round %d: replacement: %v", i, replErr)
		}
	}
	t.Logf("%d rounds replaced the node, %d saw it back first", replaced, returned)
}
