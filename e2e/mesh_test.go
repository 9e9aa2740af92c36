package e2e

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/macro-cloud/macro/internal/testenv"
	"github.com/macro-cloud/macro/internal/testimages"
)

// TestMeshNodes is the VPC across machines: a server and two agents on
// test hosts, the agents joined by their WireGuard mesh, tenants alice and
// bob with pods on both nodes. Real traffic from inside the pods (busybox
// ping, wget, traceroute(6)'s UDP probes, nslookup): a tenant's pods reach
// each other across the nodes by address and by name, over IPv6 and over
// IPv4 (default and ipip overlay addresses, which overlap between
// tenants); the other tenant's
// pods, the other node's host and the server's ports are never reached;
// a rotated node key costs the mesh only a moment.
func TestMeshNodes(t *testing.T) {
	testenv.RequireTools(t, "ip", "nft", "nsenter", "busybox")
	hosts := testenv.NewHosts(t, 3)
	h1 := hosts.List[0]
	port := testenv.FreePort(t)
	addr := net.JoinHostPort(h1.Addr.String(), strconv.Itoa(port))
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
	c := newTenantCloudOn(t, testenv.Macro(t), srv, addr)
	_, alice := c.newTenant("alice")
	_, bob := c.newTenant("bob")
	for _, certs := range []string{alice, bob} {
		c.mustDocker(certs, "load", "-i", testimages.Busybox(t))
	}
	// name runs on node; its IPv6 address once it runs there.
	run := func(certs, name, node string, cmd ...string) netip.Addr {
		t.Helper()
		c.mustDocker(certs, append([]string{"run", "-d", "--name", name, "-l", "kr.zone=" + node, "busybox"}, cmd...)...)
		deadline := time.Now().Add(60 * time.Second)
		for {
			got := c.mustDocker(certs, "inspect", "-f", "{{.State.Running}} {{index . \"Node\"}} {{.NetworkSettings.GlobalIPv6Address}}", name)
			if f := strings.Fields(got); len(f) == 3 && f[0] == "true" && f[1] == node {
				return netip.MustParseAddr(f[2])
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s does not run on %s: %s\n%s", name, node, got, srv.Log())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	serve := []string{"sh", "-c", "mkdir -p /www && echo hello from $HOSTNAME > /www/index.html && exec httpd -f -p 8080 -h /www"}
	web := run(alice, "web", "n2", "sleep", "1d")
	db := run(alice, "db", "n3", serve...)
	eve := run(bob, "eve", "n2", "sleep", "1d")
	vault := run(bob, "vault", "n3", serve...)

	inPod := func(certs, name string, cmd ...string) (string, bool) {
		r := c.docker(certs, append([]string{"exec", name}, cmd...)...)
		return r.Combined(), r.ExitCode == 0
	}
	ping := func(certs, from string, to netip.Addr) bool {
		_, ok := inPod(certs, from, "ping", "-c", "1", "-W", "2", to.String())
		return ok
	}
	wget := func(certs, from, url string) (string, bool) {
		// (busybox wget -T crashes: timeout bounds it instead.)
		return inPod(certs, from, "timeout", "4", "wget", "-q", "-O", "-", url)
	}
	url6 := func(a netip.Addr) string { return "http://" + net.JoinHostPort(a.String(), "8080") + "/" }

	// Routes follow the pods' statuses within about a second; the first
	// packet also waits for the WireGuard handshake.
	deadline := time.Now().Add(30 * time.Second)
	for !ping(alice, "web", db) {
		if time.Now().After(deadline) {
			t.Fatalf("alice's web on n2 does not reach her db on n3\n%s\n%s", agents["n2"].Log(), agents["n3"].Log())
		}
		time.Sleep(500 * time.Millisecond)
	}

	t.Run("a tenant's pods reach each other across nodes", func(t *testing.T) {
		if out, ok := wget(alice, "web", url6(db)); !ok || !strings.Contains(out, "hello from") {
			t.Errorf("tcp web -> db: %v %s", ok, out)
		}
		// traceroute6's probes are UDP: the last hop answering is db
		// itself (port unreachable), one hop past the nodes' routers.
		out, _ := inPod(alice, "web", "traceroute6", "-n", "-q", "1", "-w", "2", "-m", "4", db.String())
		if !strings.Contains(out, db.String()) {
			t.Errorf("udp web -> db: db never answered\n%s", out)
		}
		if !ping(alice, "db", web) {
			t.Error("icmp db -> web")
		}
		if out, ok := inPod(alice, "web", "nslookup", "db"); !ok || !strings.Contains(out, db.String()) {
			t.Errorf("db does not resolve on n2:\n%s", out)
		}
		if out, ok := inPod(alice, "db", "nslookup", "web"); !ok || !strings.Contains(out, web.String()) {
			t.Errorf("web does not resolve on n3:\n%s", out)
		}
		if out, ok := inPod(bob, "eve", "nslookup", "vault"); !ok || !strings.Contains(out, vault.String()) {
			t.Errorf("bob's vault does not resolve for bob's eve:\n%s", out)
		}
		if !ping(bob, "vault", eve) {
			t.Error("icmp bob's vault -> eve")
		}
		if out, ok := wget(bob, "eve", url6(vault)); !ok || !strings.Contains(out, "hello from") {
			t.Errorf("bob's eve -> vault: %v %s", ok, out)
		}
	})

	t.Run("never another tenant's pods", func(t *testing.T) {
		// Each probe waits for its timeout: the pairs go in parallel.
		var wg sync.WaitGroup
		for _, tt := range []struct {
			certs, from string
			to          netip.Addr
		}{
			{bob, "eve", db},      // bob on n2 to alice on n3
			{alice, "web", vault}, // alice on n2 to bob on n3
			{bob, "vault", web},   // bob on n3 to alice on n2
		} {
			wg.Add(3)
			go func() {
				defer wg.Done()
				if ping(tt.certs, tt.from, tt.to) {
					t.Errorf("icmp %s -> %s went through", tt.from, tt.to)
				}
			}()
			go func() {
				defer wg.Done()
				if out, ok := wget(tt.certs, tt.from, url6(tt.to)); ok || strings.Contains(out, "hello") {
					t.Errorf("tcp %s -> %s went through: %s", tt.from, tt.to, out)
				}
			}()
			go func() {
				defer wg.Done()
				out, _ := inPod(tt.certs, tt.from, "traceroute6", "-n", "-q", "1", "-w", "1", "-m", "3", tt.to.String())
				if regexp.MustCompile(`(?m)^\s*\d+\s+` + regexp.QuoteMeta(tt.to.String()) + `\s`).MatchString(out) {
					t.Errorf("udp %s -> %s answered:\n%s", tt.from, tt.to, out)
				}
			}()
		}
		wg.Wait()
		if out, ok := inPod(bob, "eve", "nslookup", "db"); ok || strings.Contains(out, db.String()) {
			t.Errorf("alice's db resolves for bob:\n%s", out)
		}
	})

	t.Run("ipv4 across nodes", func(t *testing.T) {
		// alice's lan4 on n3 and bob's vault hold the same address on
		// their tenants' ipip overlays.
		c.mustDocker(alice, "network", "create", "--driver", "ipip", "--subnet", "10.77.0.0/24", "lan")
		c.mustDocker(bob, "network", "create", "--driver", "ipip", "--subnet", "10.77.0.0/24", "lan")
		c.mustDocker(alice, append([]string{"run", "-d", "--name", "lan4", "-l", "kr.zone=n3", "--network", "lan", "--ip", "10.77.0.10", "busybox"}, serve...)...)
		c.mustDocker(bob, "network", "connect", "--ip", "10.77.0.10", "lan", "vault")
		ip4 := func(certs, name string) netip.Addr {
			t.Helper()
			return netip.MustParseAddr(c.mustDocker(certs, "inspect", "-f", "{{.NetworkSettings.IPAddress}}", name))
		}
		web4, db4, eve4, vault4 := ip4(alice, "web"), ip4(alice, "db"), ip4(bob, "eve"), ip4(bob, "vault")
		lan := netip.MustParseAddr("10.77.0.10")
		url4 := func(a netip.Addr) string { return "http://" + a.String() + ":8080/" }
		deadline := time.Now().Add(30 * time.Second)
		for !ping(alice, "web", db4) || !ping(bob, "eve", vault4) {
			if time.Now().After(deadline) {
				t.Fatalf("no IPv4 across the nodes (web %s, db %s, eve %s, vault %s)\n%s", web4, db4, eve4, vault4, agents["n2"].Log())
			}
			time.Sleep(300 * time.Millisecond)
		}
		if !ping(alice, "db", web4) || !ping(bob, "vault", eve4) {
			t.Error("icmp back across the nodes")
		}
		if out, ok := wget(alice, "web", url4(db4)); !ok || !strings.Contains(out, "hello from") {
			t.Errorf("tcp web -> db over IPv4: %v %s", ok, out)
		}
		out, _ := inPod(alice, "web", "traceroute", "-n", "-q", "1", "-w", "2", "-m", "4", db4.String())
		if !regexp.MustCompile(`(?m)^\s*\d+\s+` + regexp.QuoteMeta(db4.String()) + `\s`).MatchString(out) {
			t.Errorf("udp web -> db over IPv4: db never answered\n%s", out)
		}
		if out, ok := inPod(alice, "web", "nslookup", "db"); !ok || !strings.Contains(out, db4.String()) {
			t.Errorf("db has no A record on n2:\n%s", out)
		}
		// The overlay address: alice gets her pod, bob his.
		want := map[string]string{}
		for _, who := range []struct{ certs, from, pod string }{{alice, "web", "lan4"}, {bob, "eve", "vault"}} {
			a := netip.MustParseAddr(c.mustDocker(who.certs, "inspect", "-f", "{{.NetworkSettings.GlobalIPv6Address}}", who.pod))
			home, ok := wget(who.certs, who.from, url6(a))
			if !ok {
				t.Fatalf("%s over IPv6: %s", who.pod, home)
			}
			want[who.from] = home
			if out, ok := wget(who.certs, who.from, url4(lan)); !ok || out != home {
				t.Errorf("%s -> %s on its tenant's overlay: %q, want %s's %q", who.from, lan, out, who.pod, home)
			}
		}
		if want["web"] == want["eve"] {
			t.Fatalf("lan4 and vault answer alike (%q): the test proves nothing", want["web"])
		}
		// Never the other tenant over IPv4: each probe waits for its
		// timeout, so they go in parallel.
		var wg sync.WaitGroup
		for _, tt := range []struct {
			certs, from string
			to          netip.Addr
		}{
			{bob, "eve", db4},      // bob on n2 to alice on n3
			{alice, "web", vault4}, // alice on n2 to bob on n3
			{bob, "vault", web4},   // bob on n3 to alice on n2
		} {
			wg.Add(3)
			go func() {
				defer wg.Done()
				if ping(tt.certs, tt.from, tt.to) {
					t.Errorf("icmp %s -> %s went through", tt.from, tt.to)
				}
			}()
			go func() {
				defer wg.Done()
				if out, ok := wget(tt.certs, tt.from, url4(tt.to)); ok || strings.Contains(out, "hello") {
					t.Errorf("tcp %s -> %s went through: %s", tt.from, tt.to, out)
				}
			}()
			go func() {
				defer wg.Done()
				out, _ := inPod(tt.certs, tt.from, "traceroute", "-n", "-q", "1", "-w", "1", "-m", "3", tt.to.String())
				if regexp.MustCompile(`(?m)^\s*\d+\s+` + regexp.QuoteMeta(tt.to.String()) + `\s`).MatchString(out) {
					t.Errorf("udp %s -> %s answered:\n%s", tt.from, tt.to, out)
				}
			}()
		}
		wg.Wait()
		if out, _ := inPod(bob, "eve", "nslookup", "db"); strings.Contains(out, db4.String()) {
			t.Errorf("alice's db has an A record for bob:\n%s", out)
		}
	})

	t.Run("never the other node's host or the server", func(t *testing.T) {
		h3 := hosts.List[2]
		// The LAN itself is reachable (egress; n2's host forwards from
		// its LAN as it would from a default route's device): what
		// follows is refused for being the cluster's machines, not for
		// lack of a route.
		if out, err := hosts.List[1].Run("sysctl", "-w", "net.ipv4.conf.eth0.forwarding=1"); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if !ping(alice, "web", hosts.Self) {
			t.Fatal("web has no egress to the LAN: the checks below would prove nothing")
		}
		if !ping(alice, "web", hosts.Self6) {
			t.Fatal("web has no IPv6 egress to the LAN: the checks below would prove nothing")
		}
		if ping(alice, "web", h3.Addr) || ping(alice, "web", h3.Addr6) {
			t.Error("web reaches n3's host")
		}
		// Refused at once (admin-prohibited), not left to time out.
		if out, ok := wget(alice, "web", "http://"+addr+"/_ping"); ok || strings.Contains(out, "OK") {
			t.Errorf("web reaches the server's API port: %s", out)
		}
		if out, ok := inPod(alice, "web", "nc", "-w", "2", h1.Addr.String(), strconv.Itoa(port)); ok {
			t.Errorf("web opens a connection to the server's API port: %s", out)
		}
	})

	t.Run("an agent restart leaves its pods' mesh up", func(t *testing.T) {
		// web on n2 pings db on n3 20 times a second while n3's agent
		// stops and starts again: n3's WireGuard device runs in a
		// process of its own, which carries the traffic meanwhile, and
		// the new agent adopts it. A restart that takes the mesh down
		// loses the pings of its whole length (0.3 s here: 6 pings) and
		// changes the device's process.
		const count = 200
		var stream string
		done := make(chan struct{})
		go func() {
			defer close(done)
			stream, _ = inPod(alice, "web", "ping", "-q", "-i", "0.05", "-c", strconv.Itoa(count), db.String())
		}()
		defer func() { <-done }()
		devPid := func() string {
			b, _ := os.ReadFile(filepath.Join(agents["n3"].DataDir, "net", "mesh-dev", "pid"))
			return strings.TrimSpace(string(b))
		}
		before := devPid()
		if before == "" {
			t.Fatal("n3's mesh device has no process of its own")
		}
		time.Sleep(time.Second)
		if err := agents["n3"].Stop(); err != nil {
			t.Fatal(err)
		}
		agents["n3"].Start()
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(agents["n3"].Log(), "adopted=true") {
			if time.Now().After(deadline) {
				t.Fatalf("n3's new agent did not adopt its mesh device\n%s", agents["n3"].Log())
			}
			time.Sleep(200 * time.Millisecond)
		}
		if after := devPid(); after != before {
			t.Errorf("n3's mesh device process changed from %s to %s over the restart", before, after)
		}
		<-done
		var sent, got int
		for _, line := range strings.Split(stream, "\n") {
			if _, err := fmt.Sscanf(strings.TrimSpace(line), "%d packets transmitted, %d packets received", &sent, &got); err == nil {
				break
			}
		}
		t.Logf("over n3's agent restart: %d pings sent, %d answered", sent, got)
		if sent != count || got < sent-2 {
			t.Fatalf("web's pings to db on n3 were lost over n3's agent restart:\n%s", stream)
		}
	})

	t.Run("a moved pod keeps its address, and a restarted agent its mesh", func(t *testing.T) {
		// mover may run on either node; its node dies, it moves to the
		// other, with the same IPv6 address (a hash of its ID). The dead
		// node's agent comes back (its pods ran on meanwhile) and builds
		// its mesh again: its pods reach mover on the other node.
		c.mustDocker(alice, "run", "-d", "--name", "mover", "busybox", "sleep", "1d")
		where := func() (string, netip.Addr) {
			deadline := time.Now().Add(60 * time.Second)
			for {
				got := c.mustDocker(alice, "inspect", "-f", "{{.State.Running}} {{index . \"Node\"}} {{.NetworkSettings.GlobalIPv6Address}}", "mover")
				if f := strings.Fields(got); len(f) == 3 && f[0] == "true" && agents[f[1]] != nil {
					return f[1], netip.MustParseAddr(f[2])
				}
				if time.Now().After(deadline) {
					t.Fatalf("mover does not run: %s", got)
				}
				time.Sleep(200 * time.Millisecond)
			}
		}
		first, addr1 := where()
		other := map[string]string{"n2": "n3", "n3": "n2"}[first]
		agents[first].Kill()
		var node string
		var addr2 netip.Addr
		for node, addr2 = where(); node != other; node, addr2 = where() {
			time.Sleep(200 * time.Millisecond)
		}
		if addr2 != addr1 {
			t.Errorf("mover had %s on %s, has %s on %s", addr1, first, addr2, other)
		}
		agents[first].Start()
		// alice's pod on the restarted node.
		from := map[string]string{"n2": "web", "n3": "db"}[first]
		deadline := time.Now().Add(30 * time.Second)
		for !ping(alice, from, addr2) {
			if time.Now().After(deadline) {
				t.Fatalf("%s on the restarted %s does not reach mover on %s\n%s", from, first, other, agents[first].Log())
			}
			time.Sleep(300 * time.Millisecond)
		}
		c.mustDocker(alice, "rm", "-f", "mover")
	})

	t.Run("a rotated key costs the mesh a moment", func(t *testing.T) {
		// web pings db on n3 ten times a second all along, while n3
		// announces its next key, n2 stands by and n3 switches: the
		// longest round trip is the rotation's gap (wireguard-go keeps
		// the packets of a session it cannot use yet, and sends them
		// after the handshake: pings are late rather than lost).
		var stream string
		done := make(chan struct{})
		go func() {
			defer close(done)
			stream, _ = inPod(alice, "web", "ping", "-q", "-i", "0.1", "-w", "12", db.String())
		}()
		defer func() { <-done }() // a failure below waits for it too
		time.Sleep(500 * time.Millisecond)
		start := time.Now()
		out := c.mustAdmin("nodes", "rotate-key", "n3")
		if !strings.Contains(out, "n3") {
			t.Fatalf("rotate-key: %s", out)
		}
		deadline := time.Now().Add(30 * time.Second)
		var rotated time.Time
		for rotated.IsZero() {
			if strings.Contains(agents["n3"].Log(), "mesh key rotated") {
				rotated = time.Now()
			}
			if time.Now().After(deadline) {
				t.Fatalf("n3 did not rotate its key:\n%s", agents["n3"].Log())
			}
			time.Sleep(100 * time.Millisecond)
		}
		for !ping(alice, "web", db) {
			if time.Now().After(deadline) {
				t.Fatalf("no traffic after n3's key rotation\n%s", agents["n3"].Log())
			}
		}
		<-done
		// n2 took the new key over on n3's greeting (make before
		// break), or, when its view came late, from the view.
		how := "from its view (late)"
		if strings.Contains(agents["n2"].Log(), "new key took over") {
			how = "on n3's handshake"
		}
		m := regexp.MustCompile(`(\d+) packets transmitted, (\d+) (packets )?received`).FindStringSubmatch(stream)
		if m == nil {
			t.Fatalf("ping's summary: %s", stream)
		}
		sent, _ := strconv.Atoi(m[1])
		got, _ := strconv.Atoi(m[2])
		rtt := regexp.MustCompile(`min/avg/max = [\d.]+/[\d.]+/([\d.]+) ms`).FindStringSubmatch(stream)
		if rtt == nil {
			t.Fatalf("ping's summary: %s", stream)
		}
		t.Logf("rotated %v after it was asked; n2 took the new key %s; pings every 100 ms meanwhile: %d sent, %d lost, longest round trip %s ms",
			rotated.Sub(start).Round(100*time.Millisecond), how, sent, sent-got, rtt[1])
	})
}
