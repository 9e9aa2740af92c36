package ocispec

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/macro-cloud/macro/types"
)

const testRunc = "/usr/sbin/runc"

// busyboxRootfs makes a rootfs of /bin/busybox with its applets as
// symlinks, and a passwd and group with a user "app" (1000:1000, also in
// group "extra" 2000).
func busyboxRootfs(t *testing.T) string {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skipf("no busybox: %v", err)
	}
	root := filepath.Join(t.TempDir(), "rootfs")
	for _, d := range []string{"bin", "etc", "tmp", "proc", "sys", "dev", "home/app"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "bin/busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		t.Fatalf("busybox --list: %v", err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(root, "bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
		"etc/group":  "root:x:0:\napp:x:1000:\nextra:x:2000:app\n",
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func randomID(t *testing.T) string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// runInRunc writes the generated spec into a bundle and runs it to
// completion with runc, returning its output.
func runInRunc(t *testing.T, spec types.PodSpec) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if _, err := os.Stat(testRunc); err != nil {
		t.Skipf("no runc: %v", err)
	}
	rootfs := busyboxRootfs(t)
	bundle := filepath.Dir(rootfs)
	id := randomID(t)
	hostname := id[:12]
	etc, err := WriteEtcFiles(filepath.Join(bundle, "etc"), EtcConfig{Hostname: hostname})
	if err != nil {
		t.Fatal(err)
	}
	parent := "/macro-test-ocispec"
	s, err := Generate(Input{
		ID:           id,
		Spec:         spec,
		Image:        ImageConfig{Cmd: []string{"sh"}},
		Rootfs:       rootfs,
		EtcFiles:     etc,
		CgroupParent: parent,
	})
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.MarshalIndent(s, "", "\t")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	stateRoot := filepath.Join(t.TempDir(), "runc")
	runc := func(args ...string) *exec.Cmd {
		return exec.Command(testRunc, append([]string{"--root", stateRoot}, args...)...)
	}
	t.Cleanup(func() {
		if out, err := runc("delete", "--force", id).CombinedOutput(); err != nil && !strings.Contains(string(out), "does not exist") {
			t.Logf("runc delete: %v: %s", err, out)
		}
		// runc removes the container's cgroups; the parent is ours.
		for _, c := range []string{"blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "memory", "pids", "systemd", "net_cls", "net_prio", "perf_event", "hugetlb", "rdma", "misc", "unified"} {
			os.Remove(filepath.Join("/sys/fs/cgroup", c, parent, id))
			os.Remove(filepath.Join("/sys/fs/cgroup", c, parent))
		}
	})
	cmd := runc("run", "--bundle", bundle, id)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("runc run: %v\n%s", err, out)
	}
	return string(out)
}

func TestRunc(t *testing.T) {
	script := `id; grep -E '^(CapEff|CapBnd|CapInh|Seccomp|NoNewPrivs):' /proc/self/status; ulimit -n; hostname; pwd;
cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/pids/pids.max 2>&1;
(echo x > /probe) 2>/dev/null && echo rootfs-writable; echo x > /scratch/probe && echo tmpfs-writable;
echo firmware: $(ls /sys/firmware | wc -l); (echo 1 > /proc/sys/kernel/hostname) 2>/dev/null || echo proc-sys-ro;
echo $HOME $TERM $FOO; (echo x > /etc/hostname) 2>/dev/null && echo etc-writable;
mount | grep -E ' / | /scratch ' | cut -d' ' -f3-; echo ok`
	nofile := strconv.FormatUint(DetectHost().Nofile, 10)
	cases := []struct {
		name    string
		spec    types.PodSpec
		want    []string
		notWant []string
	}{
		{
			name: "root with limits",
			spec: types.PodSpec{
				Cmd:        []string{"sh", "-c", script},
				Env:        []string{"FOO=bar"},
				WorkingDir: "/does/not/exist",
				Tmpfs:      map[string]string{"/scratch": "size=1m"},
				Resources:  types.Resources{MemoryBytes: 64 << 20, NanoCPUs: 5e8, PidsLimit: 100},
			},
			want: []string{
				"uid=0(root) gid=0(root) groups=0(root)",
				"CapEff:\t00000000a80425fb",
				"CapBnd:\t00000000a80425fb",
				"CapInh:\t0000000000000000",
				"Seccomp:\t2",
				"NoNewPrivs:\t0",
				nofile,
				"134217728",
				"firmware: 0",
				"proc-sys-ro",
				"etc-writable",
				"/does/not/exist",
				"67108864",
				"50000",
				"100",
				"rootfs-writable",
				"tmpfs-writable",
				"/root bar",
				"ok",
			},
		},
		{
			name: "user by name, read-only",
			spec: types.PodSpec{
				Cmd:      []string{"sh", "-c", script},
				User:     "app",
				ReadOnly: true,
				Tty:      false,
				Tmpfs:    map[string]string{"/scratch": ""},
			},
			want: []string{
				"uid=1000(app) gid=1000(app) groups=1000(app),2000(extra)",
				"CapEff:\t0000000000000000",
				"Seccomp:\t2",
				"tmpfs-writable",
				"/home/app",
				"firmware: 0",
				"proc-sys-ro",
				"ok",
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := runInRunc(t, tc.spec)
			t.Logf("output:\n%s", out)
			lines := map[string]bool{}
			for _, l := range strings.Split(out, "\n") {
				lines[strings.TrimSpace(l)] = true
			}
			for _, w := range tc.want {
				if !lines[w] {
					t.Errorf("missing line %q", w)
				}
			}
			for _, w := range tc.notWant {
				if lines[w] {
					t.Errorf("unexpected line %q", w)
				}
			}
		})
	}
}
