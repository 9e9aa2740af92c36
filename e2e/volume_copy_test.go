package e2e

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/macro-cloud/macro/internal/testenv"
)

// volumeListing is what a container sees of a volume: every path with its
// type, mode, size and mtime, and every file's checksum.
func volumeListing(k *kraUp, vol string) string {
	k.t.Helper()
	return k.mustDocker("run", "--rm", "-v", vol+":/data", "busybox", "sh", "-c",
		`cd /data && find . | sort | while read -r p; do stat -c '%n %F %a %s %Y %u' "$p"; done && find . -type f | sort | xargs md5sum`)
}

// fillVolume writes 8 MiB of random bytes and a few small files.
const fillVolume = `set -e; mkdir -p /data/sub/deep; dd if=/dev/urandom of=/data/big bs=1024 count=8192 2>/dev/null;
	 echo hello > /data/sub/a.txt; chmod 600 /data/sub/a.txt; ln -s sub/a.txt /data/link; : > /data/zero`

// change1pct overwrites 8 runs of 10 KiB of big (1% of the volume).
const change1pct = `set -e; for off in 100 1000 2000 3000 4000 5000 6000 8000; do
	 dd if=/dev/urandom of=/data/big bs=1024 seek=$off count=10 conv=notrunc 2>/dev/null; done; echo new > /data/sub/new.txt`

var copied = regexp.MustCompile(`copied volume (\S+) to (\S+) \((created|updated)[^)]*\): (\d+) files, .*; (\d+) of (\d+) chunks sent`)

// copyVolume runs kra volume copy and returns what it says it sent.
func copyVolume(k *kraUp, dir string, args ...string) (created bool, sent, chunks int) {
	k.t.Helper()
	out := k.must(dir, append([]string{"volume", "copy"}, args...)...)
	m := copied.FindStringSubmatch(out)
	if m == nil {
		k.t.Fatalf("kra volume copy said: %s", out)
	}
	sent, _ = strconv.Atoi(m[5])
	chunks, _ = strconv.Atoi(m[6])
	return m[3] == "created", sent, chunks
}

// TestVolumeCopy drives kra volume copy on one node: into a new volume
// (made with the source's driver), again after a 1% change (only the
// changed chunks cross), refused into a volume a running container
// mounts (409) and from another tenant's volume (404).
func TestVolumeCopy(t *testing.T) {
	k := newKraUp(t)
	tmp := t.TempDir()
	k.mustDocker("volume", "create", "src")
	k.mustDocker("run", "--rm", "-v", "src:/data", "busybox", "sh", "-c", fillVolume)

	created, sent, chunks := copyVolume(k, tmp, "src", "dst")
	if !created || sent != chunks || chunks < 1000 {
		t.Errorf("the first copy: created %v, %d of %d chunks sent", created, sent, chunks)
	}
	want := volumeListing(k, "src")
	if got := volumeListing(k, "dst"); got != want {
		t.Fatalf("the copy differs:\n%s\nwant:\n%s", got, want)
	}
	if !strings.Contains(k.mustDocker("volume", "inspect", "dst"), `"Driver": "local"`) {
		t.Error("the new volume has not the source's driver")
	}

	// 1% changed: about 1% of the chunks cross (each 10 KiB run touches
	// three or four chunks of ~4 KiB).
	k.mustDocker("run", "--rm", "-v", "src:/data", "busybox", "sh", "-c", change1pct)
	created, sent, chunks = copyVolume(k, tmp, "src", "dst")
	if created || sent == 0 || sent > chunks*3/100 {
		t.Errorf("the copy after a 1%% change: created %v, %d of %d chunks sent", created, sent, chunks)
	}
	want = volumeListing(k, "src")
	if got := volumeListing(k, "dst"); got != want {
		t.Fatalf("the updated copy differs:\n%s\nwant:\n%s", got, want)
	}
	// Nothing changed: nothing crosses, also when every chunk of dst is
	// read and hashed again (--verify).
	if _, sent, _ = copyVolume(k, tmp, "src", "dst", "--verify"); sent != 0 {
		t.Errorf("a copy of an unchanged volume sent %d chunks", sent)
	}
	if got := volumeListing(k, "dst"); got != want {
		t.Fatalf("the copy differs after --verify:\n%s\nwant:\n%s", got, want)
	}

	// Refusals.
	if out, err := k.run(tmp, "volume", "copy", "nosuch", "x"); err == nil || !strings.Contains(out, "no such volume: nosuch") {
		t.Errorf("copy of a volume that does not exist: %v %s", err, out)
	}
	if out, err := k.run(tmp, "volume", "copy", "src", "src"); err == nil || !strings.Contains(out, "into itself") {
		t.Errorf("copy of a volume into itself: %v %s", err, out)
	}
	if out, err := k.run(tmp, "volume", "copy", "src", "dst", "--size", "1G"); err == nil || !strings.Contains(out, "exists") {
		t.Errorf("copy into an existing volume with --size: %v %s", err, out)
	}
	k.mustDocker("run", "-d", "--name", "user", "-v", "dst:/data", "busybox", "sleep", "1000")
	t.Cleanup(func() { k.docker("rm", "-f", "user") })
	if out, err := k.run(tmp, "volume", "copy", "src", "dst"); err == nil || !strings.Contains(out, "in use by running containers [user]") {
		t.Errorf("copy into a volume in use: %v %s", err, out)
	}

	// Another tenant sees none of alice's volumes.
	k.mustAdmin("tenant", "create", "bob")
	bobToken := strings.TrimSpace(k.mustAdmin("token", "create", "--tenant", "bob"))
	bob := &kraUp{tenantCloud: k.tenantCloud, kra: k.kra}
	for _, e := range k.env {
		if strings.HasPrefix(e, "KR_ACCESS_TOKEN=") {
			e = "KR_ACCESS_TOKEN=" + bobToken
		}
		bob.env = append(bob.env, e)
	}
	if out, err := bob.run(tmp, "volume", "copy", "src", "mine"); err == nil || !strings.Contains(out, "no such volume: src") {
		t.Errorf("bob copies alice's volume: %v %s", err, out)
	}
}

