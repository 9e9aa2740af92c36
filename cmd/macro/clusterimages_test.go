package main

import (
	"context"
	"log/slog"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/macro-cloud/macro/image"
	"github.com/macro-cloud/macro/internal/testimages"
	"github.com/macro-cloud/macro/store"
	"github.com/macro-cloud/macro/types"
)

// Servers sharing one state store, each with its own image store: what
// one commits, the index says, and the others follow.
func TestClusterImagesIndex(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("image layers are extracted as root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err := store.Open(ctx, store.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	archive := testimages.Busybox(t)
	load := func(s *image.Store, ctx context.Context) string {
		t.Helper()
		f, err := os.Open(archive)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := s.Tenant(types.DefaultTenant).Load(ctx, f, nil); err != nil {
			t.Fatal(err)
		}
		img, err := s.Tenant(types.DefaultTenant).Lookup(ctx, "busybox")
		if err != nil {
			t.Fatal(err)
		}
		return img.ID
	}
	server := func(name string, before func(*image.Store)) (*clusterImages, *image.Store) {
		t.Helper()
		s, err := image.Open(t.TempDir(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if before != nil {
			before(s)
		}
		c := newClusterImages(st, s, nil, name, 2, discard())
		sctx, stop := context.WithCancel(ctx)
		t.Cleanup(stop)
		if err := c.start(sctx); err != nil {
			t.Fatal(err)
		}
		return c, s
	}
	index := func() map[string]types.ClusterImage {
		t.Helper()
		m, _, err := st.TenantImages(ctx, types.DefaultTenant)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	// s0's store had the image before the index existed: it seeds it.
	var id string
	c0, s0 := server("s0", func(s *image.Store) { id = load(s, ctx) })
	if e := index()[id]; !slices.Equal(e.Holders, []string{"s0"}) || !slices.Equal(e.RepoTags, []string{"busybox:latest"}) || len(e.Layers) != 1 || e.Size() == 0 {
		t.Fatalf("seeded: %+v", e)
	}
	c1, s1 := server("s1", nil)
	v0, v1 := s0.Tenant(types.DefaultTenant), s1.Tenant(types.DefaultTenant)

	// s1 lacks it and sees it elsewhere.
	if els, err := c1.Sync(ctx, types.DefaultTenant); err != nil || len(els) != 1 || els[0].ID != id {
		t.Fatalf("elsewhere on s1: %v %v", els, err)
	}
	// A copy (replica) on s1: a holder more, the names untouched.
	load(s1, image.WithReplica(ctx))
	if e := index()[id]; !slices.Equal(e.Holders, []string{"s0", "s1"}) {
		t.Fatalf("after the copy: %+v", e)
	}
	// A tag through s0 is s1's once it syncs; a tag moved through s1 is
	// s0's.
	if err := v0.Tag(ctx, "busybox", "bb:1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c1.Sync(ctx, types.DefaultTenant); err != nil {
		t.Fatal(err)
	}
	if img, err := v1.Lookup(ctx, "bb:1"); err != nil || img.ID != id {
		t.Fatalf("bb:1 on s1: %v", err)
	}
	if _, err := v1.Remove(ctx, "bb:1", false, false); err != nil {
		t.Fatal(err)
	}
	if e := index()[id]; !slices.Equal(e.RepoTags, []string{"busybox:latest"}) {
		t.Fatalf("tags after an untag through s1: %v", e.RepoTags)
	}
	if _, err := c0.Sync(ctx, types.DefaultTenant); err != nil {
		t.Fatal(err)
	}
	if _, err := v0.Lookup(ctx, "bb:1"); err == nil {
		t.Fatal("bb:1 is still on s0 after its removal through s1")
	}
	// rmi through s1 removes it from the index and, once it follows, s0.
	if _, err := v1.Remove(ctx, "busybox", false, false); err != nil {
		t.Fatal(err)
	}
	if _, ok := index()[id]; ok {
		t.Fatal("the index still has the image after rmi")
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := v0.Lookup(ctx, id); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("s0 did not follow the rmi through s1")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A copy of an image the cluster no longer has is not added, and goes.
	load(s1, image.WithReplica(ctx))
	if _, ok := index()[id]; ok {
		t.Fatal("a copy added an image the index did not have")
	}
	if _, err := c1.Sync(ctx, types.DefaultTenant); err != nil {
		t.Fatal(err)
	}
	if _, err := v1.Lookup(ctx, id); err == nil {
		t.Fatal("a copy of a removed image stayed")
	}
	// A tenant's removal clears the index even where this server holds none.
	load(s0, ctx)
	if n, err := c1.RemoveTenant(ctx, types.DefaultTenant); err != nil || n != 1 {
		t.Fatalf("RemoveTenant through s1: %d %v", n, err)
	}
	if len(index()) != 0 {
		t.Fatalf("index after the tenant's removal: %v", index())
	}
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
