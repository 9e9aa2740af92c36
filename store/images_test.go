package store

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/macro-cloud/macro/types"
)

func imgID(n int) string { return fmt.Sprintf("sha256:%064x", n) }

func TestImageIndex(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	a, b := imgID(1), imgID(2)
	// moveTag is how the image package publishes a tag: it leaves every
	// other image of the tenant.
	moveTag := func(id, tag string) func(map[string]*types.ClusterImage) error {
		return func(imgs map[string]*types.ClusterImage) error {
			for _, img := range imgs {
				img.RepoTags = slices.DeleteFunc(img.RepoTags, func(t string) bool { return t == tag })
			}
			imgs[id].RepoTags = append(imgs[id].RepoTags, tag)
			return nil
		}
	}
	for _, tc := range []struct {
		name   string
		tenant string
		fn     func(map[string]*types.ClusterImage) error
		want   map[string][]string // ID -> tags
		err    bool
	}{
		{"add", "alice", func(m map[string]*types.ClusterImage) error {
			m[a] = &types.ClusterImage{RepoTags: []string{"x:1", "a:1", "a:1"}, Holders: []string{"s2", "s1"}, Layers: []types.ClusterImageLayer{{DiffID: "sha256:l", Size: 5}}}
			return nil
		}, map[string][]string{a: {"a:1", "x:1"}}, false},
		{"add another", "alice", func(m map[string]*types.ClusterImage) error {
			m[b] = &types.ClusterImage{Holders: []string{"s1"}}
			return nil
		}, map[string][]string{a: {"a:1", "x:1"}, b: nil}, false},
		{"move a tag", "alice", moveTag(b, "x:1"), map[string][]string{a: {"a:1"}, b: {"x:1"}}, false},
		{"remove", "alice", func(m map[string]*types.ClusterImage) error {
			delete(m, a)
			return nil
		}, map[string][]string{b: {"x:1"}}, false},
		{"another tenant is apart", "bob", func(m map[string]*types.ClusterImage) error {
			m[a] = &types.ClusterImage{}
			return nil
		}, map[string][]string{a: nil}, false},
		{"a bad ID is refused", "alice", func(m map[string]*types.ClusterImage) error {
			m["sha256:../x"] = &types.ClusterImage{}
			return nil
		}, map[string][]string{b: {"x:1"}}, true},
		{"fn's error writes nothing", "alice", func(m map[string]*types.ClusterImage) error {
			delete(m, b)
			return fmt.Errorf("no")
		}, map[string][]string{b: {"x:1"}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.UpdateTenantImages(ctx, tc.tenant, tc.fn)
			if (err != nil) != tc.err {
				t.Fatalf("err = %v, want error %v", err, tc.err)
			}
			got, _, err := s.TenantImages(ctx, tc.tenant)
			if err != nil {
				t.Fatal(err)
			}
			tags := map[string][]string{}
			for id, img := range got {
				if img.ID != id || img.Tenant != tc.tenant {
					t.Errorf("image %s: ID %q tenant %q", id, img.ID, img.Tenant)
				}
				tags[id] = img.RepoTags
			}
			if fmt.Sprint(tags) != fmt.Sprint(tc.want) {
				t.Errorf("tags = %v, want %v", tags, tc.want)
			}
		})
	}
	if err := s.SetImageHolder(ctx, "alice", b, "s3", true); err != nil {
		t.Fatal(err)
	}
	if err := s.SetImageHolder(ctx, "alice", b, "s1", false); err != nil {
		t.Fatal(err)
	}
	got, _, _ := s.TenantImages(ctx, "alice")
	if h := got[b].Holders; !slices.Equal(h, []string{"s3"}) {
		t.Errorf("holders = %v, want [s3]", h)
	}
	if _, _, err := s.TenantImages(ctx, "a/b"); err == nil {
		t.Error("a tenant name with a slash was accepted")
	}
	if ok, _ := s.ImagesSeeded(ctx, "s1"); ok {
		t.Error("s1 seeded before it said so")
	}
	if err := s.MarkImagesSeeded(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.ImagesSeeded(ctx, "s1"); !ok {
		t.Error("s1 not seeded after it said so")
	}
}

// Concurrent changes of one tenant (each server adding a tag, holders
// coming and going) all land: none overwrites another's.
func TestImageIndexConcurrent(t *testing.T) {
	s := openStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	id := imgID(7)
	if _, err := s.UpdateTenantImages(ctx, "alice", func(m map[string]*types.ClusterImage) error {
		m[id] = &types.ClusterImage{}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	all, rev0, _ := s.AllImages(ctx)
	if len(all) != 1 {
		t.Fatalf("AllImages = %v", all)
	}
	watch := s.WatchImages(ctx, rev0+1)
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range n {
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, err := s.UpdateTenantImages(ctx, "alice", func(m map[string]*types.ClusterImage) error {
				m[id].RepoTags = append(m[id].RepoTags, fmt.Sprintf("t:%d", i))
				return nil
			})
			errs <- err
		}()
		go func() {
			defer wg.Done()
			errs <- s.SetImageHolder(ctx, "alice", id, fmt.Sprintf("s%d", i), true)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, _, _ := s.TenantImages(ctx, "alice")
	if len(got[id].RepoTags) != n || len(got[id].Holders) != n {
		t.Errorf("after %d concurrent tags and holders: %v, %v", n, got[id].RepoTags, got[id].Holders)
	}
	if _, err := s.UpdateTenantImages(ctx, "alice", func(m map[string]*types.ClusterImage) error {
		delete(m, id)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for c := range watch {
		if c.Tenant != "alice" || c.ID != id {
			t.Fatalf("change %+v", c)
		}
		if c.Deleted {
			return
		}
	}
	t.Fatal("the watch ended before the removal")
}

// An image removed between the read and the write of another change is
// not brought back by it.
func TestImageIndexNoResurrection(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	id := imgID(9)
	if _, err := s.UpdateTenantImages(ctx, "alice", func(m map[string]*types.ClusterImage) error {
		m[id] = &types.ClusterImage{Holders: []string{"s1"}}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	attempts := 0
	if _, err := s.UpdateTenantImages(ctx, "alice", func(m map[string]*types.ClusterImage) error {
		attempts++
		if attempts == 1 {
			// rmi through another server, after this read.
			if _, err := s.UpdateTenantImages(ctx, "alice", func(m map[string]*types.ClusterImage) error {
				delete(m, id)
				return nil
			}); err != nil {
				return err
			}
		}
		if img := m[id]; img != nil {
			img.Holders = append(img.Holders, "s2")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	got, _, _ := s.TenantImages(ctx, "alice")
	if _, ok := got[id]; ok || attempts != 2 {
		t.Fatalf("after a holder change raced a removal: %v (%d attempts)", got, attempts)
	}
}