// TestVolumeCopyAcrossNodes copies an lv2 volume of one node into a new
// volume on another node (zones a and b) through the server, which runs
// no pods: checksums equal, and a second copy after a 1% change sends
// about 1% of the chunks.
func TestVolumeCopyAcrossNodes(t *testing.T) {
	macro := testenv.Macro(t)
	hosts := testenv.NewHosts(t, 3)
	h1 := hosts.List[0]
	addr := net.JoinHostPort(h1.Addr.String(), strconv.Itoa(testenv.FreePort(t)))
	srv := testenv.StartServer(t, testenv.OnHost(h1), testenv.WithArgs("--api-addr", addr, "--ingress-http", "off", "--ingress-https", "off",
		"--agent=false", "--vpc=false"))
	out, err := exec.Command(macro, "admin", "--data-dir", srv.DataDir, "join-token", "node").Output()
	if err != nil {
		t.Fatalf("join-token node: %v", err)
	}
	token := strings.TrimSpace(string(out))
	caHash := caHashOf(t, srv)
	for i, zone := range []string{"a", "b"} {
		testenv.StartAgent(t, testenv.OnHost(hosts.List[1+i]), testenv.WithArgs("--server", "https://"+addr, "--token", token,
			"--ca-hash", caHash, "--node-name", "n"+zone, "--label", "zone="+zone, "--vpc=false"))
	}
	k := kraUpOn(t, newTenantCloudOn(t, macro, srv, addr))
	tmp := t.TempDir()
	// Both nodes ready: a volume made in each zone.
	for _, z := range []string{"a", "b"} {
		waitFor(t, 60*time.Second, func() bool {
			r := k.docker("volume", "create", "--driver", "lv2", "-o", "size=64M", "-o", "zone="+z, "probe-"+z)
			return r.ExitCode == 0
		})
	}
	k.mustDocker("volume", "create", "--driver", "lv2", "-o", "size=64M", "-o", "zone=a", "src")
	k.mustDocker("run", "--rm", "-v", "src:/data", "busybox", "sh", "-c", fillVolume)
	created, sent, chunks := copyVolume(k, tmp, "src", "dst", "--zone", "b")
	if !created || sent != chunks {
		t.Errorf("the first copy: created %v, %d of %d chunks sent", created, sent, chunks)
	}
	if out := k.must(tmp, "volume", "ls"); !regexp.MustCompile(`(?m)^dst\s+lv2\s+\S+\s+nb\s`).MatchString(out) {
		t.Errorf("dst is not an lv2 volume on node nb:\n%s", out)
	}
	want := volumeListing(k, "src")
	if got := volumeListing(k, "dst"); got != want {
		t.Fatalf("the copy on the other node differs:\n%s\nwant:\n%s", got, want)
	}
	k.mustDocker("run", "--rm", "-v", "src:/data", "busybox", "sh", "-c", change1pct)
	created, sent, chunks = copyVolume(k, tmp, "src", "dst")
	if created || sent == 0 || sent > chunks*3/100 {
		t.Errorf("the copy after a 1%% change: created %v, %d of %d chunks sent", created, sent, chunks)
	}
	want = volumeListing(k, "src")
	if got := volumeListing(k, "dst"); got != want {
		t.Fatalf("the updated copy differs:\n%s\nwant:\n%s", got, want)
	}

	// Export and import of volumes of other nodes go through the server
	// the same way: dst (node nb) to a drive, the drive into a volume of
	// node na.
	keyFile, drive := filepath.Join(tmp, "volume.key"), filepath.Join(tmp, "drive")
	if err := os.WriteFile(keyFile, []byte("0123456789abcdef0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	k.must(tmp, "volume", "export", "dst", drive, "--key-file", keyFile)
	k.mustDocker("volume", "create", "--driver", "lv2", "-o", "size=64M", "-o", "zone=a", "back")
	k.must(tmp, "volume", "import", drive, "back", "--key-file", keyFile)
	if got := volumeListing(k, "back"); got != want {
		t.Fatalf("the volume imported on node na differs:\n%s\nwant:\n%s", got, want)
	}
}

// TestVolumeExportImportDrivers: export and import of lv2 and nfs volumes,
// whose files are a mount point (lv2's loop-mounted ext4) or a btrfs
// subvolume (nfs), which the import switches in place: into a new volume,
// then again after a change (an update of a volume that has files).
func TestVolumeExportImportDrivers(t *testing.T) {
	k := newKraUp(t)
	tmp := t.TempDir()
	keyFile := filepath.Join(tmp, "volume.key")
	if err := os.WriteFile(keyFile, []byte("0123456789abcdef0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, driver := range []string{"lv2", "nfs"} {
		src, dst, drive := driver+"-src", driver+"-dst", filepath.Join(tmp, driver+"-drive")
		opts := []string{"-o", "size=64m"}
		if driver == "nfs" {
			opts = append(opts, "-o", "snapshot=off")
		}
		for _, v := range []string{src, dst} {
			k.mustDocker(append(append([]string{"volume", "create", "--driver", driver}, opts...), v)...)
		}
		k.mustDocker("run", "--rm", "-v", src+":/data", "busybox", "sh", "-c", fillVolume)
		k.mustDocker("run", "--rm", "-v", dst+":/data", "busybox", "sh", "-c", "echo stale > /data/stale")
		// lv2's update of a volume with files is also in
		// TestVolumeCopyAcrossNodes: one round here.
		rounds := map[string]int{"lv2": 1, "nfs": 2}[driver]
		for round := range rounds {
			if round == 1 {
				k.mustDocker("run", "--rm", "-v", src+":/data", "busybox", "sh", "-c", change1pct)
			}
			k.must(tmp, "volume", "export", src, drive, "--key-file", keyFile)
			if out := k.must(tmp, "volume", "import", drive, dst, "--key-file", keyFile); !strings.Contains(out, "imported") {
				t.Fatalf("%s: kra volume import said: %s", driver, out)
			}
			want := volumeListing(k, src)
			if got := volumeListing(k, dst); got != want {
				t.Fatalf("%s, round %d: the imported volume differs:\n%s\nwant:\n%s", driver, round, got, want)
			}
		}
	}
}
