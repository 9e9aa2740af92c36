package image

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestImageQuota: a load that would take a tenant over its image quota is
// refused with a *QuotaError and leaves nothing (no image, no extracted
// layer, no blob); what adds nothing passes even over a lowered quota; a
// layer the refused image shares with a kept one stays; other tenants are
// not limited by it.
func TestImageQuota(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	limits := map[string]int64{}
	s.SetQuota(func(_ context.Context, tenant string) (int64, error) { return limits[tenant], nil })
	a, b := s.Tenant("alice"), s.Tenant("bob")
	base := testLayer(t, baseLayerEntries...)
	small := testImage(t, "small", base)
	big := testImage(t, "big", base, testLayer(t, appLayerEntries...))

	// Measure: how much each image takes, with no quota.
	tenantLoad(t, b, dockerArchive(t, big, "big:1"))
	tenantLoad(t, b, dockerArchive(t, small, "small:1"))
	ibig, _ := b.Lookup(ctx, "big:1")
	ismall, _ := b.Lookup(ctx, "small:1")
	if ismall.Size == 0 || ibig.Size <= ismall.Size {
		t.Fatalf("sizes: small %d big %d", ismall.Size, ibig.Size)
	}
	if _, err := b.Remove(ctx, "big:1", false, false); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Remove(ctx, "small:1", false, false); err != nil {
		t.Fatal(err)
	}
	assertEmpty(t, s)

	limits["alice"] = ismall.Size - 1
	_, err := a.Load(ctx, bytes.NewReader(dockerArchive(t, small, "small:1")), nil)
	var qe *QuotaError
	if !errors.As(err, &qe) || !errors.Is(err, ErrQuotaExceeded) || qe.HTTPStatus() != 403 || qe.Adds != ismall.Size || qe.Used != 0 ||
		!strings.HasPrefix(err.Error(), "quota exceeded: tenant alice may store ") {
		t.Fatalf("load over the quota: %v", err)
	}
	assertEmpty(t, s)

	limits["alice"] = ismall.Size
	tenantLoad(t, a, dockerArchive(t, small, "small:1"))
	// big adds its second layer: refused; the shared base layer stays.
	_, err = a.Load(ctx, bytes.NewReader(dockerArchive(t, big, "big:1")), nil)
	if !errors.As(err, &qe) || qe.Used != ismall.Size || qe.Adds != ibig.Size-ismall.Size {
		t.Fatalf("a second image over the quota: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(s.dir, "layers")); len(ents) != 1 {
		t.Errorf("%d layer directories after the refusal, want the shared one", len(ents))
	}
	if _, err := a.Lookup(ctx, "big:1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("refused image exists: %v", err)
	}
	// Adding nothing passes over a lowered quota; a tag too.
	limits["alice"] = 1
	tenantLoad(t, a, dockerArchive(t, small, "small:2"))
	if err := a.Tag(ctx, "small:1", "small:3"); err != nil {
		t.Errorf("tag over the quota: %v", err)
	}
	// Bob has no quota.
	tenantLoad(t, b, dockerArchive(t, big, "big:1"))
	if a.Usage(ctx) != ismall.Size || b.Usage(ctx) != ibig.Size {
		t.Errorf("usage: alice %d bob %d", a.Usage(ctx), b.Usage(ctx))
	}
}

// TestRemoveTenant: a removed tenant owns nothing; what it shared with
// another tenant stays whole for that one; what was its alone is deleted.
func TestRemoveTenant(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	a, b := s.Tenant("alice"), s.Tenant("bob")
	base := testLayer(t, baseLayerEntries...)
	shared := testImage(t, "shared", base)
	own := testImage(t, "own", base, testLayer(t, appLayerEntries...))
	tenantLoad(t, a, dockerArchive(t, shared, "shared:1"))
	tenantLoad(t, a, dockerArchive(t, own, "own:1"))
	tenantLoad(t, b, dockerArchive(t, shared, "mine:1"))

	n, err := s.RemoveTenant(ctx, "alice")
	if err != nil || n != 2 {
		t.Fatalf("RemoveTenant: %d %v", n, err)
	}
	if imgs, _ := a.List(ctx); len(imgs) != 0 {
		t.Errorf("alice's images after removal: %+v", imgs)
	}
	if _, err := os.Stat(filepath.Join(s.reposDir(), tenantFile("alice"))); !os.IsNotExist(err) {
		t.Errorf("alice's index: %v", err)
	}
	img, err := b.Lookup(ctx, "mine:1")
	if err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(filepath.Join(s.dir, "layers")); len(ents) != 1 {
		t.Errorf("%d layer directories, want bob's one", len(ents))
	}
	if _, err := os.Stat(s.LayerPath(img.Layers[0])); err != nil {
		t.Errorf("bob's layer: %v", err)
	}
	if n, err := s.RemoveTenant(ctx, "alice"); err != nil || n != 0 {
		t.Errorf("RemoveTenant twice: %d %v", n, err)
	}
	if _, err := b.Remove(ctx, "mine:1", false, false); err != nil {
		t.Fatal(err)
	}
	assertEmpty(t, s)
}
