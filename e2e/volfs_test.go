package e2e

import (
	"bytes"
	"crypto/md5"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/macro-cloud/macro/auth"
	"github.com/macro-cloud/macro/internal/testenv"
	"github.com/macro-cloud/macro/internal/testimages"
)

// startZonedCluster is startNodeCluster with one zone per agent (n2 in
// zone z2, n3 in z3, ...), so that a test chooses a pod's node with an
// lv2 volume of that zone (the only way a tenant pins a pod).
func startZonedCluster(t *testing.T, n int) *nodeCluster {
	return startNodeClusterZones(t, n, func(node string) string { return "z" + node[1:] })
}

// volumeCopy is the directory of a node's copy of an nfs or gfs volume of
// the default tenant.
func volumeCopy(c *nodeCluster, node, name string) string {
	return filepath.Join(c.agents[node].DataDir, "btrfs", "pool", "v", "default", name)
}

// md5Of is the hex MD5 of a file, "" if it cannot be read.
func md5Of(t *testing.T, p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Logf("md5 of %s: %v", p, err)
		return ""
	}
	return fmt.Sprintf("%x", md5.Sum(b))
}

// sh runs a shell command in a container and returns its output.
func (c *nodeCluster) sh(t *testing.T, ctr, cmd string) string {
	t.Helper()
	return c.docker(t, "exec", ctr, "sh", "-c", cmd)
}

