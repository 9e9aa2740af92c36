package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/macro-cloud/macro/types"
)

// TestVolumeMounts: a fresh volume is filled from the image once, with
// owners, modes and symlinks; a sub-path is staged inside the volume even
// through a symlink to "/"; unmountVolumes undoes the staging so that the
// pod directory can go without touching the volume.
func TestVolumeMounts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: chown and bind mounts")
	}
	data := t.TempDir()
	a := &Agent{cfg: Config{DataDir: data}}
	w := &worker{a: a, dir: filepath.Join(t.TempDir(), "pod")}
	os.MkdirAll(w.dir, 0o711)
	rootfs := t.TempDir()
	os.MkdirAll(filepath.Join(rootfs, "srv", "data", "deep"), 0o750)
	os.WriteFile(filepath.Join(rootfs, "srv", "data", "deep", "f"), []byte("image"), 0o640)
	os.Chown(filepath.Join(rootfs, "srv", "data", "deep", "f"), 1000, 1001)
	os.Symlink("/etc/passwd", filepath.Join(rootfs, "srv", "data", "link"))
	// The image's path to the volume's target leads through a symlink:
	// it resolves inside the rootfs, never on the host.
	os.Symlink("/srv/data", filepath.Join(rootfs, "alias"))

	pod := types.Pod{ID: "p1", Tenant: "alice", Spec: types.PodSpec{Mounts: []types.Mount{
		{Type: "volume", Source: "v1", Target: "/alias"},
		{Type: "volume", Source: "v2", Target: "/srv/data", NoCopy: true},
		{Type: "tmpfs", Target: "/t"},
	}}}
	mounts, err := w.volumeMounts(pod, rootfs)
	if err != nil {
		t.Fatal(err)
	}
	v1 := filepath.Join(data, "volumes", "alice", "v1", "_data")
	if len(mounts) != 2 || mounts[0].Source != v1 || mounts[0].Destination != "/alias" {
		t.Fatalf("mounts: %+v", mounts)
	}
	got, err := os.ReadFile(filepath.Join(v1, "deep", "f"))
	st, _ := os.Stat(filepath.Join(v1, "deep", "f"))
	if err != nil || string(got) != "image" || st.Mode().Perm() != 0o640 || st.Sys().(*syscall.Stat_t).Uid != 1000 || st.Sys().(*syscall.Stat_t).Gid != 1001 {
		t.Errorf("copied file: %q %v %v", got, err, st)
	}
	if l, err := os.Readlink(filepath.Join(v1, "link")); err != nil || l != "/etc/passwd" {
		t.Errorf("copied symlink: %q %v", l, err)
	}
	if entries, _ := os.ReadDir(filepath.Join(data, "volumes", "alice", "v2", "_data")); len(entries) != 0 {
		t.Errorf("nocopy volume has %d entries", len(entries))
	}

	// Not copied again on the next start, even when emptied.
	os.RemoveAll(filepath.Join(v1, "deep"))
	os.Remove(filepath.Join(v1, "link"))
	if _, err := w.volumeMounts(pod, rootfs); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(v1); len(entries) != 0 {
		t.Errorf("a volume emptied by the tenant was refilled on restart: %d entries", len(entries))
	}

	// A sub-path through a symlink to "/" stays in the volume.
	os.MkdirAll(filepath.Join(v1, "sub"), 0o755)
	os.WriteFile(filepath.Join(v1, "sub", "marker"), []byte("in-volume"), 0o644)
	os.Symlink("/", filepath.Join(v1, "escape"))
	pod.Spec.Mounts = []types.Mount{{Type: "volume", Source: "v1", Target: "/m", Subpath: "escape/sub"}}
	mounts, err = w.volumeMounts(pod, rootfs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.unmountVolumes() })
	if got, err := os.ReadFile(filepath.Join(mounts[0].Source, "marker")); err != nil || string(got) != "in-volume" {
		t.Errorf("staged sub-path: %q %v (source %s)", got, err, mounts[0].Source)
	}
	pod.Spec.Mounts[0].Subpath = "escape/etc"
	if _, err := w.volumeMounts(pod, rootfs); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("sub-path escape/etc (the host's /etc, not the volume's): %v", err)
	}

	// Undo the staging, then the pod directory can go: the volume stays.
	if err := w.unmountVolumes(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(w.dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(v1, "sub", "marker")); err != nil {
		t.Errorf("the volume lost its data with the pod directory: %v", err)
	}
	if err := a.RemoveVolume(context.Background(), "alice", "v1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(data, "volumes", "alice", "v1")); !os.IsNotExist(err) {
		t.Errorf("RemoveVolume left %v", err)
	}
	if err := a.RemoveVolume(context.Background(), "alice", "../bob"); err == nil {
		t.Error("RemoveVolume accepted ../bob")
	}
}
