package testenv

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/macro-cloud/macro/internal/testimages"
)

// A real runc container laid out as the macro server lays it out (state in
// DIR/runtime/sandbox/root/runc, cgroup /macro/<id>, overlay rootfs under
// DIR), left running: cleanupDataDir must kill it and remove its cgroups,
// mounts and the directory.
func TestCleanupRuncContainer(t *testing.T) {
	needRoot(t)
	if _, err := exec.LookPath("runc"); err != nil {
		t.Skip("runc missing: run scripts/setup.sh")
	}
	dir, err := os.MkdirTemp("", dataDirPrefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cleanupDataDir(dir, true, t.Logf) }) // in case the test fails half way
	if err := writeOwner(dir); err != nil {
		t.Fatal(err)
	}

	// Rootfs: the busybox layer under an overlay mount.
	lower, upper, work, rootfs := filepath.Join(dir, "lower"), filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "bundle", "rootfs")
	for _, d := range []string{lower, upper, work, rootfs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	layers, err := testimages.BusyboxImage(t).Layers()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	untar := exec.Command("tar", "-C", lower, "-xf", "-")
	untar.Stdin = rc
	if out, err := untar.CombinedOutput(); err != nil {
		t.Fatalf("untar: %v %s", err, out)
	}
	rc.Close()
	if err := unix.Mount("overlay", rootfs, "overlay", 0, "lowerdir="+lower+",upperdir="+upper+",workdir="+work); err != nil {
		t.Fatalf("overlay: %v", err)
	}

	// Bundle: runc's default spec, running sleep in cgroup /macro/<id>.
	id := "testenv-" + strconv.Itoa(os.Getpid())
	bundle := filepath.Dir(rootfs)
	if out, err := exec.Command("runc", "spec", "--bundle", bundle).CombinedOutput(); err != nil {
		t.Fatalf("runc spec: %v %s", err, out)
	}
	var spec map[string]any
	b, _ := os.ReadFile(filepath.Join(bundle, "config.json"))
	json.Unmarshal(b, &spec)
	proc := spec["process"].(map[string]any)
	proc["args"] = []string{"sleep", "3600"}
	proc["terminal"] = false
	spec["root"] = map[string]any{"path": rootfs}
	spec["linux"].(map[string]any)["cgroupsPath"] = "/macro/" + id
	b, _ = json.Marshal(spec)
	os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o644)

	root := filepath.Join(dir, "runtime", "sandbox", "root", "runc")
	run := exec.Command("runc", "--root", root, "run", "--detach", "--bundle", bundle, id)
	// Files, not pipes: the detached container inherits them.
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	run.Stdin, run.Stdout, run.Stderr = devnull, devnull, devnull
	if err := run.Run(); err != nil {
		t.Fatalf("runc run: %v", err)
	}
	st, err := readRuncState(filepath.Join(root, id, "state.json"))
	if err != nil || st.Pid == 0 || !processRunning(st.Pid) {
		t.Fatalf("container not running: %+v %v", st, err)
	}
	memCg := filepath.Join(cgroupRoot, "memory", "macro", id)
	if _, err := os.Stat(memCg); err != nil {
		t.Fatalf("no cgroup %s: %v", memCg, err)
	}

	if err := cleanupDataDir(dir, true, t.Logf); err != nil {
		t.Fatal(err)
	}

	time.Sleep(20 * time.Millisecond)
	if processRunning(st.Pid) {
		t.Errorf("container process %d survived", st.Pid)
	}
	for _, p := range st.CgroupPaths {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("cgroup %s survived", p)
		}
	}
	if mps, _ := mountsUnder(dir); len(mps) > 0 {
		t.Errorf("mounts survived: %q", mps)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s survived: %v", dir, err)
	}
	if out, _ := exec.Command("runc", "--root", root, "list", "--quiet").Output(); strings.TrimSpace(string(out)) != "" {
		t.Errorf("runc still lists %q", out)
	}
}