// TestRemoteVolumeMounts: a gfs volume held by n2 is mounted by pods on
// n2 (a bind mount of its directory), n3 and n4 (FUSE through the server
// and n2's tunnel) at once, with close-to-open consistency: what one pod
// wrote and closed, a pod on another node sees when it opens the file.
func TestRemoteVolumeMounts(t *testing.T) {
	testenv.RequireTools(t, "mkfs.ext4", "mkfs.btrfs", "btrfs")
	testenv.RequireFUSE(t)
	c := startZonedCluster(t, 4)
	c.docker(t, "load", "-i", testimages.Busybox(t))
	report := os.Getenv("MACRO_VOLFS_BENCH")
	size := "64M"
	if report != "" {
		size = "2G" // room for fio's file; the quota check is skipped
	}
	c.docker(t, "volume", "create", "--driver", "gfs", "-o", "zone=z2", "-o", "size="+size, "shared")
	pods := map[string]string{"n2": "pa", "n3": "pb", "n4": "pc"}
	for node, name := range pods {
		c.docker(t, "volume", "create", "--driver", "lv2", "-o", "size=16M", "-o", "zone=z"+node[1:], "pin-"+node)
		c.docker(t, "run", "-d", "--name", name, "-v", "pin-"+node+":/pin", "-v", "shared:/data", "busybox", "sleep", "1d")
	}
	for node, name := range pods {
		c.waitPlaced(t, name, func(n string) bool { return n == node })
	}

	// Written and closed on n3: read on n4 (FUSE to FUSE) and on n2.
	c.sh(t, "pb", "echo from-b > /data/b.txt")
	for _, r := range []string{"pc", "pa"} {
		if got := c.sh(t, r, "cat /data/b.txt"); got != "from-b" {
			t.Fatalf("%s reads %q", r, got)
		}
	}
	// Written on the primary's node, rewritten shorter on n4: each next
	// open sees the last close.
	c.sh(t, "pa", "echo a-much-longer-line-from-a > /data/b.txt")
	if got := c.sh(t, "pb", "cat /data/b.txt"); got != "a-much-longer-line-from-a" {
		t.Fatalf("pb reads %q after pa's write", got)
	}
	c.sh(t, "pc", "echo c > /data/b.txt")
	if got := c.sh(t, "pb", "cat /data/b.txt"); got != "c" {
		t.Fatalf("pb reads %q after pc's write", got)
	}
	// Metadata: directories, renames, symlinks, modes, removal.
	c.sh(t, "pb", "mkdir -p /data/d/e && echo x > /data/d/e/x && mv /data/d/e/x /data/d/y && ln -s y /data/d/l && chmod 600 /data/d/y")
	if got := c.sh(t, "pc", "ls /data/d | tr '\\n' ' '; stat -c %a /data/d/y; cat /data/d/l"); got != "e l y 600\nx" {
		t.Fatalf("pc sees %q", got)
	}
	c.sh(t, "pa", "rm -r /data/d/e")
	if got := c.sh(t, "pb", "ls /data/d | tr '\\n' ' '"); got != "l y" {
		t.Fatalf("pb lists %q after pa's rm", got)
	}
	// The mounts keep names and attributes for a second; an open on
	// another node sees each change at once all the same (busybox cat
	// reads with sendfile, up to the size the kernel holds).
	for _, step := range []struct{ on, do, check, want string }{
		{"pb", "printf 0123456789 > /data/t", "cat /data/t", "0123456789"},
		{"pb", "truncate -s 4 /data/t", "cat /data/t", "0123"},
		{"pb", "printf 0123456789abcdef > /data/t", "cat /data/t", "0123456789abcdef"},
		{"pb", "chmod 604 /data/t", "cat /data/t >/dev/null; stat -c %a /data/t", "604"},
		{"pb", "mv /data/t /data/t2", "cat /data/t 2>/dev/null || echo gone; cat /data/t2", "gone\n0123456789abcdef"},
		{"pa", "rm /data/t2", "cat /data/t2 2>/dev/null || echo gone; echo new > /data/t2; cat /data/t2", "gone\nnew"},
	} {
		c.sh(t, step.on, step.do)
		if got := c.sh(t, "pc", step.check); got != step.want {
			t.Fatalf("after %s on %s, pc's %q gives %q, want %q", step.do, step.on, step.check, got, step.want)
		}
	}
	// 8 MiB of random bytes, its checksum equal on every node.
	sum := strings.Fields(c.sh(t, "pc", "head -c 8388608 /dev/urandom > /data/big && md5sum /data/big"))[0]
	for _, r := range []string{"pa", "pb"} {
		if got := strings.Fields(c.sh(t, r, "md5sum /data/big"))[0]; got != sum {
			t.Fatalf("%s: md5 %s, pc wrote %s", r, got, sum)
		}
	}
	// Three copies: the replicas on n3 and n4 have every file, the same.
	if st := c.docker(t, "volume", "inspect", "-f", "{{json .Status}}", "shared"); !strings.Contains(st, `"primary":"n2"`) ||
		!strings.Contains(st, `"n3 (in-sync)"`) || !strings.Contains(st, `"n4 (in-sync)"`) {
		t.Fatalf("volume status: %s", st)
	}
	for _, n := range []string{"n2", "n3", "n4"} {
		if got := md5Of(t, filepath.Join(volumeCopy(c, n, "shared"), "big")); got != sum {
			t.Fatalf("the copy on %s: md5 %s, want %s", n, got, sum)
		}
	}
	// WebDAV through the server, which holds no copy: it reaches the
	// primary as the pods do, and what it writes is replicated.
	davThroughServer(t, c, sum)
	oneByteMovesLittle(t, c)
	// The volume's size holds across the FUSE mount: the write-back of a
	// file past it fails, and fsync (or close) says so in the pod.
	if report == "" {
		r := testenv.Docker(t, c.srv.Host(), "exec", "pb", "dd", "if=/dev/zero", "of=/data/huge", "bs=1M", "count=100", "conv=fsync")
		if r.ExitCode == 0 || !strings.Contains(r.Combined(), "quota") {
			t.Fatalf("writing past the size: exit %d\n%s", r.ExitCode, r.Combined())
		}
		c.sh(t, "pb", "rm -f /data/huge")
	} else {
		benchRemoteVolume(t, c, report)
	}
	// In use: 409 as before; the FUSE mounts go with their pods.
	if r := testenv.Docker(t, c.srv.Host(), "volume", "rm", "shared"); r.ExitCode == 0 || !strings.Contains(r.Combined(), "in use") {
		t.Fatalf("volume rm of a mounted volume: %s", r.Combined())
	}
	c.docker(t, "rm", "-f", "pa", "pb", "pc")
	for _, n := range []string{"n3", "n4"} {
		deadline := time.Now().Add(30 * time.Second)
		for len(mountedUnder(t, c.agents[n].DataDir+"/volfs")) != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%s still has FUSE mounts 30 s after its pod was removed: %v", n, mountedUnder(t, c.agents[n].DataDir+"/volfs"))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	c.docker(t, "volume", "rm", "shared")
}

// TestVolumeFailover: a gfs volume with three copies (primary n2,
// replicas n3 and n4; n5 holds none). A pod on n3 writes files and
// records the checksum of each write that fsync acknowledged; n2's agent
// is killed (SIGKILL) meanwhile. The leader promotes a replica, the
// writes go on, and once n2 has been down for a further node TTL the
// leader puts a new replica on n5, which fills itself from the new
// primary and is in sync; every acknowledged file is there with its
// checksum, read through the new primary and on all three copies (n3, n4,
// n5). n2, back, finds its copy replaced: it drops it.
func TestVolumeFailover(t *testing.T) {
	testenv.RequireTools(t, "mkfs.ext4", "mkfs.btrfs", "btrfs")
	testenv.RequireFUSE(t)
	c := startZonedCluster(t, 5)
	c.docker(t, "load", "-i", testimages.Busybox(t))
	c.docker(t, "volume", "create", "--driver", "gfs", "-o", "zone=z2", "ha")
	if st := c.docker(t, "volume", "inspect", "-f", "{{json .Status}}", "ha"); !strings.Contains(st, `"replicas":["n3 (in-sync)","n4 (in-sync)"]`) {
		t.Fatalf("created: %s", st)
	}
	for _, n := range []string{"n3", "n4"} {
		c.docker(t, "volume", "create", "--driver", "lv2", "-o", "size=16M", "-o", "zone=z"+n[1:], "pin-"+n)
	}
	// The writer: 16 KiB of random bytes per file, dd with fsync; a
	// checksum is recorded only when dd succeeded (fsync acknowledged).
	const files = 80
	start := time.Now()
	writer := fmt.Sprintf(`i=0; while [ $i -lt %d ]; do i=$((i+1)); head -c 16384 /dev/urandom > /tmp/c;
	  if dd if=/tmp/c of=/data/f$i bs=16384 conv=fsync 2>/tmp/err; then echo "$(md5sum < /tmp/c | cut -c1-32) f$i" >> /tmp/acked; else cat /tmp/err >> /tmp/failed; fi;
	  sleep 0.05; done; touch /tmp/done; sleep 1d`, files)
	c.docker(t, "run", "-d", "--name", "writer", "-v", "pin-n3:/pin", "-v", "ha:/data", "busybox", "sh", "-c", writer)
	c.docker(t, "run", "-d", "--name", "reader", "-v", "pin-n4:/pin", "-v", "ha:/data", "busybox", "sleep", "1d")
	c.waitPlaced(t, "writer", func(n string) bool { return n == "n3" })
	c.waitPlaced(t, "reader", func(n string) bool { return n == "n4" })

	acked := func() map[string]string {
		out := testenv.Docker(t, c.srv.Host(), "exec", "writer", "cat", "/tmp/acked").Stdout
		m := map[string]string{}
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if f := strings.Fields(l); len(f) == 2 {
				m[f[1]] = f[0]
			}
		}
		return m
	}
	deadline := time.Now().Add(60 * time.Second)
	for len(acked()) < 20 {
		if time.Now().After(deadline) {
			t.Fatalf("the writer acknowledged %d files in 60 s", len(acked()))
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.agents["n2"].Kill()
	killedAt := len(acked())
	t.Logf("%v: n2 killed after %d acknowledged writes", time.Since(start).Round(time.Millisecond), killedAt)
	deadline = time.Now().Add(120 * time.Second)
	for testenv.Docker(t, c.srv.Host(), "exec", "writer", "test", "-f", "/tmp/done").ExitCode != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the writer is not done after 120 s (%d acknowledged)", len(acked()))
		}
		time.Sleep(200 * time.Millisecond)
	}
	want := acked()
	t.Logf("%v: the writer is done", time.Since(start).Round(time.Millisecond))
	failed := testenv.Docker(t, c.srv.Host(), "exec", "writer", "sh", "-c", "cat /tmp/failed 2>/dev/null").Stdout
	t.Logf("%d of %d writes acknowledged (%d before the kill); failed: %q", len(want), files, killedAt, failed)
	if len(want) <= killedAt {
		t.Fatalf("no write was acknowledged after the primary died")
	}
	status := func() string { return c.docker(t, "volume", "inspect", "-f", "{{json .Status}}", "ha") }
	if st := status(); strings.Contains(st, `"primary":"n2"`) {
		t.Fatalf("after the kill: %s", st)
	}
	// n2 is lost: n5 replaces it, fills itself from the new primary and
	// is in sync; n2 is no replica any more.
	deadline = time.Now().Add(60 * time.Second)
	for st := status(); !strings.Contains(st, `"n5 (in-sync)"`) || strings.Contains(st, `"n2 (`) || strings.Contains(st, "degraded"); st = status() {
		if time.Now().After(deadline) {
			t.Fatalf("n5 is not an in-sync replica 60 s after n2 died: %s\n%s", st, c.srv.Log())
		}
		time.Sleep(200 * time.Millisecond)
	}
	st := status()
	t.Logf("%v: n5 in sync: %s", time.Since(start).Round(time.Millisecond), st)
	// Every acknowledged file, with its checksum: read on n4 through the
	// new primary, and in all three copies.
	got := map[string]string{}
	for _, l := range strings.Split(c.sh(t, "reader", "cd /data && md5sum f*"), "\n") {
		if f := strings.Fields(l); len(f) == 2 {
			got[f[1]] = f[0]
		}
	}
	for f, sum := range want {
		if got[f] != sum {
			t.Errorf("%s: read %q, acknowledged %s", f, got[f], sum)
		}
		for _, n := range []string{"n3", "n4", "n5"} {
			if g := md5Of(t, filepath.Join(volumeCopy(c, n, "ha"), f)); g != sum {
				t.Errorf("%s on %s: %q, acknowledged %s", f, n, g, sum)
			}
		}
	}
	// And the copies are the same tree: no file on one that another lacks.
	var trees []string
	for _, n := range []string{"n3", "n4", "n5"} {
		ents, err := os.ReadDir(volumeCopy(c, n, "ha"))
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		trees = append(trees, strings.Join(names, " "))
	}
	if trees[0] != trees[1] || trees[1] != trees[2] {
		t.Errorf("the copies differ:\nn3: %s\nn4: %s\nn5: %s", trees[0], trees[1], trees[2])
	}
	if t.Failed() {
		t.FailNow()
	}

	// n2 comes back: its copy was replaced, so it drops it rather than
	// catch up; the volume keeps its three copies.
	c.agents["n2"].Start()
	t.Logf("%v: n2 started again", time.Since(start).Round(time.Millisecond))
	deadline = time.Now().Add(60 * time.Second)
	for {
		if _, err := os.Stat(volumeCopy(c, "n2", "ha")); errors.Is(err, fs.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("n2 still holds its copy 60 s after it came back: %s", status())
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("%v: n2 dropped its copy", time.Since(start).Round(time.Millisecond))
	if after := status(); after != st {
		t.Fatalf("n2's return changed the volume: %s, was %s", after, st)
	}
	c.docker(t, "rm", "-f", "writer", "reader")
}

// davThroughServer reads the volume "shared" over WebDAV through c's
// server (bigSum: the MD5 of its file big), writes a file there, and
// checks that a pod and every copy see it; then the same over S3 (curl's
// SigV4, with a key of the volume).
func davThroughServer(t *testing.T, c *nodeCluster, bigSum string) {
	t.Helper()
	out, err := exec.Command(testenv.Macro(t), "admin", "--data-dir", c.srv.DataDir, "token", "create", "--tenant", "default").Output()
	if err != nil {
		t.Fatalf("token create: %v", err)
	}
	token := strings.TrimSpace(string(out))
	pem, err := os.ReadFile(filepath.Join(c.srv.DataDir, "ca", auth.CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	hc := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	do := func(method, path string, body []byte) (int, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, c.api+"/dav/shared/"+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s /dav/shared/%s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	if code, b := do(http.MethodGet, "big", nil); code != http.StatusOK || fmt.Sprintf("%x", md5.Sum(b)) != bigSum {
		t.Fatalf("GET big over WebDAV: %d, %d bytes", code, len(b))
	}
	if code, b := do(http.MethodPut, "dav.txt", []byte("put-over-webdav\n")); code != http.StatusCreated {
		t.Fatalf("PUT over WebDAV: %d %s", code, b)
	}
	if got := c.sh(t, "pb", "cat /data/dav.txt"); got != "put-over-webdav" {
		t.Fatalf("a pod reads %q of the file put over WebDAV", got)
	}
	for _, n := range []string{"n2", "n3", "n4"} {
		if b, err := os.ReadFile(filepath.Join(volumeCopy(c, n, "shared"), "dav.txt")); err != nil || string(b) != "put-over-webdav\n" {
			t.Fatalf("the copy on %s of the file put over WebDAV: %q %v", n, b, err)
		}
	}

	req, _ := http.NewRequest(http.MethodPost, c.api+"/apis/macro/v1/volumekeys", strings.NewReader(`{"volume": "shared"}`))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var key struct{ ID, Secret string }
	err = json.NewDecoder(resp.Body).Decode(&key)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || err != nil {
		t.Fatalf("POST /volumekeys: %d %v", resp.StatusCode, err)
	}
	s3 := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("curl", append([]string{"-sS", "--fail", "--cacert", filepath.Join(c.srv.DataDir, "ca", auth.CACertFile),
			"--aws-sigv4", "aws:amz:us-east-1:s3", "-u", key.ID + ":" + key.Secret, "-H", "X-Amz-Content-Sha256: UNSIGNED-PAYLOAD"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl S3 %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	s3("-X", "PUT", "--data-binary", "put-over-s3", "https://"+c.s3+"/shared/s3.txt")
	if got := s3("https://" + c.s3 + "/shared/dav.txt"); got != "put-over-webdav\n" {
		t.Fatalf("GET over S3: %q", got)
	}
	if got := c.sh(t, "pc", "cat /data/s3.txt"); got != "put-over-s3" {
		t.Fatalf("a pod reads %q of the file put over S3", got)
	}
}

// TestVolumeSnapshotFailover: the snapshots of a replicated gfs volume
// (primary n2, replicas n3 and n4) are on every copy. n4's agent is
// stopped; a snapshot taken with kra is on n2 and n3, and a volume made
// meanwhile gets one replica only (degraded); n4 comes back: it catches
// up, with the snapshot it missed, and the other volume gets its third
// copy on it. More is written; n2's agent is killed (SIGKILL); through
// the new primary, kra volume snapshot ls lists the snapshot, and a
// rollback to it gives both remaining copies, and a pod reading through
// the new primary, the snapshot's files (checksums).
func TestVolumeSnapshotFailover(t *testing.T) {
	testenv.RequireTools(t, "mkfs.ext4", "mkfs.btrfs", "btrfs")
	testenv.RequireFUSE(t)
	c := startZonedCluster(t, 4)
	start := time.Now()
	c.docker(t, "load", "-i", testimages.Busybox(t))
	c.docker(t, "volume", "create", "--driver", "gfs", "-o", "zone=z2", "-o", "snapshot=off", "ha")
	status := func() string { return c.docker(t, "volume", "inspect", "-f", "{{json .Status}}", "ha") }
	if st := status(); !strings.Contains(st, `"primary":"n2"`) || !strings.Contains(st, `"replicas":["n3 (in-sync)","n4 (in-sync)"]`) {
		t.Fatalf("created: %s", st)
	}
	out, err := exec.Command(testenv.Macro(t), "admin", "--data-dir", c.srv.DataDir, "token", "create", "--tenant", "default").Output()
	if err != nil {
		t.Fatalf("token create: %v", err)
	}
	kra := c.kraAs(t, strings.TrimSpace(string(out)))
	snapFile := func(node, snap, f string) string {
		return filepath.Join(c.agents[node].DataDir, "btrfs", "pool", "s", "default", "ha", snap, f)
	}
	sum := func(s string) string { return fmt.Sprintf("%x", md5.Sum([]byte(s))) }

	c.docker(t, "run", "--rm", "-v", "ha:/data", "busybox", "sh", "-c", "head -c 65536 /dev/zero | tr '\\0' x > /data/big; echo one > /data/a; echo keep > /data/k")
	wait := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not after 60 s: ha %s", what, status())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	c.agents["n4"].Kill()
	wait("n4 stale", func() bool { return strings.Contains(status(), `"n4 (stale)"`) })
	kra("volume", "snapshot", "create", "ha", "s1")
	for _, n := range []string{"n2", "n3"} {
		if g := md5Of(t, snapFile(n, "s1", "a")); g != sum("one\n") {
			t.Fatalf("snapshot s1 on %s: a is %q", n, g)
		}
	}
	c.docker(t, "volume", "create", "--driver", "gfs", "-o", "zone=z2", "late")
	lateStatus := func() string { return c.docker(t, "volume", "inspect", "-f", "{{json .Status}}", "late") }
	if st := lateStatus(); !strings.Contains(st, `"replicas":["n3 (in-sync)"]`) || !strings.Contains(st, `"degraded":"2 of 3 copies in sync"`) {
		t.Fatalf("made while n4 is down: %s", st)
	}
	c.agents["n4"].Start()
	wait("n4 back in sync, with the snapshot it missed, and the third copy of late on it", func() bool {
		late := lateStatus()
		return strings.Contains(status(), `"n4 (in-sync)"`) && strings.Contains(late, `"n4 (in-sync)"`) && !strings.Contains(late, "degraded")
	})
	if g := md5Of(t, snapFile("n4", "s1", "a")); g != sum("one\n") {
		t.Fatalf("snapshot s1 on n4 after its catch-up: a is %q", g)
	}
	t.Logf("%v: n4 caught up with s1; late: %s", time.Since(start).Round(time.Millisecond), lateStatus())
	c.docker(t, "run", "--rm", "-v", "ha:/data", "busybox", "sh", "-c", "echo two > /data/a; echo new > /data/b; rm /data/k")
	for _, n := range []string{"n3", "n4"} {
		if g := md5Of(t, filepath.Join(volumeCopy(c, n, "ha"), "a")); g != sum("two\n") {
			t.Fatalf("the copy on %s after the second write: a is %q", n, g)
		}
	}
	t.Logf("%v: s1 on every copy, written after it", time.Since(start).Round(time.Millisecond))

	c.agents["n2"].Kill()
	wait("a promotion after n2 died", func() bool { return !strings.Contains(status(), `"primary":"n2"`) })
	st := status()
	t.Logf("%v: promoted: %s", time.Since(start).Round(time.Millisecond), st)
	if ls := kra("volume", "snapshot", "ls", "ha"); !strings.Contains(ls, "s1") {
		t.Fatalf("snapshot ls through the new primary:\n%s", ls)
	}
	kra("volume", "snapshot", "rollback", "ha", "s1")
	for _, n := range []string{"n3", "n4"} {
		dir := volumeCopy(c, n, "ha")
		if g := md5Of(t, filepath.Join(dir, "a")); g != sum("one\n") {
			t.Errorf("after the rollback, on %s: a is %q", n, g)
		}
		if g := md5Of(t, filepath.Join(dir, "k")); g != sum("keep\n") {
			t.Errorf("after the rollback, on %s: k is %q", n, g)
		}
		if g := md5Of(t, filepath.Join(dir, "big")); g != sum(strings.Repeat("x", 65536)) {
			t.Errorf("after the rollback, on %s: big is %q", n, g)
		}
		if _, err := os.Stat(filepath.Join(dir, "b")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("after the rollback, on %s: b is there (%v)", n, err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	if got := c.docker(t, "run", "--rm", "-v", "ha:/data", "busybox", "sh", "-c", "cat /data/a /data/k; ls /data"); got != "one\nkeep\na\nbig\nk" {
		t.Fatalf("a pod reads after the rollback: %q", got)
	}
	ls := kra("volume", "snapshot", "ls", "ha")
	if !strings.Contains(ls, "rollback-") {
		t.Fatalf("the rollback's kept snapshot is not listed:\n%s", ls)
	}
	t.Logf("%v: rolled back on every remaining copy: %s", time.Since(start).Round(time.Millisecond), status())
}

// oneByteMovesLittle: a 1-byte change of the 8 MiB file /data/big in pb
// (n3, FUSE) moves about a byte: the bytes n3's mount process reads and
// writes (its /proc/PID/io: sockets, /dev/fuse and its local copy) grow
// by far less than the file (a whole-file fetch and write-back moved 32
// MiB there), and the change is on all three copies.
func oneByteMovesLittle(t *testing.T, c *nodeCluster) {
	t.Helper()
	var pids []string
	filepath.WalkDir(filepath.Join(c.agents["n3"].DataDir, "volfs", "shim"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == "pid" {
			if b, err := os.ReadFile(p); err == nil {
				pids = append(pids, strings.TrimSpace(string(b)))
			}
		}
		return nil
	})
	if len(pids) != 1 {
		t.Fatalf("n3's mount processes: %v", pids)
	}
	moved := func() int64 {
		b, err := os.ReadFile("/proc/" + pids[0] + "/io")
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, l := range strings.Split(string(b), "\n") {
			var v int64
			if k, val, ok := strings.Cut(l, ": "); ok && (k == "rchar" || k == "wchar") {
				fmt.Sscan(val, &v)
				n += v
			}
		}
		return n
	}
	before := moved()
	c.sh(t, "pb", "printf x | dd of=/data/big bs=1 seek=4000000 conv=notrunc 2>/dev/null")
	delta := moved() - before
	t.Logf("a 1-byte change of an 8 MiB file: n3's mount process read and wrote %d bytes", delta)
	if delta > 1<<20 {
		t.Fatalf("a 1-byte change of an 8 MiB file moved %d bytes through n3's mount process", delta)
	}
	sum := strings.Fields(c.sh(t, "pc", "md5sum /data/big"))[0]
	if got := c.sh(t, "pa", "dd if=/data/big bs=1 skip=4000000 count=1 2>/dev/null"); got != "x" {
		t.Fatalf("pa reads %q at the changed byte", got)
	}
	for _, n := range []string{"n2", "n3", "n4"} {
		if got := md5Of(t, filepath.Join(volumeCopy(c, n, "shared"), "big")); got != sum {
			t.Fatalf("after the 1-byte change, the copy on %s: md5 %s, want %s", n, got, sum)
		}
	}
}
