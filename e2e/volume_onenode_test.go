package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/macro-cloud/macro/internal/testenv"
	"github.com/macro-cloud/macro/internal/testimages"
)

// TestVolumeOneNodeGetsReplicas: a cluster of one node (n2) makes an nfs
// volume, which gets no replica; a container on n2 binds its directory
// and writes to it all along. n3 and n4 join: the volume says, in docker
// and kra inspect, that it has 1 of 3 copies and that the container must
// restart, and gets no replica while it binds the directory (also after
// n2's agent restarted and adopted it); a container
// started meanwhile writes through the write sequence. Restarted, the
// container mounts the volume through the write sequence and goes on
// writing; the volume gets replicas on n3 and n4, in sync. Every file
// (written before the restart, while the replicas filled, and after) has
// the same checksum in the three copies; then n2's agent is killed, a
// replica is promoted and a container reads every file, with its
// checksum, through the new primary.
func TestVolumeOneNodeGetsReplicas(t *testing.T) {
	testenv.RequireTools(t, "mkfs.ext4", "mkfs.btrfs", "btrfs")
	testenv.RequireFUSE(t)
	start := time.Now()
	logf := func(format string, args ...any) {
		t.Helper()
		t.Logf("%v: "+format, append([]any{time.Since(start).Round(time.Millisecond)}, args...)...)
	}
	c := startClusterServer(t, 4)
	c.startAgent(t, "n2", "z")
	c.docker(t, "load", "-i", testimages.Busybox(t))
	c.docker(t, "volume", "create", "--driver", "nfs", "solo")
	status := func() string { return c.docker(t, "volume", "inspect", "-f", "{{json .Status}}", "solo") }
	if st := status(); !strings.Contains(st, `"primary":"n2"`) || !strings.Contains(st, `"replicas":[]`) || strings.Contains(st, "degraded") {
		t.Fatalf("made on one node: %s", st)
	}
	// The writer: a file of 8 KiB of random bytes every 0.1 s, named by
	// the time it started (the restart starts it again) and a count.
	c.docker(t, "run", "-d", "--name", "wr", "-v", "solo:/data", "busybox", "sh", "-c",
		`r=$(date +%s%N); i=0; while :; do i=$((i+1)); head -c 8192 /dev/urandom > /data/f$r-$i || echo f$r-$i >> /tmp/failed; sleep 0.1; done`)
	c.waitPlaced(t, "wr", func(n string) bool { return n == "n2" })
	count := func() int {
		out := testenv.Docker(t, c.srv.Host(), "exec", "wr", "sh", "-c", "ls /data | wc -l").Stdout
		n, _ := strconv.Atoi(strings.TrimSpace(out))
		return n
	}
	wait := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not after 60 s: %s\n%s", what, status(), c.srv.Log())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	wait("the writer writes", func() bool { return count() >= 10 })

	c.startAgent(t, "n3", "z")
	c.startAgent(t, "n4", "z")
	logf("n3 and n4 started")
	const why = "1 of 3 copies in sync: replicas are added once no container binds it directly; restart wr"
	wait("inspect says why the volume waits", func() bool { return strings.Contains(status(), why) })
	out, err := exec.Command(testenv.Macro(t), "admin", "--data-dir", c.srv.DataDir, "token", "create", "--tenant", "default").Output()
	if err != nil {
		t.Fatalf("token create: %v", err)
	}
	kra := c.kraAs(t, strings.TrimSpace(string(out)))
	var infos []struct {
		Replicas []any `json:"replicas"`
		Degraded string
	}
	if err := json.Unmarshal([]byte(kra("volume", "inspect", "solo")), &infos); err != nil || len(infos) != 1 || infos[0].Degraded != why {
		t.Fatalf("kra volume inspect: %+v %v", infos, err)
	}
	// It waits: no replica while wr binds the directory, also after
	// n2's agent restarted (it adopts wr, still bound directly).
	c.agents["n2"].Kill()
	c.agents["n2"].Start()
	before := count()
	wait("wr is adopted and writes on", func() bool { return count() >= before+5 })
	time.Sleep(3 * time.Second)
	if st := status(); !strings.Contains(st, `"replicas":[]`) || !strings.Contains(st, why) {
		t.Fatalf("while wr binds the volume: %s", st)
	}
	logf("waiting as it should: %s", status())
	// A container started now mounts it through the write sequence: its
	// writes are acknowledged (one copy so far) and do not hold the
	// replicas back.
	c.docker(t, "run", "--rm", "-v", "solo:/data", "busybox", "sh", "-c", "for i in 1 2 3 4 5; do head -c 4096 /dev/urandom > /data/late$i || exit 1; done")

	c.docker(t, "restart", "-t", "1", "wr")
	c.waitPlaced(t, "wr", func(string) bool { return true })
	logf("wr restarted")
	wait("n3 and n4 in sync", func() bool {
		st := status()
		return strings.Contains(st, `"n3 (in-sync)"`) && strings.Contains(st, `"n4 (in-sync)"`) && !strings.Contains(st, "degraded")
	})
	logf("replicas in sync: %s", status())
	before = count()
	wait("wr writes through the sequence", func() bool { return count() >= before+10 })
	if failed := testenv.Docker(t, c.srv.Host(), "exec", "wr", "sh", "-c", "cat /tmp/failed 2>/dev/null").Stdout; failed != "" {
		t.Fatalf("writes of wr failed: %s", failed)
	}
	c.docker(t, "stop", "-t", "1", "wr")
	// A write cut off by the stop may leave a replica stale: it catches up.
	wait("n3 and n4 in sync after the writer stopped", func() bool {
		st := status()
		return strings.Contains(st, `"n3 (in-sync)"`) && strings.Contains(st, `"n4 (in-sync)"`)
	})

	// Every file, the same in the three copies.
	sums := func(node string) map[string]string {
		dir := volumeCopy(c, node, "solo")
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, e := range ents {
			m[e.Name()] = md5Of(t, filepath.Join(dir, e.Name()))
		}
		return m
	}
	want := sums("n2")
	var names []string
	for f := range want {
		names = append(names, f)
	}
	sort.Strings(names)
	runs := map[string]bool{}
	for _, f := range names {
		if strings.HasPrefix(f, "f") {
			runs[strings.Split(f, "-")[0]] = true
		}
	}
	if len(runs) != 2 || len(names) < 30 || want["late5"] == "" {
		t.Fatalf("the primary's copy has %d files of %d runs of the writer: %v", len(names), len(runs), names)
	}
	for _, n := range []string{"n3", "n4"} {
		got := sums(n)
		if len(got) != len(want) {
			t.Errorf("the copy on %s has %d files, the primary %d", n, len(got), len(want))
		}
		for f, s := range want {
			if got[f] != s {
				t.Errorf("%s on %s: %q, the primary's %s", f, n, got[f], s)
			}
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	logf("%d files, the same on n2, n3 and n4", len(names))
	primaryLog := c.agents["n2"].Log()
	t.Logf("n2's agent: %d catch-ups, %d writes a replica missed", strings.Count(primaryLog, "volume replica caught up"),
		strings.Count(primaryLog, "volume replica missed a write"))

	// The primary dies: a replica is promoted, and has every file.
	c.agents["n2"].Kill()
	wait("a promotion after n2 died", func() bool { return !strings.Contains(status(), `"primary":"n2"`) })
	logf("promoted: %s", status())
	read := map[string]string{}
	for _, l := range strings.Split(c.docker(t, "run", "--rm", "-v", "solo:/data", "busybox", "sh", "-c", "cd /data && md5sum *"), "\n") {
		if f := strings.Fields(l); len(f) == 2 {
			read[f[1]] = f[0]
		}
	}
	for f, s := range want {
		if read[f] != s {
			t.Errorf("%s through the new primary: %q, want %s", f, read[f], s)
		}
	}
	if len(read) != len(want) {
		t.Errorf("%d files through the new primary, want %d", len(read), len(want))
	}
	c.docker(t, "rm", "-f", "wr")
}
