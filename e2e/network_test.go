package e2e

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/macro-cloud/macro/auth"
	"github.com/macro-cloud/macro/internal/testenv"
	"github.com/macro-cloud/macro/internal/testimages"
)

// internet is a network namespace standing in for the world outside the
// VPC: a veth from the host, an HTTP server on its side. It lives under
// the server's data dir, so testenv's sweep removes it (the namespace is
// a bind mount there, the server's command line names the dir) even when
// the test is killed.
type internet struct {
	netns string
	host  netip.Addr // the host's end
	addr  netip.Addr // the internet's end, where HTTP listens on :8080
	addr6 netip.Addr // the same over IPv6 (2001:db8::/32, documentation space)
}

func startInternet(t *testing.T, dir string) *internet {
	t.Helper()
	netns := filepath.Join(dir, "test-internet")
	if err := os.WriteFile(netns, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("unshare", "--net="+netns, "true").CombinedOutput(); err != nil {
		t.Fatalf("unshare: %v %s", err, out)
	}
	t.Cleanup(func() {
		exec.Command("umount", "-l", netns).Run()
		os.Remove(netns)
	})
	// A /24 of 198.18.0.0/15 (benchmarking space, never routed) and a
	// link name of its own per test process.
	h := sha256.Sum256([]byte(dir))
	third := binary.BigEndian.Uint16(h[:2]) % 512
	base := netip.AddrFrom4([4]byte{198, 18 + byte(third/256), byte(third % 256), 0})
	in := &internet{netns: netns, host: base.Next(), addr: base.Next().Next(),
		addr6: netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(third >> 8), byte(third), 15: 2})}
	host6 := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(third >> 8), byte(third), 15: 1})
	link := "mi" + hex.EncodeToString(h[:4])
	t.Cleanup(func() { exec.Command("ip", "link", "del", link).Run() })
	for _, args := range [][]string{
		{"ip", "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", netns},
		{"ip", "addr", "add", in.host.String() + "/24", "dev", link},
		{"ip", "link", "set", link, "up"},
		{"nsenter", "--net=" + netns, "ip", "addr", "add", in.addr.String() + "/24", "dev", "eth0"},
		{"nsenter", "--net=" + netns, "ip", "link", "set", "eth0", "up"},
		{"nsenter", "--net=" + netns, "ip", "link", "set", "lo", "up"},
		{"nsenter", "--net=" + netns, "ip", "route", "add", "default", "via", in.host.String()},
		{"ip", "addr", "add", host6.String() + "/64", "dev", link, "nodad"},
		{"nsenter", "--net=" + netns, "ip", "addr", "add", in.addr6.String() + "/64", "dev", "eth0", "nodad"},
		{"nsenter", "--net=" + netns, "ip", "-6", "route", "add", "default", "via", host6.String()},
	} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v %s", args, err, out)
		}
	}
	// The host forwards the internet's replies back in (IPv4 forwarding
	// is per input device; the node's router enables it for the host's
	// default-route devices, and this link is the test's stand-in).
	if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+link+"/forwarding", []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	www := filepath.Join(dir, "test-internet-www")
	os.MkdirAll(www, 0o755)
	os.WriteFile(filepath.Join(www, "index.html"), []byte("hello from outside\n"), 0o644)
	httpd := exec.Command("nsenter", "--net="+netns, "busybox", "httpd", "-f", "-p", "8080", "-h", www)
	if err := httpd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { httpd.Process.Kill(); httpd.Wait() })
	// Ready when the host reaches it (the host routes to it directly).
	eventually(t, "the internet's httpd answers", func() bool {
		resp, err := (&http.Client{Timeout: time.Second}).Get("http://" + in.addr.String() + ":8080/")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	return in
}

// fakeUpstream is the resolver the node forwards to: outside.example is
// the internet namespace, everything else NXDOMAIN.
func fakeUpstream(t *testing.T, outside *atomic.Pointer[netip.Addr]) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		switch {
		case q.Name == "outside.example." && q.Qtype == mdns.TypeA && outside.Load() != nil:
			m.Answer = append(m.Answer, &mdns.A{Hdr: mdns.RR_Header{Name: q.Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 60}, A: outside.Load().AsSlice()})
		case q.Name == "outside.example.":
		default:
			m.Rcode = mdns.RcodeNameError
		}
		w.WriteMsg(m)
	})
	srv := &mdns.Server{PacketConn: pc, Handler: h}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String()
}

