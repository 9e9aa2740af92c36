package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/macro-cloud/macro/auth"
	"github.com/macro-cloud/macro/internal/testenv"
	"github.com/macro-cloud/macro/internal/testimages"
)

// shimPids are the mount processes (agent/volshim.go) of a node's remote
// volume mounts that are alive, by state directory.
func shimPids(t *testing.T, dataDir string) map[string]int {
	t.Helper()
	out := map[string]int{}
	files, _ := filepath.Glob(filepath.Join(dataDir, "volfs", "shim", "*", "*", "*", "pid"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || syscall.Kill(pid, 0) != nil {
			continue
		}
		if cmd, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline"); !strings.Contains(string(cmd), "volfs-shim") {
			continue
		}
		out[filepath.Dir(f)] = pid
	}
	return out
}

// TestVolumeMountSurvivesAgentRestart: a pod on n3 mounts a gfs volume
// whose primary is n2 (FUSE, served by a mount process of its own). n3's
// agent is killed (SIGKILL) while the pod writes in a loop, and started
// again: the pod, not restarted, reads what it wrote with the same
// checksums and goes on writing through the same mount process, which the
// new agent adopted; every write the loop saw succeed is on the primary.
// Then the pod is removed while n3's agent is down: the agent, back,
// ends the orphaned mount process and its mount.
func TestVolumeMountSurvivesAgentRestart(t *testing.T) {
	testenv.RequireTools(t, "mkfs.ext4", "mkfs.btrfs", "btrfs")
	testenv.RequireFUSE(t)
	c := startZonedCluster(t, 3)
	c.docker(t, "load", "-i", testimages.Busybox(t))
	c.docker(t, "volume", "create", "--driver", "gfs", "-o", "zone=z2", "-o", "size=64M", "shared")
	c.docker(t, "volume", "create", "--driver", "lv2", "-o", "size=16M", "-o", "zone=z3", "pin-n3")
	// The loop writes a file at a time with fsync and records the
	// checksum of each write that succeeded.
	loop := `i=0; while true; do i=$((i+1)); head -c 4096 /dev/urandom > /tmp/c;
	  if dd if=/tmp/c of=/data/w$i bs=4096 conv=fsync 2>>/tmp/failed; then echo "$(md5sum < /tmp/c | cut -c1-32) w$i" >> /tmp/acked; fi;
	  sleep 0.05; done`
	c.docker(t, "run", "-d", "--name", "pb", "-v", "pin-n3:/pin", "-v", "shared:/data", "busybox", "sh", "-c", loop)
	c.waitPlaced(t, "pb", func(n string) bool { return n == "n3" })
	n3 := c.agents["n3"]

	sum := strings.Fields(c.sh(t, "pb", "head -c 4194304 /dev/urandom > /data/big && md5sum /data/big"))[0]
	before := c.docker(t, "inspect", "-f", "{{.State.Pid}} {{.State.StartedAt}} {{.RestartCount}}", "pb")
	shims := shimPids(t, n3.DataDir)
	if len(shims) != 1 {
		t.Fatalf("n3 runs %d volume mount processes, want 1: %v", len(shims), shims)
	}

	n3.Kill()
	time.Sleep(time.Second) // the loop writes on while no agent runs
	n3.Start()
	// The pod's exec goes through the new agent: wait until it answers.
	deadline := time.Now().Add(30 * time.Second)
	for testenv.Docker(t, c.srv.Host(), "exec", "pb", "true").ExitCode != 0 {
		if time.Now().After(deadline) {
			t.Fatal("no exec into pb 30 s after n3's agent restarted")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if after := c.docker(t, "inspect", "-f", "{{.State.Pid}} {{.State.StartedAt}} {{.RestartCount}}", "pb"); after != before {
		t.Fatalf("pb was restarted: %q, then %q", before, after)
	}
	if got := strings.Fields(c.sh(t, "pb", "md5sum /data/big"))[0]; got != sum {
		t.Fatalf("after the restart pb reads md5 %s, wrote %s", got, sum)
	}
	if got := shimPids(t, n3.DataDir); !equalPids(got, shims) {
		t.Fatalf("mount processes before the restart %v, after %v: want the same, adopted", shims, got)
	}
	sum2 := strings.Fields(c.sh(t, "pb", "head -c 1048576 /dev/urandom > /data/after && md5sum /data/after"))[0]
	if got := md5Of(t, filepath.Join(volumeCopy(c, "n2", "shared"), "after")); got != sum2 {
		t.Fatalf("the primary's copy of a file written after the restart: md5 %s, want %s", got, sum2)
	}
	// Every acknowledged write of the loop, before, during and after the
	// restart, is there; the loop still writes.
	acked := strings.Split(strings.TrimSpace(c.sh(t, "pb", "cat /tmp/acked")), "\n")
	for _, l := range acked {
		f := strings.Fields(l)
		if len(f) != 2 {
			continue
		}
		if got := md5Of(t, filepath.Join(volumeCopy(c, "n2", "shared"), f[1])); got != f[0] {
			t.Fatalf("acknowledged %s: md5 %s on the primary, want %s", f[1], got, f[0])
		}
	}
	n := len(acked)
	deadline = time.Now().Add(30 * time.Second)
	for len(strings.Split(strings.TrimSpace(c.sh(t, "pb", "cat /tmp/acked")), "\n")) < n+5 {
		if time.Now().After(deadline) {
			t.Fatalf("the loop does not write after the restart; failures: %s", testenv.Docker(t, c.srv.Host(), "exec", "pb", "cat", "/tmp/failed").Stdout)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("%d writes acknowledged across the restart", n)

	// Removed while the agent is down: the agent, back, ends the orphan.
	n3.Kill()
	c.docker(t, "rm", "-f", "pb")
	n3.Start()
	deadline = time.Now().Add(30 * time.Second)
	stateLeft := func() bool {
		for state := range shims {
			if _, err := os.Stat(state); err == nil {
				return true
			}
		}
		return false
	}
	for len(shimPids(t, n3.DataDir)) != 0 || len(mountedUnder(t, n3.DataDir+"/volfs")) != 0 || stateLeft() {
		if time.Now().After(deadline) {
			t.Fatalf("30 s after the agent restarted, the removed pod's mount process %v, mounts %v or state (%v) remain",
				shimPids(t, n3.DataDir), mountedUnder(t, n3.DataDir+"/volfs"), stateLeft())
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.docker(t, "volume", "rm", "shared")
}

func equalPids(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestVolumeRefusedToOtherNodes: a node's credential (which its agent got
// for the join token at its first start) gets a volume's data only while
// a pod assigned to the node uses the volume, or the node keeps a copy:
// n4 asking for a gfs volume of n2 (replica on n3) that none of its pods
// mounts is answered 404, as it is again after its pod is gone; the join
// token, which speaks for no node, is answered 403.
func TestVolumeRefusedToOtherNodes(t *testing.T) {
	testenv.RequireTools(t, "mkfs.ext4", "mkfs.btrfs", "btrfs")
	c := startZonedCluster(t, 4)
	c.docker(t, "load", "-i", testimages.Busybox(t))
	c.docker(t, "volume", "create", "--driver", "gfs", "-o", "zone=z2", "-o", "redundancy=reduced", "-o", "size=16M", "private")
	credential := func(node string) string {
		b, err := os.ReadFile(filepath.Join(c.agents[node].DataDir, "node-credential"))
		if err != nil {
			t.Fatalf("%s has no node credential: %v", node, err)
		}
		return strings.TrimSpace(string(b))
	}
	pem, err := os.ReadFile(filepath.Join(c.srv.DataDir, "ca", auth.CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	ask := func(token, op string) (int, string) {
		t.Helper()
		var body io.Reader
		method := http.MethodGet
		if op == "op" {
			method, body = http.MethodPost, strings.NewReader(`{"op":"readdir","path":"","attrs":true}`) // with every entry's attributes, as mounts ask
		}
		req, err := http.NewRequest(method, c.api+"/node/v1/volfs/default/private/"+op, body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", op, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// The primary's node may; n4, whose pods do not use it, may not.
	if code, b := ask(credential("n2"), "route"); code != http.StatusOK {
		t.Fatalf("n2 (the primary) asks the route: %d %s", code, b)
	}
	if code, b := ask(credential("n3"), "route"); code != http.StatusOK {
		t.Fatalf("n3 (the replica) asks the route: %d %s", code, b)
	}
	for _, op := range []string{"route", "op"} {
		if code, b := ask(credential("n4"), op); code != http.StatusNotFound || !strings.Contains(b, "message") {
			t.Fatalf("n4, no pod of which uses the volume, asks %s: %d %s", op, code, b)
		}
	}
	if code, b := ask(c.token, "op"); code != http.StatusForbidden {
		t.Fatalf("the join token asks: %d %s", code, b)
	}
	// With a pod of n4 that mounts it, n4 may.
	c.docker(t, "volume", "create", "--driver", "lv2", "-o", "size=16M", "-o", "zone=z4", "pin-n4")
	c.docker(t, "run", "-d", "--name", "user", "-v", "pin-n4:/pin", "-v", "private:/data", "busybox", "sleep", "1d")
	c.waitPlaced(t, "user", func(n string) bool { return n == "n4" })
	if code, b := ask(credential("n4"), "op"); code != http.StatusOK {
		t.Fatalf("n4, whose pod uses the volume, asks: %d %s", code, b)
	}
	c.sh(t, "user", "echo hi > /data/f")
	if code, b := ask(credential("n4"), "op"); code != http.StatusOK || !strings.Contains(b, `"name":"f"`) || !strings.Contains(b, `"size":3`) {
		t.Fatalf("n4 lists the volume: %d %s", code, b)
	}
	// Gone with the pod (after the servers' few seconds of memory).
	c.docker(t, "rm", "-f", "user")
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, _ := ask(credential("n4"), "op")
		if code == http.StatusNotFound {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("n4 still gets the volume (%d) 30 s after its pod was removed", code)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
