package e2e

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/macro-cloud/macro/internal/testenv"
	"github.com/macro-cloud/macro/internal/testimages"
)

// volumeCloud is alice's cloud (docker, compose and kra) for the volume
// drivers.
type volumeCloud struct {
	*composeCloud
	t *testing.T
}

func newVolumeCloud(t *testing.T) *volumeCloud {
	testenv.RequireTools(t, "mkfs.ext4", "mkfs.btrfs", "btrfs")
	return &volumeCloud{composeCloud: newComposeCloud(t), t: t}
}

// kraRun runs kra as alice and returns its output and error, failing or not.
func (c *volumeCloud) kraRun(args ...string) (string, error) {
	c.t.Helper()
	home := c.t.TempDir()
	cmd := exec.Command(testenv.Kra(c.t), args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "TZ=UTC", "HOME=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, "config"),
		"KR_HOST=https://" + c.tc.addr, "KR_ACCESS_TOKEN=" + c.token, "KR_CA=" + c.caFile}
	out, err := cmd.CombinedOutput()
	c.t.Logf("kra %s: %v\n%s", strings.Join(args, " "), err, out)
	return string(out), err
}

// fails runs docker and wants it to fail with a message that contains want.
func (c *volumeCloud) fails(want string, args ...string) {
	c.t.Helper()
	r := c.docker(c.t, args...)
	if r.ExitCode == 0 || !strings.Contains(r.Combined(), want) {
		c.t.Fatalf("docker %s: exit %d, want a failure saying %q:\n%s", strings.Join(args, " "), r.ExitCode, want, r.Combined())
	}
}

// mountedUnder lists the mount points under dir.
func mountedUnder(t *testing.T, dir string) []string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) > 4 && strings.HasPrefix(fs[4], dir+"/") {
			out = append(out, fs[4])
		}
	}
	return out
}