// netCloud is a macro server with two tenants, alice and bob, each with
// the docker CLI over mutual TLS.
type netCloud struct {
	*tenantCloud
	alice, bob string            // cert dirs
	tokens     map[string]string // tenant -> access token
}

func (c *netCloud) as(certs string) func(args ...string) testenv.Result {
	return func(args ...string) testenv.Result {
		c.t.Helper()
		return c.docker(certs, args...)
	}
}

func mustOK(t *testing.T, r testenv.Result, what string) string {
	t.Helper()
	if r.ExitCode != 0 {
		t.Fatalf("%s: exit %d\n%s", what, r.ExitCode, r.Combined())
	}
	return strings.TrimSpace(r.Stdout)
}

// startNetCloud starts a server with the VPC, a stand-in internet and
// tenants alice and bob, each with busybox loaded.
func startNetCloud(t *testing.T) (c *netCloud, srv *testenv.Server, inet *internet) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "ip", "nft", "nsenter", "unshare", "busybox")
	macro := testenv.Macro(t)
	port := testenv.FreePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	// The upstream resolver answers for the internet, which lives in the
	// server's data dir: it learns the address once that exists.
	var outside atomic.Pointer[netip.Addr]
	up := fakeUpstream(t, &outside)
	srv = testenv.StartServer(t, testenv.WithArgs("--api-addr", addr, "--dns-upstream", up))
	inet = startInternet(t, srv.DataDir)
	outside.Store(&inet.addr)

	caPEM, err := os.ReadFile(filepath.Join(srv.DataDir, "ca", auth.CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	tc := &tenantCloud{t: t, macro: macro, srv: srv, addr: addr, caPEM: caPEM,
		http: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}}
	c = &netCloud{tenantCloud: tc, tokens: map[string]string{}}
	for _, name := range []string{"alice", "bob"} {
		tc.mustAdmin("tenant", "create", name)
		token := strings.TrimSpace(tc.mustAdmin("token", "create", "--tenant", name))
		dir, status, msg := tc.certs(token)
		if dir == "" {
			t.Fatalf("certs of %s: %d %s", name, status, msg)
		}
		c.tokens[name] = token
		if name == "alice" {
			c.alice = dir
		} else {
			c.bob = dir
		}
	}
	alice, bob := c.as(c.alice), c.as(c.bob)
	busybox := testimages.Busybox(t)
	mustOK(t, alice("load", "-i", busybox), "alice load")
	mustOK(t, bob("load", "-i", busybox), "bob load")

	return c, srv, inet
}

