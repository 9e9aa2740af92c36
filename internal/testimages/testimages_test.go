package testimages

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func needBusybox(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(BusyboxBinary); err != nil {
		t.Skipf("%s missing: run scripts/setup.sh", BusyboxBinary)
	}
}

// tarEntries lists the headers of the tar file at path.
func tarEntries(t *testing.T, r io.Reader) map[string]*tar.Header {
	t.Helper()
	out := map[string]*tar.Header{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out[h.Name] = h
	}
}

func readArchiveFile(t *testing.T, archive, file string) []byte {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("%s: no %s: %v", archive, file, err)
		}
		if h.Name == file {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
}

func checkBusyboxImage(t *testing.T, img v1.Image) {
	t.Helper()
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cfg.Config.Cmd, " "); got != "sh" {
		t.Errorf("Cmd = %q, want sh", got)
	}
	if cfg.RootFS.Type != "layers" {
		t.Errorf("rootfs.type = %q, want layers (docker load insists)", cfg.RootFS.Type)
	}
	if cfg.Architecture != "amd64" || cfg.OS != "linux" {
		t.Errorf("platform = %s/%s", cfg.OS, cfg.Architecture)
	}
	if len(cfg.Config.Env) != 1 || cfg.Config.Env[0] != DefaultPath {
		t.Errorf("Env = %q", cfg.Config.Env)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 || len(cfg.RootFS.DiffIDs) != 1 {
		t.Fatalf("%d layers, %d diff IDs; want 1", len(layers), len(cfg.RootFS.DiffIDs))
	}
	diffID, err := layers[0].DiffID()
	if err != nil {
		t.Fatal(err)
	}
	if diffID != cfg.RootFS.DiffIDs[0] {
		t.Errorf("layer diff ID %s, config says %s", diffID, cfg.RootFS.DiffIDs[0])
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	entries := tarEntries(t, rc)
	for _, tc := range []struct {
		name     string
		typ      byte
		link     string
		mode     int64
		uid      int
		checkUID bool
	}{
		{name: "bin/busybox", typ: tar.TypeReg, mode: 0o755},
		{name: "bin/sh", typ: tar.TypeSymlink, link: "busybox"},
		{name: "bin/ls", typ: tar.TypeSymlink, link: "busybox"},
		{name: "bin/sleep", typ: tar.TypeSymlink, link: "busybox"},
		{name: "etc/passwd", typ: tar.TypeReg, mode: 0o644},
		{name: "etc/group", typ: tar.TypeReg, mode: 0o644},
		{name: "tmp/", typ: tar.TypeDir, mode: 0o1777},
		{name: "root/", typ: tar.TypeDir, mode: 0o700},
		{name: "home/app/", typ: tar.TypeDir, mode: 0o755, uid: AppUID, checkUID: true},
	} {
		h, ok := entries[tc.name]
		if !ok {
			t.Errorf("layer has no %s", tc.name)
			continue
		}
		if h.Typeflag != tc.typ || h.Linkname != tc.link {
			t.Errorf("%s: type %c link %q, want %c %q", tc.name, h.Typeflag, h.Linkname, tc.typ, tc.link)
		}
		if tc.mode != 0 && h.Mode != tc.mode {
			t.Errorf("%s: mode %o, want %o", tc.name, h.Mode, tc.mode)
		}
		if tc.checkUID && (h.Uid != tc.uid || h.Gid != tc.uid) {
			t.Errorf("%s: owner %d:%d, want %d", tc.name, h.Uid, h.Gid, tc.uid)
		}
	}
	for name := range entries {
		if strings.HasPrefix(name, "/") || strings.Contains(name, "..") {
			t.Errorf("unsafe entry %q", name)
		}
	}
}

func TestBusyboxDockerArchive(t *testing.T) {
	needBusybox(t)
	p := Busybox(t)
	tag, err := name.NewTag(BusyboxRef)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(p, &tag)
	if err != nil {
		t.Fatalf("read back %s: %v", p, err)
	}
	checkBusyboxImage(t, img)

	var manifest []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(readArchiveFile(t, p, "manifest.json"), &manifest); err != nil {
		t.Fatal(err)
	}
	if len(manifest) != 1 || len(manifest[0].RepoTags) != 1 || manifest[0].RepoTags[0] != BusyboxRef {
		t.Fatalf("manifest.json = %+v", manifest)
	}
	if !strings.HasSuffix(manifest[0].Layers[0], "/layer.tar") {
		t.Errorf("layer path %q is not <id>/layer.tar", manifest[0].Layers[0])
	}
	var repos map[string]map[string]string
	if err := json.Unmarshal(readArchiveFile(t, p, "repositories"), &repos); err != nil {
		t.Fatal(err)
	}
	if repos["busybox"]["latest"] == "" {
		t.Errorf("repositories = %v", repos)
	}

	// The image must be the same on every build: a second build into
	// another directory gives the same bytes.
	p2, _, err := BuildBusyboxArchives(t.TempDir(), BusyboxBinary)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(p)
	b, _ := os.ReadFile(p2)
	if string(a) != string(b) {
		t.Error("two builds of the busybox archive differ")
	}
}

func TestBusyboxOCIArchive(t *testing.T) {
	needBusybox(t)
	p := BusyboxOCI(t)
	dir := t.TempDir()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		target := filepath.Join(dir, h.Name)
		if h.Typeflag == tar.TypeDir {
			os.MkdirAll(target, 0o755)
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Dir(target), 0o755)
		if err := os.WriteFile(target, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 {
		t.Fatalf("index has %d manifests", len(im.Manifests))
	}
	desc := im.Manifests[0]
	if got := desc.Annotations["org.opencontainers.image.ref.name"]; got != "latest" {
		t.Errorf("ref.name annotation = %q", got)
	}
	if got := desc.Annotations["io.containerd.image.name"]; got != "docker.io/library/busybox:latest" {
		t.Errorf("image.name annotation = %q", got)
	}
	img, err := idx.Image(desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	checkBusyboxImage(t, img)

	// Same image ID (config digest) as the docker archive.
	ociID, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	dockerID, err := BusyboxImage(t).ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	if ociID != dockerID {
		t.Errorf("OCI image ID %s, docker archive %s", ociID, dockerID)
	}
}

// skopeo, an independent implementation, must read both archives.
func TestBusyboxArchivesSkopeo(t *testing.T) {
	needBusybox(t)
	if _, err := exec.LookPath("skopeo"); err != nil {
		t.Skip("skopeo missing: run scripts/setup.sh")
	}
	for _, ref := range []string{
		"docker-archive:" + Busybox(t),
		"oci-archive:" + BusyboxOCI(t) + ":latest",
	} {
		out, err := exec.Command("skopeo", "inspect", "--config", ref).CombinedOutput()
		if err != nil {
			t.Errorf("skopeo inspect %s: %v\n%s", ref, err, out)
			continue
		}
		var cfg v1.ConfigFile
		if err := json.Unmarshal(out, &cfg); err != nil {
			t.Errorf("skopeo inspect %s: %v", ref, err)
			continue
		}
		if len(cfg.Config.Cmd) != 1 || cfg.Config.Cmd[0] != "sh" {
			t.Errorf("skopeo inspect %s: Cmd %q", ref, cfg.Config.Cmd)
		}
	}
}

func TestCachedConcurrent(t *testing.T) {
	dir := t.TempDir()
	var (
		mu     sync.Mutex
		builds int
		wg     sync.WaitGroup
	)
	paths := make([]string, 8)
	errs := make([]error, 8)
	for i := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			paths[i], errs[i] = Cached(dir, "thing", func(tmp string) error {
				mu.Lock()
				builds++
				mu.Unlock()
				return os.WriteFile(tmp, []byte("content"), 0o644)
			})
		}()
	}
	wg.Wait()
	for i := range paths {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if paths[i] != filepath.Join(dir, "thing") {
			t.Errorf("path %q", paths[i])
		}
	}
	if builds != 1 {
		t.Errorf("built %d times, want 1", builds)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "thing")); string(b) != "content" {
		t.Errorf("content %q", b)
	}

	// A failed build publishes nothing and leaves no temporary file.
	_, err := Cached(dir, "broken", func(tmp string) error {
		os.WriteFile(tmp, []byte("half"), 0o644)
		return errors.New("boom")
	})
	if err == nil {
		t.Fatal("failed build succeeded")
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "broken") {
			t.Errorf("left behind %s", e.Name())
		}
	}
}

func TestRedisSkipsWhenNotBuilt(t *testing.T) {
	t.Setenv("MACRO_TEST_CACHE", t.TempDir())
	ran := false
	t.Run("redis", func(t *testing.T) {
		Redis(t)
		ran = true
	})
	if ran {
		t.Error("Redis returned a path from an empty cache")
	}
}
