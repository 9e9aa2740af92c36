package image

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// preparedRootfs loads a two-layer image and mounts a container rootfs
// over it, unmounted when the test ends, pass or fail.
func preparedRootfs(t *testing.T) (s *Store, dir, rootfs string) {
	t.Helper()
	requireRoot(t)
	s = openStore(t, t.TempDir())
	img := testImage(t, "sh", testLayer(t, baseLayerEntries...), testLayer(t, appLayerEntries...))
	load(t, s, dockerArchive(t, img, "busybox:latest"))
	dir = t.TempDir()
	t.Cleanup(func() {
		if err := s.Release(dir); err != nil {
			t.Errorf("release: %v", err)
		}
	})
	rootfs, err := s.Prepare(context.Background(), configID(t, img), dir)
	if err != nil {
		t.Fatal(err)
	}
	return s, dir, rootfs
}

func TestPrepareOverlay(t *testing.T) {
	s, dir, rootfs := preparedRootfs(t)
	if rootfs != filepath.Join(dir, "rootfs") {
		t.Fatalf("rootfs %s", rootfs)
	}
	// The merged view: both layers, the whiteout and the opaque directory.
	for p, want := range map[string]string{"bin/sh": "#!shell", "app/run": "run", "var/lib/data/new": "new", "etc/passwd": "root:x:0:0::/root:/bin/sh\n"} {
		if got, err := os.ReadFile(filepath.Join(rootfs, p)); err != nil || string(got) != want {
			t.Errorf("%s = %q %v, want %q", p, got, err, want)
		}
	}
	for _, p := range []string{"etc/group", "var/lib/data/old"} {
		if _, err := os.Lstat(filepath.Join(rootfs, p)); !os.IsNotExist(err) {
			t.Errorf("%s visible: %v", p, err)
		}
	}
	// Mountpoints of the runtime come from the init layer.
	for _, p := range []string{"proc", "sys", "dev/pts", "etc/hostname", "etc/resolv.conf", ".dockerenv"} {
		if _, err := os.Lstat(filepath.Join(rootfs, p)); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	// Idempotent: a second Prepare (after a restart) reuses the mount.
	img, err := s.Tenant("default").Lookup(context.Background(), "busybox")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Prepare(context.Background(), "busybox", dir); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Prepare by name (IDs only): %v", err)
	}
	again, err := s.Prepare(context.Background(), img.ID, dir)
	if err != nil || again != rootfs {
		t.Fatalf("second Prepare: %s %v", again, err)
	}
	if ch, err := Changes(dir); err != nil || len(ch) != 0 {
		t.Fatalf("changes of a fresh rootfs: %v %v", ch, err)
	}

	// Change things: add, modify, delete (a file and a directory).
	must(t, os.WriteFile(filepath.Join(rootfs, "app/new.txt"), []byte("n"), 0o644))
	must(t, os.WriteFile(filepath.Join(rootfs, "etc/passwd"), []byte("changed"), 0o644))
	must(t, os.Remove(filepath.Join(rootfs, "bin/sh")))
	must(t, os.MkdirAll(filepath.Join(rootfs, "newdir/sub"), 0o755))
	must(t, os.RemoveAll(filepath.Join(rootfs, "var/lib/data")))
	ch, err := Changes(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []Change{
		{"/app", ChangeModify}, {"/app/new.txt", ChangeAdd},
		{"/bin", ChangeModify}, {"/bin/sh", ChangeDelete},
		{"/etc", ChangeModify}, {"/etc/passwd", ChangeModify},
		{"/newdir", ChangeAdd}, {"/newdir/sub", ChangeAdd},
		{"/var", ChangeModify}, {"/var/lib", ChangeModify}, {"/var/lib/data", ChangeDelete},
	}
	if !slices.Equal(ch, want) {
		t.Fatalf("Changes:\n got %v\nwant %v", ch, want)
	}

	// Release unmounts, twice is fine, and Prepare mounts again with the
	// changes kept.
	must(t, s.Release(dir))
	must(t, s.Release(dir))
	if m, _ := isMountpoint(rootfs); m {
		t.Fatal("still mounted")
	}
	if _, err := s.Prepare(context.Background(), img.ID, dir); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(rootfs, "etc/passwd")); string(got) != "changed" {
		t.Fatalf("etc/passwd after remount: %q", got)
	}
	// Release with something holding the mount busy: a lazy unmount.
	f, err := os.Open(filepath.Join(rootfs, "etc/passwd"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := s.Release(dir); err != nil {
		t.Fatalf("release while busy: %v", err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestArchiveStatExport(t *testing.T) {
	_, _, rootfs := preparedRootfs(t)
	must(t, os.Symlink("/etc/passwd", filepath.Join(rootfs, "pwlink")))
	must(t, os.Symlink("/app", filepath.Join(rootfs, "applink")))
	must(t, os.Symlink("../../../../../../..", filepath.Join(rootfs, "up")))

	st, err := StatPath(rootfs, "/etc/passwd")
	if err != nil || st.Name != "passwd" || st.Size != int64(len("root:x:0:0::/root:/bin/sh\n")) || !st.Mode.IsRegular() {
		t.Fatalf("stat passwd: %+v %v", st, err)
	}
	st, err = StatPath(rootfs, "/pwlink")
	if err != nil || st.Mode&os.ModeSymlink == 0 || st.LinkTarget != "/etc/passwd" {
		t.Fatalf("stat pwlink: %+v %v", st, err)
	}
	st, err = StatPath(rootfs, "/up/etc/passwd")
	if err != nil || st.Name != "passwd" {
		t.Fatalf("stat through a symlink up: %+v %v (must stay in the rootfs)", st, err)
	}
	if _, err := StatPath(rootfs, "/nosuch"); !os.IsNotExist(err) {
		t.Fatalf("stat of a missing file: %v", err)
	}

	names := func(rc io.ReadCloser) map[string]string {
		t.Helper()
		defer rc.Close()
		out := map[string]string{}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				return out
			}
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(tr)
			out[h.Name] = string(b) + h.Linkname
		}
	}
	rc, st, err := ArchivePath(rootfs, "/app")
	if err != nil || !st.Mode.IsDir() {
		t.Fatal(err)
	}
	if got := names(rc); got["app/"] != "" || got["app/run"] != "run" || len(got) != 2 {
		t.Fatalf("archive /app: %v", got)
	}
	rc, _, err = ArchivePath(rootfs, "/applink")
	if err != nil {
		t.Fatal(err)
	}
	if got := names(rc); len(got) != 1 || got["applink"] != "/app" {
		t.Fatalf("archive of a symlink: %v", got)
	}
	rc, _, err = ArchivePath(rootfs, "/applink/")
	if err != nil {
		t.Fatal(err)
	}
	if got := names(rc); got["applink/run"] != "run" {
		t.Fatalf("archive through a symlink with a trailing slash: %v", got)
	}
	rc, _, err = ArchivePath(rootfs, "/app/.")
	if err != nil {
		t.Fatal(err)
	}
	if got := names(rc); got["./run"] != "run" {
		t.Fatalf("archive of dir/.: %v", got)
	}

	// docker cp into the container.
	var buf bytes.Buffer
	buf.Write(makeTar(t, tarEntry{name: "cp.txt", body: "copied"}, tarEntry{name: "../../escape", body: "no"}))
	must(t, ExtractInto(rootfs, "/applink", &buf))
	if got, _ := os.ReadFile(filepath.Join(rootfs, "app/cp.txt")); string(got) != "copied" {
		t.Fatalf("cp into the container: %q", got)
	}
	// Names are relative to the destination: ".." stops there.
	if _, err := os.Stat(filepath.Join(rootfs, "app/escape")); err != nil {
		t.Fatalf("../../escape should land in the destination: %v", err)
	}

	rc, err = Export(rootfs)
	if err != nil {
		t.Fatal(err)
	}
	got := names(rc)
	for _, want := range []string{"bin/sh", "app/run", "app/cp.txt", "etc/passwd", "pwlink", "proc/"} {
		if _, ok := got[want]; !ok {
			t.Errorf("export lacks %s", want)
		}
	}
	for n := range got {
		if strings.HasPrefix(n, "/") || strings.Contains(n, "..") {
			t.Errorf("export entry %q", n)
		}
	}
}
