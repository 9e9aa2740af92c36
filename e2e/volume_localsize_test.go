package e2e

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/macro-cloud/macro/internal/testimages"
)

// TestLocalVolumeSize: in a tenant with a volume quota, a local volume is
// held to the 1 GiB it counts for: a pod that writes past it gets ENOSPC
// (dd says "No space left on device"), its other files and another volume
// keep their bytes, and the room is usable again once the file is gone.
// In a tenant without one, a local volume is Docker's plain directory.
func TestLocalVolumeSize(t *testing.T) {
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("needs mkfs.ext4 (scripts/setup.sh installs it)")
	}
	c := newTenantCloud(t)
	_, dir := c.newTenant("local-size", "--volumes", "3g")
	c.mustDocker(dir, "load", "-i", testimages.Busybox(t))
	c.mustDocker(dir, "volume", "create", "plain")
	if out := c.mustDocker(dir, "volume", "inspect", "-f", "{{.Status.size}}", "plain"); out != "1073741824" {
		t.Errorf("docker volume inspect shows the size %q, want 1073741824", out)
	}
	c.mustDocker(dir, "run", "--rm", "-v", "other:/other", "busybox", "sh", "-c", "head -c 1048576 /dev/urandom > /other/f && md5sum /other/f > /other/f.md5")
	r := c.docker(dir, "run", "--rm", "-v", "plain:/data", "busybox", "sh", "-c",
		"echo keep > /data/keep && dd if=/dev/zero of=/data/fill bs=1M count=1100 && sync")
	if r.ExitCode == 0 || !strings.Contains(r.Combined(), "No space left on device") {
		t.Fatalf("writing 1100 MiB into a local volume held to 1 GiB: exit %d\n%s", r.ExitCode, r.Combined())
	}
	out := c.mustDocker(dir, "run", "--rm", "-v", "plain:/data", "-v", "other:/other", "busybox", "sh", "-c",
		"cat /data/keep; md5sum -c /other/f.md5; df -k /data | tail -1; rm /data/fill && dd if=/dev/zero of=/data/again bs=1M count=8 2>/dev/null && ls /data")
	t.Logf("after ENOSPC:\n%s", out)
	lines := strings.Split(out, "\n")
	if len(lines) < 4 || lines[0] != "keep" || !strings.HasSuffix(lines[1], ": OK") || !strings.Contains(out, "again") {
		t.Fatalf("after ENOSPC: %q", out)
	}
	if f := strings.Fields(lines[2]); len(f) < 2 {
		t.Fatalf("df: %q", lines[2])
	} else if kb, _ := strconv.Atoi(f[1]); kb < 900<<10 || kb > 1<<20 {
		t.Fatalf("the volume's filesystem has %s KiB, want about 1 GiB", f[1])
	}

	// docker volume rm unmounts it and frees its image.
	c.mustDocker(dir, "volume", "rm", "plain", "other")
	if m := mountedUnder(t, c.srv.DataDir+"/volumes"); len(m) != 0 {
		t.Fatalf("mounts left after volume rm: %v", m)
	}

	// Without a quota: a plain directory, not held to a size.
	_, free := c.newTenant("local-free")
	c.mustDocker(free, "load", "-i", testimages.Busybox(t))
	out = c.mustDocker(free, "run", "--rm", "-v", "plain:/data", "busybox", "sh", "-c", "df -k / /data | tail -2 | awk '{print $2}'")
	if f := strings.Fields(out); len(f) != 2 || f[0] != f[1] {
		t.Fatalf("a local volume without a quota is not on the node's filesystem: %q", out)
	}
}
