package image

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/macro-cloud/macro/internal/testenv"
)

func tenantLoad(t testing.TB, v *TenantView, archive []byte) []string {
	t.Helper()
	got, err := v.Load(context.Background(), bytes.NewReader(archive), nil)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// Two tenants with the same image own one content: deleting it in one
// keeps it whole for the other; the last owner's delete removes it.
func TestTenantsShareContent(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	a, b := s.Tenant("alice"), s.Tenant("bob")
	img := testImage(t, "sh", testLayer(t, baseLayerEntries...), testLayer(t, appLayerEntries...))
	id := configID(t, img)
	tenantLoad(t, a, dockerArchive(t, img, "busybox:latest"))
	tenantLoad(t, b, dockerArchive(t, img, "mine:1"))

	ents, _ := os.ReadDir(filepath.Join(s.dir, "layers"))
	if len(ents) != 2 {
		t.Fatalf("%d layer directories, want 2 (stored once)", len(ents))
	}
	ia, err := a.Lookup(ctx, id)
	if err != nil || !slices.Equal(ia.RepoTags, []string{"busybox:latest"}) {
		t.Fatalf("alice sees %+v %v", ia.RepoTags, err)
	}
	ib, err := b.Lookup(ctx, id)
	if err != nil || !slices.Equal(ib.RepoTags, []string{"mine:1"}) {
		t.Fatalf("bob sees %+v %v", ib.RepoTags, err)
	}
	// Sizes are the tenant's: nothing is shared with the other tenant.
	if ia.SharedSize != 0 || ia.Size != ib.Size || a.LayersSize(ctx) != ia.Size {
		t.Errorf("sizes: alice %d/%d bob %d, layers %d", ia.Size, ia.SharedSize, ib.Size, a.LayersSize(ctx))
	}

	// Alice deletes: she is told the image and both layers went.
	del, err := a.Remove(ctx, "busybox:latest", false, false)
	if err != nil || len(del) != 4 || del[0].Untagged != "busybox:latest" || del[1].Deleted != id {
		t.Fatalf("alice's rmi = %+v %v", del, err)
	}
	if _, err := a.Lookup(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("alice still sees it: %v", err)
	}
	// Bob's is whole, after a restart too, and still runs.
	s = openStore(t, s.dir)
	b = s.Tenant("bob")
	if _, err := b.Lookup(ctx, "mine:1"); err != nil {
		t.Fatal(err)
	}
	for _, l := range ib.Layers {
		if _, err := os.Stat(s.LayerPath(l)); err != nil {
			t.Fatalf("bob's layer went with alice's image: %v", err)
		}
	}
	var buf bytes.Buffer
	if err := b.Save(ctx, []string{"mine:1"}, &buf); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := s.Prepare(ctx, id, dir); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Remove(ctx, id, false, false); err != nil {
		t.Fatal(err)
	}
	assertEmpty(t, s)
}

// Another tenant's images, tags, IDs and digests do not exist.
func TestTenantIsolation(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	a, b := s.Tenant("alice"), s.Tenant("bob")
	img := testImage(t, "sh", testLayer(t, baseLayerEntries...))
	id := configID(t, img)
	tenantLoad(t, a, dockerArchive(t, img, "secret:1"))
	if err := a.Tag(ctx, "secret:1", "other/name:2"); err != nil {
		t.Fatal(err)
	}

	for _, ref := range []string{"secret:1", "secret", "other/name:2", id, id[7:19], id[7:]} {
		if _, err := b.Lookup(ctx, ref); !errors.Is(err, ErrNotFound) {
			t.Errorf("bob's Lookup(%s) = %v", ref, err)
		}
		if _, err := b.History(ctx, ref); !errors.Is(err, ErrNotFound) {
			t.Errorf("bob's History(%s) = %v", ref, err)
		}
		if err := b.Tag(ctx, ref, "stolen:1"); !errors.Is(err, ErrNotFound) {
			t.Errorf("bob's Tag(%s) = %v", ref, err)
		}
		if _, err := b.Remove(ctx, ref, true, false); !errors.Is(err, ErrNotFound) {
			t.Errorf("bob's Remove(%s) = %v", ref, err)
		}
		if err := b.Save(ctx, []string{ref}, io.Discard); !errors.Is(err, ErrNotFound) {
			t.Errorf("bob's Save(%s) = %v", ref, err)
		}
	}
	if imgs, _ := b.List(ctx); len(imgs) != 0 {
		t.Errorf("bob lists %+v", imgs)
	}
	if rep, err := b.Prune(ctx, true, nil); err != nil || len(rep.Deleted) != 0 {
		t.Errorf("bob's prune = %+v %v", rep, err)
	}
	// Bob's own tag of the same name is his: both coexist.
	other := testImage(t, "bob", testLayer(t, appLayerEntries...))
	tenantLoad(t, b, dockerArchive(t, other, "secret:1"))
	ia, _ := a.Lookup(ctx, "secret:1")
	ib, _ := b.Lookup(ctx, "secret:1")
	if ia.ID != id || ib.ID != configID(t, other) {
		t.Fatalf("secret:1 is %s for alice, %s for bob", ia.ID, ib.ID)
	}
	if imgs, _ := a.List(ctx); len(imgs) != 1 || !slices.Equal(imgs[0].RepoTags, []string{"other/name:2", "secret:1"}) {
		t.Fatalf("alice lists %+v", imgs)
	}
	// The deprecated tenant-less methods are the default tenant's.
	if _, err := s.Lookup(ctx, "secret:1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("default tenant sees alice's image: %v", err)
	}
	// The agent finds images by ID whatever their tenant.
	if got, err := s.LookupID(ctx, id); err != nil || got.ID != id || len(got.RepoTags) != 0 {
		t.Errorf("LookupID = %+v %v", got, err)
	}
	if _, err := s.LookupID(ctx, "secret:1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("LookupID by name = %v", err)
	}
	// Containers in use are per tenant.
	s.SetInUseByTenant(func(tenant, imageID string) []string {
		if tenant == "alice" && imageID == id {
			return []string{"c0ffee"}
		}
		return nil
	})
	if _, err := a.Remove(ctx, "other/name:2", false, false); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Remove(ctx, id, false, false); err == nil || !strings.Contains(err.Error(), "c0ffee") {
		t.Errorf("alice's rmi of an image in use = %v", err)
	}
	if _, err := b.Remove(ctx, "secret:1", false, false); err != nil {
		t.Errorf("bob's rmi: %v", err)
	}
}

// A tenant never gets a layer another tenant has by naming its diffID:
// it must bring the bytes.
func TestTenantLayerNeedsTheBytes(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	secret := testImage(t, "sh", testLayer(t, tarEntry{name: "secret", body: "alice's"}))
	tenantLoad(t, s.Tenant("alice"), dockerArchive(t, secret, "secret:1"))
	cf, _ := secret.ConfigFile()

	// Bob's archive claims alice's diffID with other bytes.
	fake := testImage(t, "sh", testLayer(t, tarEntry{name: "junk", body: "junk"}))
	fcf, _ := fake.ConfigFile()
	fcf = fcf.DeepCopy()
	fcf.RootFS.DiffIDs = cf.RootFS.DiffIDs
	fake, err := mutate.ConfigFile(fake, fcf)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Tenant("bob").Load(ctx, bytes.NewReader(dockerArchive(t, fake, "stolen:1")), nil)
	if err == nil || !strings.Contains(err.Error(), "diffID mismatch") {
		t.Fatalf("load with another tenant's diffID: %v", err)
	}
	if imgs, _ := s.Tenant("bob").List(ctx); len(imgs) != 0 {
		t.Fatalf("bob got %+v", imgs)
	}
	// With the real bytes he gets it, stored once.
	tenantLoad(t, s.Tenant("bob"), dockerArchive(t, secret, "mine:1"))
	ents, _ := os.ReadDir(filepath.Join(s.dir, "layers"))
	if len(ents) != 1 {
		t.Fatalf("%d layers, want 1", len(ents))
	}
}

// A pull shows "Already exists" only for the tenant's own layers; another
// tenant's copy is downloaded (and checked), then stored once.
func TestTenantPullDownloadsWhatItHasNot(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	reg := testenv.StartRegistry(t)
	img := testImage(t, "sh", testLayer(t, baseLayerEntries...))
	reg.Push(t, img, "busybox:latest")
	s := openStore(t, t.TempDir())
	statuses := func(tenant string) []string {
		var out []string
		_, err := s.Tenant(tenant).Pull(ctx, reg.Ref("busybox:latest"), PullOptions{Progress: func(e ProgressEvent) {
			if e.ID != "" && !strings.HasPrefix(e.Status, "Pulling from") && e.Status != "Downloading" && e.Status != "Extracting" {
				out = append(out, e.Status)
			}
		}})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	statuses("alice")
	if got := statuses("bob"); slices.Contains(got, "Already exists") {
		t.Errorf("bob's first pull: %v", got)
	}
	if got := statuses("bob"); !slices.Equal(got, []string{"Already exists"}) {
		t.Errorf("bob's second pull: %v", got)
	}
}

// A store written before tenancy is the default tenant's.
func TestMigrateLegacyIndex(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, dir)
	tagged := testImage(t, "a", testLayer(t, baseLayerEntries...))
	dangling := testImage(t, "b", testLayer(t, appLayerEntries...))
	tenantLoad(t, s.Tenant("default"), dockerArchive(t, tagged, "busybox:latest"))
	tenantLoad(t, s.Tenant("default"), dockerArchive(t, dangling))
	// Rewrite the store as the single-tenant code left it.
	legacy, _ := json.Marshal(legacyIndex{Tags: map[string]string{"busybox:latest": configID(t, tagged)}})
	if err := os.RemoveAll(filepath.Join(dir, "repositories")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "repositories.json"), legacy, 0o644); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir)
	imgs, err := s.Tenant("default").List(ctx)
	if err != nil || len(imgs) != 2 {
		t.Fatalf("default tenant after migration: %+v %v", imgs, err)
	}
	if img, err := s.Tenant("default").Lookup(ctx, "busybox"); err != nil || img.ID != configID(t, tagged) {
		t.Fatalf("busybox after migration: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "repositories.json")); !os.IsNotExist(err) {
		t.Errorf("legacy index left: %v", err)
	}
	if imgs, _ := s.Tenant("other").List(ctx); len(imgs) != 0 {
		t.Errorf("another tenant got %+v", imgs)
	}
}

// Tenant names become file names safely.
func TestTenantFile(t *testing.T) {
	for _, name := range []string{"default", "a-b.c_d", "../x", "UPPER", "with/slash", "", "~x"} {
		f := tenantFile(name)
		if strings.ContainsAny(f, "/\\") || strings.HasPrefix(f, ".") {
			t.Errorf("tenantFile(%q) = %q", name, f)
		}
		if got, ok := tenantFromFile(f); !ok || got != name {
			t.Errorf("tenantFromFile(%q) = %q %v, want %q", f, got, ok, name)
		}
	}
}
