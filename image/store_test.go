package image

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/macro-cloud/macro/internal/testimages"
)

// testLayer builds a gzip layer from entries.
func testLayer(t testing.TB, entries ...tarEntry) v1.Layer {
	t.Helper()
	data := makeTar(t, entries...)
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// testImage builds a linux/amd64 image of layers with Cmd cmd.
func testImage(t testing.TB, cmd string, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Created = v1.Time{Time: time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)}
	cf.Config.Cmd = []string{cmd}
	cf.Config.Env = []string{"PATH=/bin"}
	cf.Config.Labels = map[string]string{"test": cmd}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

var (
	baseLayerEntries = []tarEntry{
		{name: "bin", typ: tar.TypeDir},
		{name: "bin/sh", body: "#!shell", mode: 0o755},
		{name: "etc", typ: tar.TypeDir},
		{name: "etc/passwd", body: "root:x:0:0::/root:/bin/sh\n"},
		{name: "etc/group", body: "root:x:0:\n"},
		{name: "var/lib/data", typ: tar.TypeDir},
		{name: "var/lib/data/old", body: "old"},
	}
	appLayerEntries = []tarEntry{
		{name: "app", typ: tar.TypeDir},
		{name: "app/run", body: "run", mode: 0o755},
		{name: "etc", typ: tar.TypeDir},
		{name: "etc/.wh.group"},
		{name: "var/lib/data", typ: tar.TypeDir},
		{name: "var/lib/data/.wh..wh..opq"},
		{name: "var/lib/data/new", body: "new"},
	}
)

func openStore(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(dir, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func dockerArchive(t testing.TB, img v1.Image, tags ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := testimages.WriteDockerArchive(&buf, img, tags...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func configID(t testing.TB, img v1.Image) string {
	t.Helper()
	h, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

func load(t testing.TB, s *Store, archive []byte) []string {
	t.Helper()
	got, err := s.Tenant("default").Load(context.Background(), bytes.NewReader(archive), nil)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestLoadDockerArchiveAndLookup(t *testing.T) {
	requireRoot(t)
	s := openStore(t, t.TempDir())
	img := testImage(t, "sh", testLayer(t, baseLayerEntries...), testLayer(t, appLayerEntries...))
	id := configID(t, img)
	var events []ProgressEvent
	got, err := s.Tenant("default").Load(context.Background(), bytes.NewReader(dockerArchive(t, img, "busybox:latest", "registry.example/team/foo:1")), func(e ProgressEvent) { events = append(events, e) })
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"busybox:latest", "registry.example/team/foo:1"}; !slices.Equal(got, want) {
		t.Fatalf("Load = %v, want %v", got, want)
	}
	if len(events) == 0 || events[0].Status != "Loading layer" {
		t.Errorf("progress events %v", events)
	}
	hex := strings.TrimPrefix(id, "sha256:")
	for _, ref := range []string{"busybox", "busybox:latest", "docker.io/library/busybox:latest", "docker.io/busybox", "index.docker.io/library/busybox",
		"registry.example/team/foo:1", id, hex, hex[:12], "sha256:" + hex[:12], hex[:3]} {
		im, err := s.Lookup(context.Background(), ref)
		if err != nil {
			t.Errorf("Lookup(%q): %v", ref, err)
			continue
		}
		if im.ID != id {
			t.Errorf("Lookup(%q).ID = %s, want %s", ref, im.ID, id)
		}
	}
	for ref, msg := range map[string]string{
		"nosuch":                    "No such image: nosuch:latest",
		"busybox:1":                 "No such image: busybox:1",
		"registry.example/team/foo": "No such image: registry.example/team/foo:latest",
		"0123456789ab":              "No such image: 0123456789ab:latest",
	} {
		_, err := s.Lookup(context.Background(), ref)
		if !errors.Is(err, ErrNotFound) || err.Error() != msg {
			t.Errorf("Lookup(%q) = %v, want %q (ErrNotFound)", ref, err, msg)
		}
	}
	if _, err := s.Lookup(context.Background(), "Busybox"); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("Lookup(Busybox) = %v, want an invalid reference error", err)
	}
	im, _ := s.Lookup(context.Background(), "busybox")
	cf, _ := img.ConfigFile()
	if !slices.Equal(im.RepoTags, []string{"busybox:latest", "registry.example/team/foo:1"}) || len(im.RepoDigests) != 0 {
		t.Errorf("RepoTags %v RepoDigests %v", im.RepoTags, im.RepoDigests)
	}
	if !slices.Equal(im.Config.Config.Cmd, []string{"sh"}) || im.Config.Config.Labels["test"] != "sh" || !im.Created.Equal(cf.Created.Time) {
		t.Errorf("config %+v created %v", im.Config.Config, im.Created)
	}
	var diffIDs []string
	for _, d := range cf.RootFS.DiffIDs {
		diffIDs = append(diffIDs, d.String())
	}
	if !slices.Equal(im.Layers, diffIDs) {
		t.Errorf("Layers %v, want %v", im.Layers, diffIDs)
	}
	if want := int64(len("#!shell") + len("root:x:0:0::/root:/bin/sh\n") + len("root:x:0:\n") + len("old") + len("run") + len("new")); im.Size != want {
		t.Errorf("Size %d, want %d", im.Size, want)
	}

	// The state survives a reopen.
	s2 := openStore(t, s.dir)
	im2, err := s2.Lookup(context.Background(), "registry.example/team/foo:1")
	if err != nil || im2.ID != id || !slices.Equal(im2.RepoTags, im.RepoTags) || im2.Size != im.Size {
		t.Fatalf("after reopen: %+v %v", im2, err)
	}
}

func TestLoadOCIArchive(t *testing.T) {
	requireRoot(t)
	s := openStore(t, t.TempDir())
	img := testImage(t, "oci", testLayer(t, baseLayerEntries...))
	var buf bytes.Buffer
	if err := testimages.WriteOCIArchive(&buf, img, "127.0.0.1:5000/app:v2"); err != nil {
		t.Fatal(err)
	}
	got := load(t, s, buf.Bytes())
	if !slices.Equal(got, []string{"127.0.0.1:5000/app:v2"}) {
		t.Fatalf("Load = %v", got)
	}
	im, err := s.Lookup(context.Background(), "127.0.0.1:5000/app:v2")
	if err != nil || im.ID != configID(t, img) {
		t.Fatalf("Lookup: %+v %v", im, err)
	}
	d, _ := img.Digest()
	if im.Manifest != d.String() {
		t.Errorf("Manifest %s, want %s", im.Manifest, d)
	}

	// The busybox OCI archive of testimages: docker.io names.
	got = load(t, s, readFile(t, testimages.BusyboxOCI(t)))
	if !slices.Equal(got, []string{"busybox:latest"}) {
		t.Fatalf("Load busybox OCI = %v", got)
	}
}

func readFile(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestLoadUntaggedAndMultiImage(t *testing.T) {
	requireRoot(t)
	s := openStore(t, t.TempDir())
	a := testImage(t, "a", testLayer(t, baseLayerEntries...))
	got := load(t, s, dockerArchive(t, a))
	if !slices.Equal(got, []string{configID(t, a)}) {
		t.Fatalf("untagged Load = %v", got)
	}
	im, _ := s.Lookup(context.Background(), configID(t, a))
	if len(im.RepoTags) != 0 {
		t.Fatalf("RepoTags %v", im.RepoTags)
	}

	// A multi-image archive written by Save loads back whole.
	b := testImage(t, "b", testLayer(t, baseLayerEntries...), testLayer(t, appLayerEntries...))
	load(t, s, dockerArchive(t, b, "b:1"))
	if err := s.Tenant("default").Tag(context.Background(), configID(t, a), "a:1"); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := s.Tenant("default").Save(context.Background(), []string{"a:1", "b"}, &buf); err != nil {
		t.Fatal(err)
	}
	s2 := openStore(t, t.TempDir())
	got = load(t, s2, buf.Bytes())
	if !slices.Equal(got, []string{"a:1", "b:1"}) {
		t.Fatalf("Load of saved archive = %v", got)
	}
	for ref, img := range map[string]v1.Image{"a:1": a, "b:1": b} {
		im, err := s2.Lookup(context.Background(), ref)
		if err != nil || im.ID != configID(t, img) {
			t.Errorf("%s: %+v %v", ref, im, err)
		}
	}
	// go-containerregistry reads the archive as Docker's format too.
	ti, err := tarball.Image(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil }, ptr(mustTag(t, "b:1")))
	if err != nil {
		t.Fatal(err)
	}
	if configID(t, ti) != configID(t, b) {
		t.Errorf("tarball.Image config %s, want %s", configID(t, ti), configID(t, b))
	}
	ls, _ := ti.Layers()
	for i, l := range ls {
		want, _ := b.Layers()
		d1, _ := l.DiffID()
		d2, _ := want[i].DiffID()
		if d1 != d2 {
			t.Errorf("layer %d diffID %s, want %s", i, d1, d2)
		}
	}
}

func TestTagRemove(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	img := testImage(t, "sh", testLayer(t, baseLayerEntries...), testLayer(t, appLayerEntries...))
	id := configID(t, img)
	load(t, s, dockerArchive(t, img, "busybox:latest"))
	for _, target := range []string{"myrepo:1", "localhost:5000/x", "busybox:other"} {
		if err := s.Tenant("default").Tag(ctx, "busybox", target); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Tenant("default").Tag(ctx, "busybox", "bad@sha256:"+strings.Repeat("a", 64)); err == nil {
		t.Error("tagging with a digest succeeded")
	}
	if err := s.Tenant("default").Tag(ctx, "nosuch", "x:1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Tag of a missing image: %v", err)
	}
	im, _ := s.Lookup(ctx, id)
	if want := []string{"busybox:latest", "busybox:other", "localhost:5000/x:latest", "myrepo:1"}; !slices.Equal(im.RepoTags, want) || im.LastTagTime.IsZero() {
		t.Fatalf("RepoTags %v (want %v) LastTagTime %v", im.RepoTags, want, im.LastTagTime)
	}

	_, err := s.Tenant("default").Remove(ctx, id, false, false)
	if want := fmt.Sprintf("conflict: unable to delete %s (must be forced) - image is referenced in multiple repositories", id[7:19]); err == nil || err.Error() != want {
		t.Fatalf("Remove by ID = %v, want %q", err, want)
	}
	if st, ok := err.(interface{ HTTPStatus() int }); !ok || st.HTTPStatus() != 409 {
		t.Fatalf("status of %v", err)
	}
	del, err := s.Tenant("default").Remove(ctx, "myrepo:1", false, false)
	if err != nil || !slices.Equal(del, []Deleted{{Untagged: "myrepo:1"}}) {
		t.Fatalf("Remove tag = %v, %v", del, err)
	}

	// Containers using the image.
	s.SetInUse(func(imageID string) []string {
		if imageID == id {
			return []string{"0123456789abcdef0123"}
		}
		return nil
	})
	s.Tenant("default").Remove(ctx, "busybox:other", false, false)
	s.Tenant("default").Remove(ctx, "localhost:5000/x", false, false)
	_, err = s.Tenant("default").Remove(ctx, "busybox", false, false)
	if want := fmt.Sprintf(`conflict: unable to remove repository reference "busybox" (must force) - container 0123456789ab is using its referenced image %s`, id[7:19]); err == nil || err.Error() != want {
		t.Fatalf("Remove in use = %v, want %q", err, want)
	}
	del, err = s.Tenant("default").Remove(ctx, "busybox", true, false)
	if err != nil || !slices.Equal(del, []Deleted{{Untagged: "busybox:latest"}}) {
		t.Fatalf("forced Remove in use = %v, %v", del, err)
	}
	if _, err := s.Lookup(ctx, id); err != nil {
		t.Fatalf("an image in use was deleted: %v", err)
	}
	s.SetInUse(nil)

	del, err = s.Tenant("default").Remove(ctx, id[7:19], false, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(del) != 3 || del[0].Deleted != id || del[1].Deleted == "" || del[2].Deleted != im.Layers[0] {
		t.Fatalf("Remove by ID = %+v", del)
	}
	if _, err := s.Lookup(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Lookup after delete: %v", err)
	}
	assertEmpty(t, s)
}

// assertEmpty checks that no image, layer or blob is left.
func assertEmpty(t testing.TB, s *Store) {
	t.Helper()
	imgs, _ := s.List(context.Background())
	if len(imgs) != 0 {
		t.Errorf("images left: %v", imgs)
	}
	for _, d := range []string{"layers", "blobs/sha256", "images", "tmp"} {
		ents, _ := os.ReadDir(filepath.Join(s.dir, d))
		if len(ents) != 0 {
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			t.Errorf("%s not empty: %v", d, names)
		}
	}
}

func TestRemoveKeepsSharedLayers(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	base := testLayer(t, baseLayerEntries...)
	a := testImage(t, "a", base)
	b := testImage(t, "b", base, testLayer(t, appLayerEntries...))
	load(t, s, dockerArchive(t, a, "a:1"))
	load(t, s, dockerArchive(t, b, "b:1"))
	ia, _ := s.Lookup(ctx, "a:1")
	ib, _ := s.Lookup(ctx, "b:1")
	if ia.SharedSize != ia.Size || ib.SharedSize != ia.Size || ib.Size <= ia.Size {
		t.Errorf("sizes: a %d/%d b %d/%d", ia.Size, ia.SharedSize, ib.Size, ib.SharedSize)
	}
	if got := s.Tenant("default").LayersSize(ctx); got != ib.Size {
		t.Errorf("LayersSize %d, want %d", got, ib.Size)
	}
	del, err := s.Tenant("default").Remove(ctx, "a:1", false, false)
	if err != nil || len(del) != 2 { // untagged, deleted (no layer)
		t.Fatalf("Remove a = %+v %v", del, err)
	}
	if _, err := os.Stat(s.LayerPath(ib.Layers[0])); err != nil {
		t.Fatalf("shared layer removed: %v", err)
	}
	if _, err := s.Tenant("default").Remove(ctx, "b:1", false, false); err != nil {
		t.Fatal(err)
	}
	assertEmpty(t, s)
}

func TestPrune(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	a := testImage(t, "a", testLayer(t, baseLayerEntries...))
	b := testImage(t, "b", testLayer(t, appLayerEntries...))
	c := testImage(t, "c", testLayer(t, tarEntry{name: "c", body: "c"}))
	load(t, s, dockerArchive(t, a))        // dangling
	load(t, s, dockerArchive(t, b, "b:1")) // tagged, unused
	load(t, s, dockerArchive(t, c, "c:1")) // tagged, used
	s.SetInUse(func(id string) []string {
		if id == configID(t, c) {
			return []string{"ctr"}
		}
		return nil
	})
	rep, err := s.Tenant("default").Prune(ctx, false, nil)
	if err != nil || len(rep.Deleted) != 2 || rep.Deleted[0].Deleted != configID(t, a) || rep.SpaceReclaimed <= 0 {
		t.Fatalf("Prune dangling = %+v %v", rep, err)
	}
	if _, err := s.Lookup(ctx, "b:1"); err != nil {
		t.Fatal("prune of dangling images removed a tagged one")
	}
	rep, err = s.Tenant("default").Prune(ctx, true, func(im Image) bool { return false })
	if err != nil || len(rep.Deleted) != 3 || rep.Deleted[0].Untagged != "b:1" {
		t.Fatalf("Prune all = %+v %v", rep, err)
	}
	imgs, _ := s.List(ctx)
	if len(imgs) != 1 || imgs[0].ID != configID(t, c) {
		t.Fatalf("left %+v", imgs)
	}
}

func TestConcurrentLoadsStoreLayersOnce(t *testing.T) {
	requireRoot(t)
	s := openStore(t, t.TempDir())
	base := testLayer(t, baseLayerEntries...)
	app := testLayer(t, appLayerEntries...)
	var archives [][]byte
	for i := range 4 {
		img := testImage(t, fmt.Sprint("cmd", i), base, app)
		archives = append(archives, dockerArchive(t, img, fmt.Sprintf("img%d:latest", i)))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Tenant("default").Load(context.Background(), bytes.NewReader(archives[i%4]), nil); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(filepath.Join(s.dir, "layers"))
	if len(ents) != 2 {
		t.Fatalf("%d layer directories, want 2", len(ents))
	}
	imgs, _ := s.List(context.Background())
	if len(imgs) != 4 {
		t.Fatalf("%d images, want 4", len(imgs))
	}
}

func TestFailedLoadLeavesNothing(t *testing.T) {
	requireRoot(t)
	s := openStore(t, t.TempDir())
	img := testImage(t, "sh", testLayer(t, baseLayerEntries...), testLayer(t, appLayerEntries...))
	full := dockerArchive(t, img, "busybox:latest")
	for _, cut := range []int{100, len(full) / 2, len(full) * 3 / 4} {
		if _, err := s.Tenant("default").Load(context.Background(), bytes.NewReader(full[:cut]), nil); err == nil {
			t.Fatalf("Load of %d of %d bytes succeeded", cut, len(full))
		}
	}
	// A layer whose content does not match the config's diffID.
	bad := testImage(t, "bad", testLayer(t, tarEntry{name: "x", body: "x"}))
	cf, _ := bad.ConfigFile()
	cf = cf.DeepCopy()
	cf.RootFS.DiffIDs[0] = v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("0", 64)}
	bad, err := mutate.ConfigFile(bad, cf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Tenant("default").Load(context.Background(), bytes.NewReader(dockerArchive(t, bad, "bad:1")), nil); err == nil || !strings.Contains(err.Error(), "diffID mismatch") {
		t.Fatalf("Load with a wrong diffID: %v", err)
	}
	openStore(t, s.dir) // sweeps what the failures left
	assertEmpty(t, s)
}

func mustTag(t testing.TB, s string) name.Tag {
	t.Helper()
	tag, err := name.NewTag(s)
	if err != nil {
		t.Fatal(err)
	}
	return tag
}

func ptr[T any](v T) *T { return &v }
