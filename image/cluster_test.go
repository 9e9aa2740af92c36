package image

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"

	"github.com/macro-cloud/macro/types"
)

// The store's commits tell the publish hook what changed, before they
// are written: a load adds an image with its names, a tag moves a
// reference, an rmi removes; a refusal of the hook leaves the store as
// it was. ApplyIndex makes the store the index's, publishing nothing.
func TestPublishAndApplyIndex(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	var got []IndexChange
	var refuse error
	s.SetPublish(func(c IndexChange) error {
		if refuse != nil {
			return refuse
		}
		got = append(got, c)
		return nil
	})
	v := s.Tenant("alice")
	img := testImage(t, "sh", testLayer(t, baseLayerEntries...))
	id := configID(t, img)
	describe := func(c IndexChange) string {
		var added []string
		for _, a := range c.Added {
			added = append(added, fmt.Sprintf("%s%v/%d layers", a.ID[:12], a.RepoTags, len(a.Layers)))
		}
		return fmt.Sprintf("replica=%v added=%v removed=%d refs=%v dropped=%v", c.Replica, added, len(c.Removed), c.Refs, c.Dropped)
	}
	for _, tc := range []struct {
		name string
		do   func() error
		want string // describe of the one change, "" for none
	}{
		{"load", func() error { tenantLoad(t, v, dockerArchive(t, img, "busybox:latest")); return nil },
			fmt.Sprintf("replica=false added=[%s[busybox:latest]/1 layers] removed=0 refs=map[busybox:latest:%s] dropped=map[]", id[:12], id)},
		{"tag", func() error { return v.Tag(ctx, "busybox", "bb:1") },
			fmt.Sprintf("replica=false added=[] removed=0 refs=map[bb:1:%s] dropped=map[]", id)},
		{"tag again changes nothing named", func() error { return v.Tag(ctx, "busybox", "bb:1") }, ""},
		{"untag", func() error { _, err := v.Remove(ctx, "bb:1", false, false); return err },
			fmt.Sprintf("replica=false added=[] removed=0 refs=map[] dropped=map[bb:1:%s]", id)},
		{"replica load", func() error {
			_, err := s.Tenant("bob").Load(WithReplica(ctx), bytes.NewReader(dockerArchive(t, img, "x:1")), nil)
			return err
		}, fmt.Sprintf("replica=true added=[%s[x:1]/1 layers] removed=0 refs=map[x:1:%s] dropped=map[]", id[:12], id)},
		{"rmi", func() error { _, err := v.Remove(ctx, "busybox", false, false); return err },
			fmt.Sprintf("replica=false added=[] removed=1 refs=map[] dropped=map[busybox:latest:%s]", id)},
	} {
		got = nil
		if err := tc.do(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		switch {
		case tc.want == "" && len(got) != 0:
			t.Errorf("%s published %v", tc.name, describe(got[0]))
		case tc.want != "" && (len(got) != 1 || describe(got[0]) != tc.want):
			var ds []string
			for _, c := range got {
				ds = append(ds, describe(c))
			}
			t.Errorf("%s published %q, want %q", tc.name, ds, tc.want)
		}
	}

	// The hook refuses: the tag is not made.
	b := s.Tenant("bob")
	refuse = errors.New("index unreachable")
	if err := b.Tag(ctx, "x:1", "y:1"); !errors.Is(err, refuse) {
		t.Fatalf("tag with the index refusing: %v", err)
	}
	if _, err := b.Lookup(ctx, "y:1"); err == nil {
		t.Fatal("a tag the index refused exists")
	}
	refuse = nil

	// The index moved bob's names and dropped nothing: applied, published
	// nothing; stale, refused.
	got = nil
	index := map[string]types.ClusterImage{id: {ID: id, RepoTags: []string{"z:2"}}}
	if _, err := b.ApplyIndex(ctx, index, func() bool { return false }); !errors.Is(err, ErrStale) {
		t.Fatalf("stale index applied: %v", err)
	}
	held, err := b.ApplyIndex(ctx, index, nil)
	if err != nil || !slices.Equal(held, []string{id}) {
		t.Fatalf("ApplyIndex: %v %v", held, err)
	}
	if im, err := b.Lookup(ctx, "z:2"); err != nil || !slices.Equal(im.RepoTags, []string{"z:2"}) {
		t.Fatalf("after ApplyIndex: %v %v", im.RepoTags, err)
	}
	// The index lost the image (an rmi through another server while
	// this one was down): it goes here too.
	if _, err := b.ApplyIndex(ctx, map[string]types.ClusterImage{}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Lookup(ctx, id); err == nil {
		t.Fatal("an image the index lost is still here")
	}
	if len(got) != 0 {
		t.Errorf("ApplyIndex published %d changes", len(got))
	}
	assertEmpty(t, s)
}

// The quota counts the tenant's layers in the whole cluster once: an
// image another server holds counts, and a copy of it (a replica) is not
// charged again.
func TestQuotaCountsTheCluster(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	img := testImage(t, "sh", testLayer(t, baseLayerEntries...))
	other := testImage(t, "sh", testLayer(t, appLayerEntries...))
	s.SetQuota(func(context.Context, string) (int64, error) { return 1, nil })
	elsewhere := map[string]int64{}
	s.SetClusterLayers(func(string) map[string]int64 { return maps.Clone(elsewhere) })
	v := s.Tenant("alice")
	// A copy of what the cluster has is not charged.
	if _, err := v.Load(WithReplica(ctx), bytes.NewReader(dockerArchive(t, img, "a:1")), nil); err != nil {
		t.Fatalf("replica over the quota: %v", err)
	}
	if _, err := v.Load(ctx, bytes.NewReader(dockerArchive(t, other, "b:1")), nil); !errors.Is(err, ErrQuotaExceeded) {
		t.Fatalf("load over the quota: %v", err)
	}
	// A layer held elsewhere counts, once, for usage.
	elsewhere["sha256:elsewhere"] = 1000
	elsewhere[configLayer(t, v, "a:1")] = 1 << 40 // held here too: counted once, at its size here
	if u := v.Usage(ctx); u != v.LayersSize(ctx)+1000 {
		t.Errorf("usage %d, want %d", u, v.LayersSize(ctx)+1000)
	}
}

func configLayer(t *testing.T, v *TenantView, ref string) string {
	im, err := v.Lookup(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	return im.Layers[0]
}
