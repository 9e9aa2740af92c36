package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/macro-cloud/macro/internal/testenv"
)

// TestOverlays drives user-defined IPv4 overlays (driver ipip) with the
// docker CLI and real traffic from inside pods: fixed and given addresses,
// Docker's refusals, a pod on two overlays, connect and disconnect of a
// running pod, A records on the overlay the asker shares, and another
// tenant with the same subnet kept apart (ICMP, TCP, UDP, spoofing).
func TestOverlays(t *testing.T) {
	c, srv, _ := startNetCloud(t)
	alice, bob := c.as(c.alice), c.as(c.bob)
	ok := func(as func(...string) testenv.Result, what string, args ...string) string {
		t.Helper()
		r := as(args...)
		if r.ExitCode != 0 {
			t.Errorf("%s: %v: exit %d\n%s", what, args, r.ExitCode, r.Combined())
		}
		return strings.TrimSpace(r.Stdout)
	}
	fails := func(as func(...string) testenv.Result, what, want string, args ...string) {
		t.Helper()
		r := as(args...)
		if r.ExitCode == 0 || !strings.Contains(r.Combined(), want) {
			t.Errorf("%s: %v: exit %d, want a failure with %q\n%s", what, args, r.ExitCode, want, r.Combined())
		}
	}
	has := func(as func(...string) testenv.Result, what, want string, args ...string) {
		t.Helper()
		if out := ok(as, what, args...); !strings.Contains(out, want) {
			t.Errorf("%s: %v: want %q in\n%s", what, args, want, out)
		}
	}
	lacks := func(as func(...string) testenv.Result, what, unwanted string, args ...string) {
		t.Helper()
		if out := ok(as, what, args...); strings.Contains(out, unwanted) {
			t.Errorf("%s: %v: %q should not be in\n%s", what, args, unwanted, out)
		}
	}
	// gw4DNS asks the node's DNS server at the pod's IPv4 gateway
	// (append the query: "-type=a NAME").
	const gw4DNS = `f() { nslookup "$@" $(ip -4 route | awk '/^default/{print $3}'); }; f`
	httpd := func(text string) []string {
		return []string{"sh", "-c", "mkdir -p /www && echo " + text + " > /www/index.html && exec httpd -f -p 80 -h /www"}
	}

	mustOK(t, alice("network", "create", "--driver", "ipip", "--subnet", "10.10.0.0/24", "back"), "network create")
	mustOK(t, alice("network", "create", "--driver", "ipip", "--subnet", "10.20.0.0/24", "front"), "network create front")
	has(alice, "network ls", "back ipip", "network", "ls", "--format", "{{.Name}} {{.Driver}}")
	fails(alice, "overlapping subnet", "Pool overlaps with other one on this address space",
		"network", "create", "--driver", "ipip", "--subnet", "10.10.0.128/25", "clash")
	fails(alice, "IPv6 subnet", "overlays are IPv4", "network", "create", "--driver", "ipip", "--subnet", "fd00:1::/64", "six")

	mustOK(t, alice(append([]string{"run", "-d", "--name", "db", "--network", "back", "--ip", "10.10.0.10", "busybox"}, httpd("db-on-the-overlay")...)...), "run db")
	mustOK(t, alice(append([]string{"run", "-d", "--name", "app", "--network", "back", "busybox"}, httpd("app-of-alice")...)...), "run app")
	mustOK(t, alice("run", "-d", "--name", "late", "busybox", "sleep", "3600"), "run late")

	t.Run("addresses", func(t *testing.T) {
		// The subnet's first address is the gateway's: the first pod
		// without a fixed address gets .2.
		if got := ok(alice, "inspect app", "inspect", "-f", `{{(index .NetworkSettings.Networks "back").IPAddress}}`, "app"); got != "10.10.0.2" {
			t.Errorf("app's address on back: %q", got)
		}
		if got := ok(alice, "inspect db", "inspect", "-f", `{{(index .NetworkSettings.Networks "back").IPAMConfig.IPv4Address}}`, "db"); got != "10.10.0.10" {
			t.Errorf("db's fixed address: %q", got)
		}
		has(alice, "db's eth0", "10.10.0.10/24", "exec", "db", "ip", "-o", "addr", "show", "eth0")
		has(alice, "network inspect", "db=10.10.0.10/24", "network", "inspect", "-f", "{{range .Containers}}{{.Name}}={{.IPv4Address}} {{end}}", "back")
		fails(alice, "a taken address", "Address already in use", "run", "-d", "--name", "dup", "--network", "back", "--ip", "10.10.0.10", "busybox", "true")
		fails(alice, "the gateway's address", "Address already in use", "run", "-d", "--name", "dup", "--network", "back", "--ip", "10.10.0.1", "busybox", "true")
		fails(alice, "outside the subnet", "does not belong to any of this network's subnets", "run", "-d", "--name", "dup", "--network", "back", "--ip", "10.9.0.5", "busybox", "true")
		fails(alice, "--ip on the default network", "user specified IP address is supported on user defined networks only", "run", "-d", "--name", "dup", "--ip", "10.10.0.50", "busybox", "true")
		if r := alice("inspect", "dup"); r.ExitCode == 0 {
			t.Errorf("a refused pod was created: %s", r.Stdout)
		}
	})

	t.Run("gvisor", func(t *testing.T) {
		// A running gVisor pod's netstack took its addresses at start:
		// a live connect is refused, saying what to do; stopped, it
		// connects, and starts with its address on the overlay.
		mustOK(t, alice("run", "-d", "--name", "gv", "--runtime", "gvisor", "busybox", "sleep", "300"), "run gv")
		defer alice("rm", "-f", "gv")
		fails(alice, "live connect under gVisor", "runs under gVisor", "network", "connect", "--ip", "10.10.0.40", "back", "gv")
		ok(alice, "stop gv", "stop", "-t", "1", "gv")
		ok(alice, "connect stopped gv", "network", "connect", "--ip", "10.10.0.40", "back", "gv")
		ok(alice, "start gv", "start", "gv")
		has(alice, "gv's overlay address", "10.10.0.40", "exec", "gv", "ip", "-o", "addr")
	})

	t.Run("concurrent creates", func(t *testing.T) {
		// Addresses are chosen in the store's transaction of the pod:
		// creates at once get different addresses, and of those asking
		// for one fixed address exactly one gets it.
		mustOK(t, alice("network", "create", "--driver", "ipip", "--subnet", "10.30.0.0/24", "race"), "network create race")
		const free, fixed = 8, 3
		results := make([]testenv.Result, free+fixed)
		var wg sync.WaitGroup
		for i := range results {
			args := []string{"run", "-d", "--name", fmt.Sprintf("race%d", i), "--network", "race"}
			if i >= free {
				args = append(args, "--ip", "10.30.0.77")
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i] = alice(append(args, "busybox", "sleep", "300")...)
			}()
		}
		wg.Wait()
		seen := map[string]string{}
		fixedOK := 0
		for i, r := range results {
			name := fmt.Sprintf("race%d", i)
			if r.ExitCode != 0 {
				if i < free || !strings.Contains(r.Combined(), "Address already in use") {
					t.Errorf("create %s: exit %d\n%s", name, r.ExitCode, r.Combined())
				}
				continue
			}
			addr := ok(alice, "inspect "+name, "inspect", "-f", `{{(index .NetworkSettings.Networks "race").IPAddress}}`, name)
			if other, dup := seen[addr]; dup {
				t.Errorf("%s and %s both have %s", name, other, addr)
			}
			seen[addr] = name
			if i >= free {
				fixedOK++
			}
			ok(alice, "rm "+name, "rm", "-f", name)
		}
		if fixedOK != 1 {
			t.Errorf("%d creates got the fixed address 10.30.0.77, want 1", fixedOK)
		}
		ok(alice, "network rm race", "network", "rm", "race")
	})

	eventually(t, "db's httpd", func() bool {
		return alice("exec", "db", "wget", "-q", "-O", "-", "http://127.0.0.1/").ExitCode == 0
	})

	t.Run("traffic on the overlay", func(t *testing.T) {
		has(alice, "wget by address", "db-on-the-overlay", "exec", "app", "wget", "-q", "-O", "-", "http://10.10.0.10/")
		ok(alice, "ping", "exec", "app", "ping", "-c", "1", "-W", "5", "10.10.0.10")
		ok(alice, "ping back", "exec", "db", "ping", "-c", "1", "-W", "5", "10.10.0.2")
		// The server sees the overlay address as the source.
		has(alice, "source address", "10.10.0.10", "exec", "db", "sh", "-c", "ip route get 10.10.0.2")
		// A: the address on the overlay both share; AAAA stays the VPC's.
		has(alice, "A on the shared overlay", "10.10.0.10", "exec", "app", "nslookup", "-type=a", "db")
		has(alice, "AAAA", "fd", "exec", "app", "nslookup", "-type=aaaa", "db")
		has(alice, "wget by name, IPv4", "db-on-the-overlay", "exec", "app", "wget", "-q", "-O", "-", "http://db/")
		// The same server over IPv4: the pod's gateway, second in resolv.conf.
		has(alice, "resolv.conf", "nameserver 10.", "exec", "app", "cat", "/etc/resolv.conf")
		has(alice, "A over IPv4 DNS", "10.10.0.10", "exec", "app", "sh", "-c", gw4DNS+" -type=a db")
		has(alice, "the control for bob's TCP below", "app-of-alice", "exec", "db", "sh", "-c", "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 10.10.0.2 80")
	})

	t.Run("kra vpc and overlays", func(t *testing.T) {
		vpc := c.kra(t, "alice", "vpc", "ls")
		if !regexp.MustCompile(`(?m)^VPC fd[0-9a-f:]+::/48$`).MatchString(vpc) ||
			!regexp.MustCompile(`(?m)^default\s+fd[0-9a-f:]+::/64\s+10\.\d+\.\d+\.0/24\s+3$`).MatchString(vpc) {
			t.Errorf("kra vpc ls:\n%s", vpc)
		}
		ls := c.kra(t, "alice", "overlays", "ls")
		if !regexp.MustCompile(`(?m)^default/back\s+ipip\s+10\.10\.0\.0/24\s+2$`).MatchString(ls) ||
			!regexp.MustCompile(`(?m)^default/front\s+ipip\s+10\.20\.0\.0/24\s+0$`).MatchString(ls) ||
			!regexp.MustCompile(`(?m)^default/default\s+ipip\s+10\.\d+\.\d+\.0/24\s+3$`).MatchString(ls) {
			t.Errorf("kra overlays ls:\n%s", ls)
		}
		for _, name := range []string{"back", "default/back"} {
			show := c.kra(t, "alice", "overlays", "show", name)
			if !regexp.MustCompile(`(?m)^app\s+10\.10\.0\.2$`).MatchString(show) || !regexp.MustCompile(`(?m)^db\s+10\.10\.0\.10$`).MatchString(show) ||
				!strings.Contains(show, "Subnet:     10.10.0.0/24") {
				t.Errorf("kra overlays show %s:\n%s", name, show)
			}
		}
		if out, err := c.kraRun(t, "bob", "overlays", "show", "back"); err == nil || !strings.Contains(out, "not found") {
			t.Errorf("bob sees alice's overlay: %v\n%s", err, out)
		}
	})

	t.Run("connect and disconnect a running pod", func(t *testing.T) {
		mustOK(t, alice("network", "connect", "--ip", "10.10.0.20", "back", "late"), "connect")
		eventually(t, "late's overlay address", func() bool {
			return strings.Contains(alice("exec", "late", "ip", "-o", "addr", "show", "eth0").Stdout, "10.10.0.20/24")
		})
		has(alice, "late reaches db", "db-on-the-overlay", "exec", "late", "wget", "-q", "-O", "-", "http://10.10.0.10/")
		ok(alice, "db reaches late", "exec", "db", "ping", "-c", "1", "-W", "5", "10.10.0.20")
		// A second overlay: one more address on the same interface.
		mustOK(t, alice("network", "connect", "front", "app"), "connect app to front")
		eventually(t, "app's second overlay", func() bool {
			return strings.Contains(alice("exec", "app", "ip", "-o", "addr", "show", "eth0").Stdout, "10.20.0.2/24")
		})
		has(alice, "app on both", "10.10.0.2/24", "exec", "app", "ip", "-o", "addr", "show", "eth0")
		mustOK(t, alice("network", "connect", "front", "late"), "connect late to front")
		eventually(t, "late on front", func() bool {
			return strings.Contains(alice("exec", "late", "ip", "-o", "addr", "show", "eth0").Stdout, "10.20.0.3/24")
		})
		ok(alice, "ping over front", "exec", "late", "ping", "-c", "1", "-W", "5", "10.20.0.2")
		has(alice, "A on front for a pod of both", "10.20.0.2", "exec", "late", "nslookup", "-type=a", "app")

		mustOK(t, alice("network", "disconnect", "back", "late"), "disconnect")
		eventually(t, "late's back address gone", func() bool {
			return !strings.Contains(alice("exec", "late", "ip", "-o", "addr", "show", "eth0").Stdout, "10.10.0.20")
		})
		if r := alice("exec", "db", "ping", "-c", "1", "-W", "2", "10.10.0.20"); r.ExitCode == 0 {
			t.Errorf("10.10.0.20 answers after disconnect")
		}
		// The old address as a forged source is dropped: put it back by
		// hand in late's namespace (as a pod with CAP_NET_ADMIN could).
		id := mustOK(t, alice("inspect", "-f", "{{.Id}}", "late"), "late id")
		netns := filepath.Join(srv.DataDir, "net", "ns", id)
		if out, err := exec.Command("nsenter", "--net="+netns, "ip", "addr", "add", "10.10.0.20/32", "dev", "eth0").CombinedOutput(); err != nil {
			t.Fatalf("forge: %v %s", err, out)
		}
		if r := alice("exec", "late", "ping", "-c", "1", "-W", "2", "-I", "10.10.0.20", "10.10.0.10"); r.ExitCode == 0 {
			t.Errorf("a forged overlay source got through:\n%s", r.Combined())
		}
		fails(alice, "rm of a network in use", "has active endpoints", "network", "rm", "front")
	})

	t.Run("another tenant with the same subnet", func(t *testing.T) {
		// bob's overlay overlaps alice's: tenants never share routes.
		mustOK(t, bob("network", "create", "--driver", "ipip", "--subnet", "10.10.0.0/24", "back"), "bob network create")
		mustOK(t, bob(append([]string{"run", "-d", "--name", "eve", "--network", "back", "--ip", "10.10.0.10", "busybox"}, httpd("eve-of-bob")...)...), "run eve")
		mustOK(t, bob("run", "-d", "--name", "mallory", "--network", "back", "--ip", "10.10.0.3", "busybox", "sleep", "3600"), "run mallory")
		eventually(t, "eve's httpd", func() bool {
			return bob("exec", "mallory", "wget", "-q", "-O", "-", "http://10.10.0.10/").ExitCode == 0
		})
		has(bob, "bob's 10.10.0.10 is eve", "eve-of-bob", "exec", "mallory", "wget", "-q", "-O", "-", "http://10.10.0.10/")
		lacks(bob, "never alice's db", "db-on-the-overlay", "exec", "mallory", "wget", "-q", "-O", "-", "http://10.10.0.10/")
		for _, ip := range []string{"10.10.0.2", "10.20.0.2", "10.20.0.3"} {
			if r := bob("exec", "mallory", "ping", "-c", "1", "-W", "2", ip); r.ExitCode == 0 {
				t.Errorf("bob pings alice's %s", ip)
			}
			if r := bob("exec", "mallory", "sh", "-c", "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 "+ip+" 80 | grep -q app-of-alice"); r.ExitCode == 0 {
				t.Errorf("bob reaches alice's app over TCP at %s", ip)
			}
		}
		// UDP: alice's app counts datagrams to port 9000.
		id := mustOK(t, alice("inspect", "-f", "{{.Id}}", "app"), "app id")
		netns := filepath.Join(srv.DataDir, "net", "ns", id)
		cmd := exec.Command("nsenter", "--net="+netns, "nft", "-f", "-")
		cmd.Stdin = strings.NewReader("table inet e2eprobe {\n counter udp9000 {}\n chain in { type filter hook input priority 0;\n udp dport 9000 counter name udp9000\n }\n}\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nft in app's namespace: %v %s", err, out)
		}
		counter := func() string {
			out, _ := exec.Command("nsenter", "--net="+netns, "nft", "list", "counter", "inet", "e2eprobe", "udp9000").CombinedOutput()
			return string(out)
		}
		bob("exec", "mallory", "nslookup", "probe", "10.10.0.2:9000")
		bob("exec", "mallory", "nslookup", "probe", "10.20.0.2:9000")
		if c := counter(); !strings.Contains(c, "packets 0 ") {
			t.Errorf("bob's UDP reached alice's app:\n%s", c)
		}
		alice("exec", "db", "nslookup", "probe", "10.10.0.2:9000")
		if c := counter(); strings.Contains(c, "packets 0 ") {
			t.Errorf("control: alice's own UDP did not reach app:\n%s", c)
		}
		// DNS: alice's names are not bob's, over IPv6 or IPv4 (where bob's
		// addresses are alice's too).
		if r := bob("exec", "mallory", "nslookup", "db"); r.ExitCode == 0 {
			t.Errorf("bob resolves alice's db:\n%s", r.Stdout)
		}
		if r := bob("exec", "mallory", "sh", "-c", gw4DNS+" db"); r.ExitCode == 0 {
			t.Errorf("bob resolves alice's db over IPv4:\n%s", r.Stdout)
		}
		has(bob, "bob's own name over IPv4", "10.10.0.10", "exec", "mallory", "sh", "-c", gw4DNS+" -type=a eve")
	})

	t.Run("concurrent creates get distinct addresses", func(t *testing.T) {
		const n = 4
		results := make(chan testenv.Result, n)
		for i := range n {
			go func() {
				results <- alice("run", "-d", "--name", fmt.Sprintf("par%d", i), "--network", "front", "busybox", "sleep", "3600")
			}()
		}
		for range n {
			if r := <-results; r.ExitCode != 0 {
				t.Fatalf("parallel run: %s", r.Combined())
			}
		}
		seen := map[string]string{}
		for i := range n {
			name := fmt.Sprintf("par%d", i)
			a := ok(alice, "inspect", "inspect", "-f", `{{(index .NetworkSettings.Networks "front").IPAddress}}`, name)
			if other, dup := seen[a]; dup || !strings.HasPrefix(a, "10.20.0.") {
				t.Errorf("%s has %q (also %s)", name, a, other)
			}
			seen[a] = name
		}
		mustOK(t, alice("rm", "-f", "par0", "par1", "par2", "par3"), "rm")
	})

	t.Run("a restarted server keeps the overlays", func(t *testing.T) {
		if err := srv.Stop(); err != nil {
			t.Fatal(err)
		}
		srv.Start()
		has(alice, "A after restart", "10.10.0.10", "exec", "app", "nslookup", "-type=a", "db")
		has(alice, "overlay traffic after restart", "db-on-the-overlay", "exec", "app", "wget", "-q", "-O", "-", "http://10.10.0.10/")
		ok(alice, "the second overlay after restart", "exec", "late", "ping", "-c", "1", "-W", "5", "10.20.0.2")
		// Still live: connect again after the restart.
		mustOK(t, alice("network", "connect", "--ip", "10.10.0.30", "back", "late"), "connect after restart")
		eventually(t, "late's new overlay address", func() bool {
			return alice("exec", "db", "ping", "-c", "1", "-W", "2", "10.10.0.30").ExitCode == 0
		})
		lacks(bob, "bob still gets his own 10.10.0.10", "db-on-the-overlay", "exec", "mallory", "wget", "-q", "-O", "-", "http://10.10.0.10/")
	})

	t.Run("remove", func(t *testing.T) {
		mustOK(t, alice("rm", "-f", "late", "app"), "rm")
		mustOK(t, alice("network", "rm", "front"), "network rm")
		if out := ok(alice, "ls", "network", "ls", "--format", "{{.Name}}"); strings.Contains(out, "front") {
			t.Errorf("front after rm:\n%s", out)
		}
	})
}

// kraRun runs kra as tenant with its access token.
func (c *netCloud) kraRun(t *testing.T, tenant string, args ...string) (string, error) {
	t.Helper()
	home := t.TempDir()
	ca := filepath.Join(home, "ca.pem")
	if err := os.WriteFile(ca, c.caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(testenv.Kra(t), args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "TZ=UTC", "HOME=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, "config"),
		"KR_HOST=https://" + c.addr, "KR_ACCESS_TOKEN=" + c.tokens[tenant], "KR_CA=" + ca}
	out, err := cmd.CombinedOutput()
	t.Logf("kra %s\n%s", strings.Join(args, " "), out)
	return string(out), err
}

func (c *netCloud) kra(t *testing.T, tenant string, args ...string) string {
	t.Helper()
	out, err := c.kraRun(t, tenant, args...)
	if err != nil {
		t.Fatalf("kra %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}
