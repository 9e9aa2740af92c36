package e2e

import (
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/macro-cloud/macro/internal/testenv"
	"github.com/macro-cloud/macro/internal/testimages"
)

// Pods' default IPv4 addresses are chosen by the cluster (store/vpc.go),
// not by each node: unique in the tenant across nodes and servers, and
// kept when a pod moves.

// podAddrs waits until each of names runs and returns its node and IPv4
// address, as docker inspect (through host) shows them.
func podAddrs(t *testing.T, docker func(args ...string) string, names ...string) (nodes map[string]string, addrs map[string]netip.Addr) {
	t.Helper()
	nodes, addrs = map[string]string{}, map[string]netip.Addr{}
	deadline := time.Now().Add(60 * time.Second)
	for _, name := range names {
		for {
			got := docker("inspect", "-f", "{{.State.Running}} {{index . \"Node\"}} {{.NetworkSettings.IPAddress}}", name)
			if f := strings.Fields(got); len(f) == 3 && f[0] == "true" {
				nodes[name], addrs[name] = f[1], netip.MustParseAddr(f[2])
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s does not run: %s", name, got)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return nodes, addrs
}

// distinctIn24 fails unless addrs are distinct and share one /24.
func distinctIn24(t *testing.T, addrs map[string]netip.Addr) {
	t.Helper()
	seen := map[netip.Addr]string{}
	var sub netip.Prefix
	for name, a := range addrs {
		if other, dup := seen[a]; dup {
			t.Errorf("%s and %s both have %s", name, other, a)
		}
		seen[a] = name
		p, _ := a.Prefix(24)
		if !sub.IsValid() {
			sub = p
		}
		if p != sub {
			t.Errorf("%s has %s, outside the namespace's %s: %v", name, a, sub, addrs)
		}
	}
}

// TestVPCAddressesCluster: `docker run` at once through two servers of a
// cluster, each with its own node: every pod of the namespace runs with an
// address of its own, all in one /24, on both nodes.
func TestVPCAddressesCluster(t *testing.T) {
	servers := startCluster(t, 2, "--vpc=true")
	for _, cs := range servers {
		testenv.MustDocker(t, cs.srv.Host(), "load", "-i", testimages.Busybox(t))
	}
	// Both nodes are this machine: pods that ask for a quarter of its
	// memory (a reservation the scheduler counts; they use little) fit
	// four to a node at most, so six land on both.
	const n = 6
	mem := strconv.FormatInt(memTotal(t)/4, 10)
	var names []string
	var wg sync.WaitGroup
	for i := range n {
		name := "p" + strconv.Itoa(i)
		names = append(names, name)
		host := servers[i%len(servers)].srv.Host()
		t.Cleanup(func() { testenv.Docker(t, servers[0].srv.Host(), "rm", "-f", name) })
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r := testenv.Docker(t, host, "run", "-d", "--name", name, "-m", mem, "-l", "com.docker.compose.project=shop", "busybox", "sleep", "3600"); r.ExitCode != 0 {
				t.Errorf("docker run %s: %s", name, r.Combined())
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	docker := func(args ...string) string {
		return strings.TrimSpace(testenv.MustDocker(t, servers[1].srv.Host(), args...).Stdout)
	}
	nodes, addrs := podAddrs(t, docker, names...)
	t.Logf("nodes %v, addresses %v", nodes, addrs)
	distinctIn24(t, addrs)
	on := map[string]bool{}
	for _, node := range nodes {
		on[node] = true
	}
	if len(on) < 2 {
		t.Errorf("every pod on one node (%v): the test proves less than it says", nodes)
	}
}

// TestVPCAddressMoves: a server and two agents on test hosts; pods of one
// namespace on either node have addresses of their own in one /24 (each
// node once chose .2 for its first), and a pod whose node dies runs on
// the other with the address it had.
func TestVPCAddressMoves(t *testing.T) {
	testenv.RequireTools(t, "ip", "nft", "nsenter", "busybox")
	hosts := testenv.NewHosts(t, 3)
	h1 := hosts.List[0]
	addr := net.JoinHostPort(h1.Addr.String(), strconv.Itoa(testenv.FreePort(t)))
	srv := testenv.StartServer(t, testenv.OnHost(h1), testenv.WithArgs("--api-addr", addr, "--ingress-http", "off", "--ingress-https", "off",
		"--node-ttl", nodeTTL.String(), "--agent=false", "--vpc=false"))
	out, err := exec.Command(testenv.Macro(t), "admin", "--data-dir", srv.DataDir, "join-token", "node").Output()
	if err != nil {
		t.Fatalf("join-token node: %v", err)
	}
	token, caHash := strings.TrimSpace(string(out)), caHashOf(t, srv)
	agents := map[string]*testenv.Server{}
	for i, h := range hosts.List[1:] {
		name := "n" + strconv.Itoa(i+2)
		agents[name] = testenv.StartAgent(t, testenv.OnHost(h), testenv.WithArgs("--server", "https://"+addr, "--token", token,
			"--ca-hash", caHash, "--node-name", name, "--label", "zone="+name))
	}
	host := srv.Host()
	docker := func(args ...string) string {
		t.Helper()
		r := testenv.Docker(t, host, args...)
		if r.ExitCode != 0 {
			t.Fatalf("docker %s: %s", strings.Join(args, " "), r.Combined())
		}
		return strings.TrimSpace(r.Stdout)
	}
	docker("load", "-i", testimages.Busybox(t))
	for _, p := range []struct{ name, zone string }{{"pa", "n2"}, {"pb", "n3"}, {"mover", ""}} {
		args := []string{"run", "-d", "--name", p.name}
		if p.zone != "" {
			args = append(args, "-l", "kr.zone="+p.zone)
		}
		docker(append(args, "busybox", "sleep", "1d")...)
		t.Cleanup(func() { testenv.Docker(t, host, "rm", "-f", p.name) })
	}
	nodes, addrs := podAddrs(t, docker, "pa", "pb", "mover")
	if nodes["pa"] != "n2" || nodes["pb"] != "n3" {
		t.Fatalf("placed on %v", nodes)
	}
	distinctIn24(t, addrs)

	first := nodes["mover"]
	other := map[string]string{"n2": "n3", "n3": "n2"}[first]
	agents[first].Kill()
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := docker("inspect", "-f", "{{.State.Running}} {{index . \"Node\"}} {{.NetworkSettings.IPAddress}}", "mover")
		if f := strings.Fields(got); len(f) == 3 && f[0] == "true" && f[1] == other {
			if a := netip.MustParseAddr(f[2]); a != addrs["mover"] {
				t.Errorf("mover had %s on %s, has %s on %s", addrs["mover"], first, a, other)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mover does not run on %s after %s died: %s\n%s", other, first, got, srv.Log())
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("mover kept %s from %s to %s; pa %s on n2, pb %s on n3", addrs["mover"], first, other, addrs["pa"], addrs["pb"])
}