// TestNetwork drives the single-node VPC with the docker CLI and real
// traffic from inside pods (busybox ping, nc, wget, nslookup): names within
// a namespace and across a tenant's namespaces, IPv4 and IPv6, isolation
// between tenants and from the host, spoofing, egress and DNS forwarding
// to a stand-in internet, --network none, addresses stable across
// restarts, adoption by a restarted server, cleanup on removal.
func TestNetwork(t *testing.T) {
	c, srv, inet := startNetCloud(t)
	alice, bob := c.as(c.alice), c.as(c.bob)

	// alice/default: web (HTTP on 80), client.
	// alice/other: far. bob/default: eve.
	mustOK(t, alice("run", "-d", "--name", "web", "busybox", "sh", "-c",
		"mkdir -p /www && echo hello from web > /www/index.html && exec httpd -f -p 80 -h /www"), "run web")
	mustOK(t, alice("run", "-d", "--name", "client", "busybox", "sleep", "3600"), "run client")
	mustOK(t, alice("run", "-d", "--name", "far", "-l", "com.docker.compose.project=other", "busybox", "sleep", "3600"), "run far")
	mustOK(t, bob("run", "-d", "--name", "eve", "busybox", "sleep", "3600"), "run eve")

	type addrs struct{ v4, v6 string }
	inspectAddrs := func(as func(...string) testenv.Result, name string) addrs {
		out := mustOK(t, as("inspect", "-f", "{{.NetworkSettings.IPAddress}} {{.NetworkSettings.GlobalIPv6Address}} {{json .NetworkSettings.Networks}}", name), "inspect "+name)
		f := strings.Fields(out)
		if len(f) < 3 {
			t.Fatalf("inspect %s: %q", name, out)
		}
		return addrs{f[0], f[1]}
	}
	web, client, far, eve := inspectAddrs(alice, "web"), inspectAddrs(alice, "client"), inspectAddrs(alice, "far"), inspectAddrs(bob, "eve")
	t.Logf("web %v client %v far %v eve %v", web, client, far, eve)
	for _, a := range []addrs{web, client, far, eve} {
		if !strings.HasPrefix(a.v6, "fd") || !strings.HasPrefix(a.v4, "10.") {
			t.Fatalf("addresses %v: want a ULA and a 10.x address", a)
		}
	}
	// The addresses inspect shows are the pod's own.
	if out := mustOK(t, alice("exec", "web", "ip", "-o", "addr", "show", "eth0"), "ip addr"); !strings.Contains(out, web.v4+"/24") || !strings.Contains(out, web.v6+"/64") {
		t.Fatalf("web's eth0 %q does not have %v", out, web)
	}
	// Wait until web's servers listen (exec into it: no network needed).
	eventually(t, "web's httpd", func() bool {
		return alice("exec", "web", "wget", "-q", "-O", "-", "http://127.0.0.1/").ExitCode == 0
	})

	ok := func(as func(...string) testenv.Result, what string, args ...string) {
		t.Helper()
		if r := as(args...); r.ExitCode != 0 {
			t.Errorf("%s: %v: exit %d\n%s", what, args, r.ExitCode, r.Combined())
		}
	}
	fails := func(as func(...string) testenv.Result, what string, args ...string) {
		t.Helper()
		if r := as(args...); r.ExitCode == 0 {
			t.Errorf("%s: %v succeeded\n%s", what, args, r.Combined())
		}
	}
	has := func(as func(...string) testenv.Result, what, want string, args ...string) {
		t.Helper()
		if r := as(args...); r.ExitCode != 0 || !strings.Contains(r.Stdout, want) {
			t.Errorf("%s: %v: exit %d, want %q in\n%s", what, args, r.ExitCode, want, r.Combined())
		}
	}

	t.Run("by name within the namespace", func(t *testing.T) {
		has(alice, "nslookup", web.v6, "exec", "client", "nslookup", "web")
		has(alice, "nslookup", web.v4, "exec", "client", "nslookup", "web")
		has(alice, "wget by name", "hello from web", "exec", "client", "wget", "-q", "-O", "-", "http://web/")
		has(alice, "wget v4", "hello from web", "exec", "client", "wget", "-q", "-O", "-", "http://"+web.v4+"/")
		has(alice, "wget v6", "hello from web", "exec", "client", "wget", "-q", "-O", "-", "http://["+web.v6+"]/")
		ok(alice, "ping v6 by name", "exec", "client", "ping", "-6", "-c", "1", "-W", "5", "web")
		ok(alice, "ping v4 by name", "exec", "client", "ping", "-4", "-c", "1", "-W", "5", "web")
		ok(alice, "nc by name", "exec", "client", "sh", "-c", "echo | nc -w 5 web 80")
	})

	t.Run("name.namespace across the tenant's namespaces", func(t *testing.T) {
		fails(alice, "a bare name of another namespace", "exec", "far", "nslookup", "web")
		has(alice, "nslookup", web.v6, "exec", "far", "nslookup", "web.default")
		has(alice, "wget", "hello from web", "exec", "far", "wget", "-q", "-O", "-", "http://web.default/")
		has(alice, "and back", far.v4, "exec", "client", "nslookup", "far.other")
	})

	t.Run("another tenant is unreachable", func(t *testing.T) {
		fails(bob, "name", "exec", "eve", "nslookup", "web")
		fails(bob, "name.namespace (bob's own default)", "exec", "eve", "nslookup", "web.default")
		fails(bob, "alice's other namespace", "exec", "eve", "nslookup", "far.other")
		for _, ip := range []string{web.v4, web.v6} {
			fails(bob, "ping "+ip, "exec", "eve", "ping", "-c", "1", "-W", "2", ip)
			host := ip
			if strings.Contains(ip, ":") {
				host = "[" + ip + "]"
			}
			fails(bob, "tcp "+ip, "exec", "eve", "wget", "-q", "-T", "3", "-O", "-", "http://"+host+"/")
		}
		fails(alice, "nor does alice reach eve", "exec", "client", "ping", "-c", "1", "-W", "2", eve.v6)
		fails(alice, "nor does alice reach eve v4", "exec", "client", "ping", "-c", "1", "-W", "2", eve.v4)

		// UDP: busybox has no UDP listener, so web's namespace counts
		// datagrams to port 9000 (nslookup IP:9000 sends them). eve's
		// first, then alice's client's as the control.
		id := mustOK(t, alice("inspect", "-f", "{{.Id}}", "web"), "web id")
		webNetns := filepath.Join(srv.DataDir, "net", "ns", id)
		counter := func() string {
			out, err := exec.Command("nsenter", "--net="+webNetns, "nft", "list", "counter", "inet", "e2eprobe", "udp9000").CombinedOutput()
			if err != nil {
				t.Fatalf("nft list counter: %v %s", err, out)
			}
			return string(out)
		}
		cmd := exec.Command("nsenter", "--net="+webNetns, "nft", "-f", "-")
		cmd.Stdin = strings.NewReader("table inet e2eprobe {\n counter udp9000 {}\n chain in { type filter hook input priority 0;\n udp dport 9000 counter name udp9000\n }\n}\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nft in web's namespace: %v %s", err, out)
		}
		for _, ip := range []string{web.v4, web.v6} {
			server := ip + ":9000"
			if strings.Contains(ip, ":") {
				server = "[" + ip + "]:9000"
			}
			bob("exec", "eve", "nslookup", "probe", server)
		}
		if c := counter(); !strings.Contains(c, "packets 0 ") {
			t.Errorf("eve's UDP reached alice's web:\n%s", c)
		}
		alice("exec", "client", "nslookup", "probe", web.v4+":9000")
		if c := counter(); strings.Contains(c, "packets 0 ") {
			t.Errorf("control: alice's client's UDP did not reach web:\n%s", c)
		}
	})

	t.Run("the host is unreachable", func(t *testing.T) {
		l, err := net.Listen("tcp", ":0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Write([]byte("host secret\n"))
				c.Close()
			}
		}()
		lport := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
		var hostAddrs []string
		out, _ := exec.Command("ip", "-o", "addr", "show").Output()
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) < 4 || (f[2] != "inet" && f[2] != "inet6") {
				continue
			}
			p, err := netip.ParsePrefix(f[3])
			if err != nil || p.Addr().IsLoopback() || p.Addr().IsLinkLocalUnicast() {
				continue
			}
			hostAddrs = append(hostAddrs, p.Addr().String())
		}
		if len(hostAddrs) == 0 {
			t.Fatal("no host address found")
		}
		for _, a := range hostAddrs {
			hp := net.JoinHostPort(a, lport)
			// Control: the listener answers on that address from the host.
			if c, err := net.DialTimeout("tcp", hp, 2*time.Second); err != nil {
				t.Errorf("control: the host cannot reach its own %s: %v", hp, err)
				continue
			} else {
				c.Close()
			}
			fails(alice, "tcp to the host at "+hp, "exec", "client", "sh", "-c", "nc -w 3 "+strings.ReplaceAll(hp, "]:", "] ")+" | grep -q secret")
		}
		// The node's own ports: the Docker API over TCP on loopback is not
		// routable from a pod; the API port's address is the host's.
		fails(alice, "the API port", "exec", "client", "wget", "-q", "-T", "3", "-O", "-", "http://"+c.addr+"/_ping")
	})

	t.Run("spoofed source dropped", func(t *testing.T) {
		// eve's namespace as a pod with CAP_NET_ADMIN would make it: it
		// takes alice's client's addresses as its own.
		id := mustOK(t, bob("inspect", "-f", "{{.Id}}", "eve"), "eve id")
		netns := filepath.Join(srv.DataDir, "net", "ns", id)
		for _, a := range []string{client.v4 + "/32", client.v6 + "/128"} {
			if out, err := exec.Command("nsenter", "--net="+netns, "ip", "addr", "add", a, "dev", "eth0", "nodad").CombinedOutput(); err != nil {
				t.Fatalf("%v %s", err, out)
			}
		}
		fails(bob, "ping from a spoofed v4", "exec", "eve", "ping", "-c", "1", "-W", "2", "-I", client.v4, web.v4)
		fails(bob, "ping from a spoofed v6", "exec", "eve", "ping", "-c", "1", "-W", "2", "-I", client.v6, web.v6)
		fails(bob, "tcp from a spoofed v4", "exec", "eve", "sh", "-c", "nc -w 3 -s "+client.v4+" "+web.v4+" 80 </dev/null")
		for _, a := range []string{client.v4 + "/32", client.v6 + "/128"} {
			exec.Command("nsenter", "--net="+netns, "ip", "addr", "del", a, "dev", "eth0").Run()
		}
	})

	t.Run("egress and DNS forwarding to the internet", func(t *testing.T) {
		has(alice, "wget by address", "hello from outside", "exec", "client", "wget", "-q", "-O", "-", "http://"+inet.addr.String()+":8080/")
		has(alice, "forwarded name", inet.addr.String(), "exec", "client", "nslookup", "outside.example")
		has(alice, "wget by forwarded name", "hello from outside", "exec", "client", "wget", "-q", "-O", "-", "http://outside.example:8080/")
		has(bob, "bob too", "hello from outside", "exec", "eve", "wget", "-q", "-O", "-", "http://"+inet.addr.String()+":8080/")
		fails(alice, "unknown outside name", "exec", "client", "nslookup", "nowhere.example")
	})

	t.Run("--network none has loopback only", func(t *testing.T) {
		out := mustOK(t, alice("run", "--rm", "--network", "none", "busybox", "ip", "-o", "link"), "run --network none")
		if strings.Contains(out, "eth0") || !strings.Contains(out, "lo") {
			t.Errorf("links %q", out)
		}
		mustOK(t, alice("create", "--name", "isolated", "--network", "none", "busybox"), "create none")
		var nets map[string]any
		json.Unmarshal([]byte(mustOK(t, alice("inspect", "-f", "{{json .NetworkSettings.Networks}}", "isolated"), "inspect")), &nets)
		if _, ok := nets["none"]; !ok || len(nets) != 1 {
			t.Errorf("Networks %v", nets)
		}
		alice("rm", "isolated")
	})

	t.Run("addresses stay across restarts", func(t *testing.T) {
		mustOK(t, alice("restart", "-t", "0", "client"), "restart client")
		if got := inspectAddrs(alice, "client"); got != client {
			t.Errorf("after restart %v, was %v", got, client)
		}
		ok(alice, "and it still talks", "exec", "client", "ping", "-c", "1", "-W", "5", "web")
	})

	t.Run("a restarted server adopts the network", func(t *testing.T) {
		id := mustOK(t, alice("inspect", "-f", "{{.Id}}", "client"), "client id")
		if err := srv.Stop(); err != nil {
			t.Fatal(err)
		}
		// Pods keep talking while no server runs.
		netns := filepath.Join(srv.DataDir, "net", "ns", id)
		if out, err := exec.Command("nsenter", "--net="+netns, "busybox", "wget", "-q", "-O", "-", "http://["+web.v6+"]/").CombinedOutput(); err != nil || !strings.Contains(string(out), "hello from web") {
			t.Errorf("client to web with no server running: %v %s", err, out)
		}
		srv.Start()
		// The first query after the restart: the adopted pod's resolv.conf
		// must never have pointed elsewhere meanwhile.
		has(alice, "nslookup right after restart", web.v6, "exec", "client", "nslookup", "web")
		has(alice, "name after restart", "hello from web", "exec", "client", "wget", "-q", "-O", "-", "http://web/")
		if got := inspectAddrs(alice, "web"); got != web {
			t.Errorf("after server restart %v, was %v", got, web)
		}
		fails(bob, "isolation after restart", "exec", "eve", "ping", "-c", "1", "-W", "2", web.v6)
	})

	t.Run("removal removes the network", func(t *testing.T) {
		id := mustOK(t, alice("inspect", "-f", "{{.Id}}", "far"), "far id")
		mustOK(t, alice("rm", "-f", "far"), "rm far")
		eventually(t, "far's namespace is gone", func() bool {
			_, err := os.Stat(filepath.Join(srv.DataDir, "net", "ns", id))
			return os.IsNotExist(err)
		})
		fails(alice, "its name is gone", "exec", "client", "nslookup", "far.other")
	})

	t.Run("rename follows into DNS", func(t *testing.T) {
		mustOK(t, alice("rename", "client", "client2"), "rename")
		eventually(t, "the new name resolves", func() bool {
			return strings.Contains(alice("exec", "web", "nslookup", "client2").Stdout, client.v6)
		})
		fails(alice, "the old name is gone", "exec", "web", "nslookup", "client")
	})

	t.Run("a stopped container leaves DNS and comes back with its addresses", func(t *testing.T) {
		mustOK(t, alice("stop", "-t", "0", "client2"), "stop")
		fails(alice, "stopped: no name", "exec", "web", "nslookup", "client2")
		if out := mustOK(t, alice("inspect", "-f", "{{.NetworkSettings.IPAddress}}", "client2"), "inspect"); out != "" {
			t.Errorf("stopped container shows address %q", out)
		}
		mustOK(t, alice("start", "client2"), "start")
		has(alice, "started: its name again", client.v6, "exec", "web", "nslookup", "client2")
		if got := inspectAddrs(alice, "client2"); got != client {
			t.Errorf("after stop/start %v, was %v", got, client)
		}
	})
}
