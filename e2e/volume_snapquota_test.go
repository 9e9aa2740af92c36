package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/macro-cloud/macro/auth"
	"github.com/macro-cloud/macro/internal/testenv"
	"github.com/macro-cloud/macro/internal/testimages"
)

// TestSnapshotQuota: what a volume's snapshots hold alone counts in the
// tenant's volume quota (--volumes 1100m: a 1 GiB nfs volume leaves 76
// MiB). A snapshot is free when taken; once the volume's 100 MiB file is
// deleted, the snapshot holds it (kra volume snapshot ls shows it), the
// tenant is over its quota, and kra volume snapshot create is refused
// (403, Docker's {"message"} saying what to do), as is a 16 MiB volume
// that would have fit beside the volumes alone; removing the snapshot
// makes room again.
func TestSnapshotQuota(t *testing.T) {
	testenv.RequireTools(t, "mkfs.btrfs", "btrfs")
	c := newTenantCloud(t)
	token, dir := c.newTenant("snapq", "--volumes", "1100m")
	c.mustDocker(dir, "load", "-i", testimages.Busybox(t))
	ca := filepath.Join(c.srv.DataDir, "ca", auth.CACertFile)
	kra := func(args ...string) (string, error) {
		t.Helper()
		home := t.TempDir()
		cmd := exec.Command(testenv.Kra(t), args...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "TZ=UTC", "HOME=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, "config"),
			"KR_HOST=https://" + c.addr, "KR_ACCESS_TOKEN=" + token, "KR_CA=" + ca}
		out, err := cmd.CombinedOutput()
		t.Logf("kra %s: %v\n%s", strings.Join(args, " "), err, out)
		return string(out), err
	}
	mustKra := func(args ...string) string {
		t.Helper()
		out, err := kra(args...)
		if err != nil {
			t.Fatalf("kra %s: %v", strings.Join(args, " "), err)
		}
		return out
	}

	mustKra("volume", "create", "-d", "nfs", "-o", "size=1g", "-o", "snapshot=off", "files")
	c.mustDocker(dir, "run", "--rm", "-v", "files:/d", "busybox", "dd", "if=/dev/urandom", "of=/d/big", "bs=1M", "count=100")
	mustKra("volume", "snapshot", "create", "files", "s1") // free when taken
	c.mustDocker(dir, "run", "--rm", "-v", "files:/d", "busybox", "rm", "/d/big")

	// s1 holds the file alone now.
	out := mustKra("volume", "snapshot", "ls", "-o", "json", "files")
	var snaps []struct {
		Name  string
		Space int64
	}
	if err := json.Unmarshal([]byte(out), &snaps); err != nil || len(snaps) != 1 || snaps[0].Space < 100<<20 || snaps[0].Space > 110<<20 {
		t.Fatalf("snapshot ls: %v %+v, want s1 holding about 100 MiB", err, snaps)
	}
	if out := mustKra("volume", "snapshot", "ls", "files"); !strings.Contains(out, "HOLDS") || !regexp.MustCompile(`(?m)^s1 +manual +\S+ \S+ +10\d(\.\d+)?MB$`).MatchString(out) {
		t.Fatalf("snapshot ls does not show what s1 holds:\n%s", out)
	}

	want := "quota exceeded: tenant snapq may have volumes of 1.1 GiB in total, its volumes have 1.0 GiB and their snapshots hold 100.0 MiB more: no room for a snapshot of files"
	if out, err := kra("volume", "snapshot", "create", "files", "s2"); err == nil || !strings.Contains(out, want) {
		t.Fatalf("a snapshot over the quota: %v\n%s\nwant %q", err, out, want)
	}
	req, _ := http.NewRequest(http.MethodPost, "https://"+c.addr+"/apis/macro/v1/volumes/files/snapshots", strings.NewReader(`{"name": "s3"}`))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	status := resp.StatusCode
	var msg struct{ Message string }
	if status != http.StatusForbidden || json.Unmarshal(body, &msg) != nil || !strings.Contains(msg.Message, want) {
		t.Fatalf("POST snapshots over the quota: %d %s", status, body)
	}
	r := c.docker(dir, "volume", "create", "--driver", "lv2", "-o", "size=16m", "small")
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, "their snapshots hold 100.0 MiB more and small needs 16.0 MiB") {
		t.Fatalf("a volume that fits beside the volumes but not beside their snapshots: exit %d\n%s", r.ExitCode, r.Combined())
	}

	// Room again once the snapshot is gone.
	mustKra("volume", "snapshot", "rm", "files", "s1")
	mustKra("volume", "snapshot", "create", "files", "s2")
	c.mustDocker(dir, "volume", "create", "--driver", "lv2", "-o", "size=16m", "small")
}