// TestVolumeDrivers: lv2, nfs and gfs volumes through the docker CLI, kra
// and compose: sizes enforced with ENOSPC inside the container, snapshots
// and rollback with the files checked, errors in the client's words,
// another tenant's volumes invisible, and volumes kept across a restart
// of the server, mounts and all, then removed with their mounts.
func TestVolumeDrivers(t *testing.T) {
	c := newVolumeCloud(t)

	// Creation and its errors.
	c.must(t, "volume", "create", "--driver", "lv2", "-o", "size=64M", "db")
	var vols []struct {
		Driver  string
		Options map[string]string
	}
	if err := json.Unmarshal([]byte(c.must(t, "volume", "inspect", "db")), &vols); err != nil || len(vols) != 1 || vols[0].Driver != "lv2" || vols[0].Options["size"] != "64M" {
		t.Fatalf("inspect db: %v %+v", err, vols)
	}
	c.fails(`plugin "zfs" not found`, "volume", "create", "--driver", "zfs", "x")
	c.fails("an lv2 volume needs a size", "volume", "create", "--driver", "lv2", "nosize")
	c.fails(`unknown option "replicas"`, "volume", "create", "--driver", "nfs", "-o", "replicas=9", "x")
	c.fails("exists with driver lv2, not nfs", "volume", "create", "--driver", "nfs", "db")

	// lv2: the size is a filesystem's: ENOSPC inside the container, and
	// what was written before stays.
	out := c.docker(t, "run", "--rm", "-v", "db:/data", "busybox", "sh", "-c",
		"echo kept > /data/keep && dd if=/dev/zero of=/data/big bs=1M count=100; echo rc=$?; rm /data/big; cat /data/keep; df -k /data | tail -1").Combined()
	if !strings.Contains(out, "No space left on device") || !strings.Contains(out, "rc=1") || !strings.Contains(out, "kept") {
		t.Fatalf("writing 100M into a 64M lv2 volume:\n%s", out)
	}

	// nfs with snapshots: take, change, roll back (refused while a
	// container runs with it), read back.
	c.must(t, "volume", "create", "--driver", "nfs", "-o", "snapshot=off", "files")
	c.must(t, "run", "--rm", "-v", "files:/d", "busybox", "sh", "-c", "mkdir -p /d/sub && echo one > /d/f && echo deep > /d/sub/g")
	if out, err := c.kraRun("volume", "snapshot", "create", "files", "s1"); err != nil || strings.TrimSpace(out) != "s1" {
		t.Fatalf("snapshot create: %v %s", err, out)
	}
	c.must(t, "run", "--rm", "-v", "files:/d", "busybox", "sh", "-c", "echo two > /d/f")
	if out, err := c.kraRun("volume", "snapshot", "ls", "files"); err != nil || !strings.Contains(out, "s1") {
		t.Fatalf("snapshot ls: %v %s", err, out)
	}
	c.must(t, "run", "-d", "--name", "holder", "-v", "files:/d", "busybox", "sleep", "1000")
	if out := c.must(t, "inspect", "-f", "{{range .Mounts}}{{.Name}} {{.Driver}}{{end}}", "holder"); out != "files nfs" {
		t.Fatalf("the container's mount: %q", out)
	}
	if out, err := c.kraRun("volume", "snapshot", "rollback", "files", "s1"); err == nil || !strings.Contains(out, "running containers holder") || !strings.Contains(out, "docker stop holder") {
		t.Fatalf("rollback under a running container: %v %s", err, out)
	}
	c.fails("volume is in use", "volume", "rm", "files")
	c.must(t, "rm", "-f", "holder")
	if _, err := c.kraRun("volume", "snapshot", "rollback", "files", "s1"); err != nil {
		t.Fatal(err)
	}
	if out := c.must(t, "run", "--rm", "-v", "files:/d:ro", "busybox", "cat", "/d/f", "/d/sub/g"); out != "one\ndeep" {
		t.Fatalf("after rollback: %q", out)
	}
	// A sub-path of the volume, with --mount.
	if out := c.must(t, "run", "--rm", "--mount", "type=volume,src=files,dst=/m,volume-subpath=sub", "busybox", "cat", "/m/g"); out != "deep" {
		t.Fatalf("sub-path: %q", out)
	}
	out, err := c.kraRun("volume", "snapshot", "ls", "files")
	if err != nil || !strings.Contains(out, "rollback-") {
		t.Fatalf("the state before the rollback is not kept: %v %s", err, out)
	}
	if out, err := c.kraRun("volume", "snapshot", "rm", "files", "s1"); err != nil || strings.TrimSpace(out) != "s1" {
		t.Fatalf("snapshot rm: %v %s", err, out)
	}
	if out, err := c.kraRun("volume", "snapshot", "create", "db"); err == nil || !strings.Contains(out, "has no snapshots") {
		t.Fatalf("snapshot of lv2: %v %s", err, out)
	}

	// gfs: two containers at once.
	if _, err := c.kraRun("volume", "create", "-d", "gfs", "shared"); err != nil {
		t.Fatal(err)
	}
	c.must(t, "run", "-d", "--name", "writer", "-v", "shared:/s", "busybox", "sh", "-c", "echo hello > /s/x; sleep 1000")
	eventually(t, "a second container reads the first's file", func() bool {
		return c.docker(t, "run", "--rm", "-v", "shared:/s:ro", "busybox", "cat", "/s/x").Stdout == "hello\n"
	})
	c.must(t, "rm", "-f", "writer")
	out, err = c.kraRun("volume", "ls")
	if err != nil || !strings.Contains(out, "shared") || !strings.Contains(out, "gfs") || !strings.Contains(out, "lv2") {
		t.Fatalf("kra volume ls: %v %s", err, out)
	}

	// Another tenant sees none of them.
	_, bob := c.tc.newTenant("bob")
	c.tc.mustDocker(bob, "load", "-i", testimages.Busybox(t))
	for _, v := range []string{"db", "files", "shared"} {
		if r := c.tc.docker(bob, "volume", "inspect", v); r.ExitCode == 0 || !strings.Contains(r.Combined(), "no such volume") {
			t.Fatalf("bob inspects alice's %s: %s", v, r.Combined())
		}
	}
	// -v files:/d gives bob a fresh volume of his own named files.
	if r := c.tc.docker(bob, "run", "--rm", "-v", "files:/d", "busybox", "ls", "-A", "/d"); r.ExitCode != 0 || r.Stdout != "" {
		t.Fatalf("bob's volume named files: exit %d %q %s", r.ExitCode, r.Stdout, r.Stderr)
	}
	if out := c.tc.mustDocker(bob, "volume", "inspect", "-f", "{{.Driver}}", "files"); out != "local" {
		t.Fatalf("bob's volume named files has driver %q", out)
	}

	// Compose: top-level volumes with driver and driver_opts.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(`services:
  app:
    image: busybox
    command: sh -c "echo from-compose > /data/c && sleep 1000"
    volumes: [data:/data]
volumes:
  data:
    driver: nfs
    driver_opts:
      size: 256M
      snapshot: daily
      snapshots.keep: "3"
`), 0o644)
	c.mustCompose(t, false, dir, "-p", "volproj", "up", "-d")
	if err := json.Unmarshal([]byte(c.must(t, "volume", "inspect", "volproj_data")), &vols); err != nil || vols[0].Driver != "nfs" || vols[0].Options["snapshots.keep"] != "3" {
		t.Fatalf("compose volume: %v %+v", err, vols)
	}
	c.mustCompose(t, false, dir, "-p", "volproj", "down", "-v")
	c.fails("no such volume", "volume", "inspect", "volproj_data")

	// A restart of the server keeps the volumes and their files.
	if err := c.tc.srv.Stop(); err != nil {
		t.Fatal(err)
	}
	c.tc.srv.Start()
	if out := c.must(t, "run", "--rm", "-v", "files:/d", "-v", "db:/db", "busybox", "cat", "/d/f", "/db/keep"); out != "one\nkept" {
		t.Fatalf("after a restart: %q", out)
	}

	// Removing a tenant removes its volumes, mounts and all.
	c.tc.mustDocker(bob, "volume", "create", "--driver", "lv2", "-o", "size=32M", "bobdb")
	c.tc.mustDocker(bob, "run", "--rm", "-v", "bobdb:/d", "busybox", "sh", "-c", "echo bob > /d/f")
	c.tc.mustAdmin("tenant", "rm", "bob", "--force")
	if m := mountedUnder(t, filepath.Join(c.tc.srv.DataDir, "volumes", "bob")); len(m) != 0 {
		t.Fatalf("mounts left after tenant rm: %v", m)
	}
	if _, err := os.Stat(filepath.Join(c.tc.srv.DataDir, "volumes", "bob", "bobdb")); err == nil {
		t.Fatal("bob's lv2 volume left after tenant rm")
	}

	// Removal takes the data and the mounts.
	c.must(t, "volume", "rm", "db", "files", "shared")
	data := filepath.Join(c.tc.srv.DataDir, "volumes")
	if m := mountedUnder(t, data); len(m) != 0 {
		t.Fatalf("mounts left after volume rm: %v", m)
	}
	if _, err := os.Stat(filepath.Join(data, "alice", "db")); err == nil {
		t.Fatal("lv2 volume's files left after volume rm")
	}
}
