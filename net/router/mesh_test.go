package router

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/macro-cloud/macro/net/mesh"
	"github.com/macro-cloud/macro/types"
)

// meshNode is a router with its mesh started, on this machine.
type meshNode struct {
	name string
	r    *Router
	rp   **Router // what the test's cleanup destroys
	key  mesh.Key
	port uint16
}

func startMeshNode(t *testing.T, name string) *meshNode {
	t.Helper()
	return startMeshNodeWith(t, name, Config{Cluster: "meshtest"})
}

func startMeshNodeWith(t *testing.T, name string, cfg Config) *meshNode {
	t.Helper()
	rp := openRouter(t, cfg)
	r := *rp
	key, err := mesh.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	port, err := r.StartMesh(context.Background(), key, 0)
	if err != nil {
		t.Fatal(err)
	}
	return &meshNode{name: name, r: r, rp: rp, key: key, port: port}
}

func (n *meshNode) node() types.MeshNode {
	return types.MeshNode{Name: n.name, Key: n.key.Public().String(), Endpoint: fmt.Sprintf("127.0.0.1:%d", n.port)}
}

// meshPod is a pod of the view, with the addresses its router gave it.
func meshPod(p types.Pod, node string, a Attachment) types.MeshPod {
	mp := types.MeshPod{ID: p.ID, Tenant: p.Tenant, Namespace: p.Namespace, Node: node, Names: []string{p.Name}, IPv6: a.IPv6.String(), IPv4: a.IPv4.String()}
	for _, e := range p.Spec.Networks {
		if mp.Overlays == nil {
			mp.Overlays = map[string]string{}
		}
		mp.Overlays[e.NetworkID] = e.IPv4Address
	}
	return mp
}

// onOverlay puts p on an overlay with a fixed address.
func onOverlay(p types.Pod, network, addr, subnet string) types.Pod {
	p.Spec.Networks = map[string]types.Endpoint{network: {NetworkID: network, IPv4Address: addr, Subnet: subnet}}
	return p
}

// TestMesh joins two routers of this machine by their WireGuard mesh (the
// host's loopback is the underlay) and sends real packets between their
// pods: a tenant's pods reach each other across the nodes by address and
// name (ICMP, TCP, UDP over IPv6); another tenant's never do, nor do
// spoofed sources, nor a node that routes another tenant's packets to it.
// IPv4 (default and overlay addresses, which overlap between tenants)
// crosses in the tenant's VXLAN carrier, under the same rules.
func TestMesh(t *testing.T) {
	requireRoot(t)
	n1, n2 := startMeshNode(t, "n1"), startMeshNode(t, "n2")
	pa1, pb1 := pod("a1", "alice", "shop", "web"), pod("b1", "eve", "shop", "evil")
	// alice's db and eve's db hold the same overlay address.
	pa2 := onOverlay(pod("a2", "alice", "shop", "db"), "back", "192.168.50.10", "192.168.50.0/24")
	pb2 := onOverlay(pod("b2", "eve", "shop", "db"), "eveback", "192.168.50.10", "192.168.50.0/24")
	ovl := netip.MustParseAddr("192.168.50.10")
	a1, b1 := attach(t, n1.r, pa1), attach(t, n1.r, pb1)
	// Each node picks IPv4 addresses on its own here: a pod that comes
	// and goes first gives alice's db on n2 an address of its own.
	tmp := []types.Pod{pod("d2", "alice", "shop", "tmp"), pod("e2", "eve", "shop", "tmp")}
	for _, p := range tmp {
		attach(t, n2.r, p)
	}
	a2, b2 := attach(t, n2.r, pa2), attach(t, n2.r, pb2)
	for _, p := range tmp {
		if err := n2.r.Detach(context.Background(), p.ID); err != nil {
			t.Fatal(err)
		}
	}
	view := types.MeshView{
		Nodes: []types.MeshNode{n1.node(), n2.node()},
		Pods:  []types.MeshPod{meshPod(pa1, "n1", a1), meshPod(pb1, "n1", b1), meshPod(pa2, "n2", a2), meshPod(pb2, "n2", b2)},
	}
	loop := []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	for _, n := range []*meshNode{n1, n2} {
		if err := n.r.ApplyMesh(context.Background(), mesh.Compute("meshtest", n.name, view), loop); err != nil {
			t.Fatal(err)
		}
	}
	ping := func(from Attachment, to netip.Addr, src ...string) bool {
		args := []string{"busybox", "ping", "-c", "1", "-W", "1"}
		if len(src) > 0 {
			args = append(args, "-I", src[0])
		}
		_, ok := in(t, from.Netns, append(args, to.String())...)
		return ok
	}
	// The first packet waits for the handshake.
	deadline := time.Now().Add(10 * time.Second)
	for !ping(a1, a2.IPv6) {
		if time.Now().After(deadline) {
			t.Fatalf("alice's pods do not reach each other across the mesh")
		}
	}

	for _, tt := range []struct {
		name string
		from Attachment
		to   netip.Addr
		want bool
	}{
		{"same tenant n1 to n2", a1, a2.IPv6, true},
		{"same tenant n2 to n1", a2, a1.IPv6, true},
		{"other tenant's pod on the same remote node", a1, b2.IPv6, false},
		{"other tenant to alice", b1, a2.IPv6, false},
		{"eve's pods reach each other", b2, b1.IPv6, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := ping(tt.from, tt.to); got != tt.want {
				t.Fatalf("ping %s: %v, want %v", tt.to, got, tt.want)
			}
		})
	}

	t.Run("tcp and udp", func(t *testing.T) {
		for _, network := range []string{"tcp6", "udp6"} {
			if got := echoAcross(t, network, a2, a1); got != "hello "+network {
				t.Errorf("%s across the mesh: %q", network, got)
			}
			// eve's pod on n1 gets nothing from alice's server on n2.
			if got := echoAcross(t, network, a2, b1); got != "" {
				t.Errorf("%s: eve reached alice's server across the mesh: %q", network, got)
			}
		}
	})

	t.Run("names of remote pods", func(t *testing.T) {
		out, ok := in(t, a1.Netns, "busybox", "nslookup", "db", DNSAddr.String())
		if !ok || !strings.Contains(out, a2.IPv6.String()) {
			t.Errorf("alice's db on n2 does not resolve on n1:\n%s", out)
		}
		out, _ = in(t, b1.Netns, "busybox", "nslookup", "db", DNSAddr.String())
		if strings.Contains(out, a2.IPv6.String()) {
			t.Errorf("eve's pod resolves alice's db:\n%s", out)
		}
		if !strings.Contains(out, b2.IPv6.String()) {
			t.Errorf("eve's db on n2 does not resolve for eve on n1:\n%s", out)
		}
	})

	t.Run("ipv4 across nodes", func(t *testing.T) {
		if a2.IPv4 == b2.IPv4 || a1.IPv4 == a2.IPv4 || b1.IPv4 == b2.IPv4 {
			t.Fatalf("the test wants distinct default addresses: %s %s %s %s", a1.IPv4, a2.IPv4, b1.IPv4, b2.IPv4)
		}
		for _, tt := range []struct {
			name string
			from Attachment
			to   netip.Addr
			want bool
		}{
			{"same tenant n1 to n2", a1, a2.IPv4, true},
			{"same tenant n2 to n1", a2, a1.IPv4, true},
			{"to an overlay address on n2", a1, ovl, true},
			{"eve's pods reach each other", b2, b1.IPv4, true},
			{"eve's overlay address is her own", b1, ovl, true},
			{"other tenant's pod on the remote node", a1, b2.IPv4, false},
			{"other tenant to alice", b1, a2.IPv4, false},
			{"other tenant to alice on the same node", b1, a1.IPv4, false},
		} {
			if got := ping(tt.from, tt.to); got != tt.want {
				t.Errorf("%s: ping %s: %v, want %v", tt.name, tt.to, got, tt.want)
			}
		}
		for _, network := range []string{"tcp4", "udp4"} {
			if got := echoTo(t, network, a2.IPv4, a2, a1); got != "hello "+network {
				t.Errorf("%s across the carrier: %q", network, got)
			}
			if got := echoTo(t, network, a2.IPv4, a2, b1); got != "" {
				t.Errorf("%s: eve reached alice's server: %q", network, got)
			}
			// The overlapping overlay address: alice's server answers
			// alice, never eve, whose own db holds the address.
			if got := echoTo(t, network, ovl, a2, a1); got != "hello "+network {
				t.Errorf("%s to alice's overlay address: %q", network, got)
			}
			if got := echoTo(t, network, ovl, a2, b1); got != "" {
				t.Errorf("%s: eve reached alice's overlay address: %q", network, got)
			}
		}
		// A full-size segment crosses: the MSS is clamped to the carrier.
		if got := echoSized(t, a2.IPv4, a2, a1, 8000); got != 8000 {
			t.Errorf("tcp: %d of 8000 bytes came back", got)
		}
		out, ok := in(t, a1.Netns, "busybox", "nslookup", "db", DNSAddr.String())
		if !ok || !strings.Contains(out, a2.IPv4.String()) {
			t.Errorf("alice's db has no A record on n1:\n%s", out)
		}
		out, _ = in(t, b1.Netns, "busybox", "nslookup", "db", DNSAddr.String())
		if strings.Contains(out, a2.IPv4.String()) || !strings.Contains(out, b2.IPv4.String()) {
			t.Errorf("eve's lookup of db on n1:\n%s", out)
		}
	})

	t.Run("spoofed ipv4 source never leaves", func(t *testing.T) {
		b := a1.IPv4.As4()
		b[3] ^= 0x40
		spoof := netip.AddrFrom4(b).String() // in alice's /24, nobody's
		if out, ok := in(t, a1.Netns, "ip", "addr", "add", spoof+"/32", "dev", "eth0"); !ok {
			t.Fatal(out)
		}
		defer in(t, a1.Netns, "ip", "addr", "del", spoof+"/32", "dev", "eth0")
		dev := carrierDev(t, n1, "alice")
		before := devStat(t, n1, dev, 9)
		if ping(a1, a2.IPv4, spoof) || ping(a1, ovl, spoof) {
			t.Fatal("a ping from a spoofed source was answered")
		}
		if after := devStat(t, n1, dev, 9); after != before {
			t.Fatalf("spoofed packets left through the carrier (%s -> %s packets)", before, after)
		}
	})

	t.Run("a node cannot send into another tenant's carrier", func(t *testing.T) {
		// n2 turns bad: it forwards anything, and eve's table sends
		// alice's web's IPv4 address into alice's carrier. n1 refuses
		// the frame before unwrapping it: eve's address is no pod of
		// alice on n2.
		if out, ok := in(t, n2.r.ns, "nft", "insert", "rule", "inet", "macro", "forward", "accept"); !ok {
			t.Fatal(out)
		}
		defer n2.r.Refresh(context.Background())
		table := fmt.Sprint(tenantTable(n2.r.st.Tenants["eve"]))
		dev := carrierDev(t, n2, "alice")
		if out, ok := in(t, n2.r.ns, "ip", "route", "replace", a1.IPv4.String()+"/32", "dev", dev, "table", table); !ok {
			t.Fatal(out)
		}
		defer in(t, n2.r.ns, "ip", "route", "del", a1.IPv4.String()+"/32", "dev", dev, "table", table)
		refused := vxRefused(t, n1)
		if ping(b2, a1.IPv4) {
			t.Fatal("eve's pod on the bad node reached alice's pod on n1")
		}
		if vxRefused(t, n1) == refused {
			t.Fatal("the bad node's frame never reached n1's check: the test proves nothing")
		}
		if !ping(a2, a1.IPv4) {
			t.Fatal("alice lost her IPv4 traffic meanwhile")
		}
	})

	t.Run("the carrier reaches neither the router nor the uplink", func(t *testing.T) {
		// n2 sends alice's db's own packets (which n1's check lets in)
		// through alice's carrier to n1's router (its end of the
		// uplink; the pods' gateways are n2's own too) and past it, to
		// the host's end.
		dev := carrierDev(t, n2, "alice")
		table := fmt.Sprint(tenantTable(n2.r.st.Tenants["alice"]))
		mac := mesh.NodeMAC("n1", "alice").String()
		for _, a := range []netip.Addr{n1.r.st.Uplink.Addr(), n1.r.hostAddr()} {
			if out, ok := in(t, n2.r.ns, "ip", "neigh", "replace", a.String(), "lladdr", mac, "dev", dev, "nud", "permanent"); !ok {
				t.Fatal(out)
			}
			if out, ok := in(t, n2.r.ns, "ip", "route", "replace", a.String()+"/32", "dev", dev, "table", table); !ok {
				t.Fatal(out)
			}
			defer in(t, n2.r.ns, "ip", "route", "del", a.String()+"/32", "dev", dev, "table", table)
			defer in(t, n2.r.ns, "ip", "neigh", "del", a.String(), "dev", dev)
		}
		if out, ok := in(t, n2.r.ns, "nft", "insert", "rule", "inet", "macro", "forward", "accept"); !ok {
			t.Fatal(out)
		}
		defer n2.r.Refresh(context.Background())
		vx1 := carrierDev(t, n1, "alice")
		// A table of the test's counts what leaves n1's router by the
		// uplink coming from the carrier.
		probe := filepath.Join(t.TempDir(), "probe.nft")
		if err := os.WriteFile(probe, fmt.Appendf(nil, "table inet mesh_probe {\n\tchain post {\n\t\ttype filter hook postrouting priority 0;\n\t\tiifname %q oifname %q counter\n\t}\n}\n", vx1, uplinkName), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, ok := in(t, n1.r.ns, "nft", "-f", probe); !ok {
			t.Fatal(out)
		}
		defer in(t, n1.r.ns, "nft", "delete", "table", "inet", "mesh_probe")
		rx, echo := devStat(t, n1, vx1, 1), echoReplies(t, n1)
		// (An answer would not come back: n2's check refuses a source
		// that is no pod. n1's router counts what it answered.)
		if ping(a2, n1.r.st.Uplink.Addr()); echoReplies(t, n1) != echo {
			t.Error("n1's router answered alice's db on n2 through the carrier")
		}
		if ping(a2, n1.r.hostAddr()) {
			t.Error("alice's db on n2 reached n1's host through the carrier")
		}
		if devStat(t, n1, vx1, 1) == rx {
			t.Fatal("nothing came out of n1's carrier: the test proves nothing")
		}
		if out, _ := in(t, n1.r.ns, "nft", "list", "table", "inet", "mesh_probe"); !strings.Contains(out, "counter packets 0 ") {
			t.Errorf("packets from the carrier left n1's router by its uplink:\n%s", out)
		}
	})

	t.Run("spoofed source dropped before the mesh", func(t *testing.T) {
		// alice's web takes alice's other pod's address (one the mesh
		// would carry) and pings from it.
		b := a1.IPv6.As16()
		b[15] ^= 0x5a
		spoof := netip.AddrFrom16(b).String() // in alice's /64, nobody's
		if out, ok := in(t, a1.Netns, "ip", "addr", "add", spoof+"/128", "dev", "eth0", "nodad"); !ok {
			t.Fatal(out)
		}
		defer in(t, a1.Netns, "ip", "addr", "del", spoof+"/128", "dev", "eth0")
		before := meshPackets(t, n1)
		if ping(a1, b2.IPv6, spoof) || ping(a1, a2.IPv6, spoof) {
			t.Fatal("a ping from a spoofed source was answered")
		}
		if after := meshPackets(t, n1); after != before {
			t.Fatalf("spoofed packets left through the mesh device (%s -> %s packets)", before, after)
		}
	})

	t.Run("a node cannot send another tenant's packets to a pod", func(t *testing.T) {
		// n2 turns bad: its rules let everything through and eve's table
		// routes alice's web through the mesh. n1 marks what comes in by
		// its source (eve's pod) and forwards it only to eve's pods.
		if out, ok := in(t, n2.r.ns, "nft", "insert", "rule", "inet", "macro", "forward", "accept"); !ok {
			t.Fatal(out)
		}
		defer n2.r.Refresh(context.Background())
		table := tenantTable(n2.r.st.Tenants["eve"])
		if out, ok := in(t, n2.r.ns, "ip", "-6", "route", "replace", a1.IPv6.String()+"/128", "dev", meshName, "table", fmt.Sprint(table)); !ok {
			t.Fatal(out)
		}
		defer in(t, n2.r.ns, "ip", "-6", "route", "del", a1.IPv6.String()+"/128", "dev", meshName, "table", fmt.Sprint(table))
		rx := meshRx(t, n1)
		if ping(b2, a1.IPv6) {
			t.Fatal("eve's pod on the bad node reached alice's pod on n1")
		}
		if meshRx(t, n1) == rx {
			t.Fatal("the bad node's packet never reached n1: the test proves nothing")
		}
		if !ping(a2, a1.IPv6) {
			t.Fatal("alice lost her traffic meanwhile")
		}
	})

	t.Run("key rotation", func(t *testing.T) {
		k, err := mesh.NewPrivateKey()
		if err != nil {
			t.Fatal(err)
		}
		if err := n2.r.SetMeshKey(k); err != nil {
			t.Fatal(err)
		}
		n2.key = k
		view.Nodes = []types.MeshNode{n1.node(), n2.node()}
		if err := n1.r.ApplyMesh(context.Background(), mesh.Compute("meshtest", "n1", view), loop); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for !ping(a1, a2.IPv6) {
			if time.Now().After(deadline) {
				t.Fatal("no traffic after n2's new key")
			}
		}
	})

	t.Run("key rotation, make before break", func(t *testing.T) {
		// n2 announces its next key; n1 stands by for it. n2 switches
		// and greets its peers: n1 moves n2's addresses to the new key
		// on the handshake, before any view names it as n2's key.
		k, err := mesh.NewPrivateKey()
		if err != nil {
			t.Fatal(err)
		}
		announce := view
		nodes := []types.MeshNode{n1.node(), n2.node()}
		nodes[1].NextKey = k.Public().String()
		announce.Nodes = nodes
		if err := n1.r.ApplyMesh(context.Background(), mesh.Compute("meshtest", "n1", announce), loop); err != nil {
			t.Fatal(err)
		}
		if !ping(a1, a2.IPv6) || !ping(a1, a2.IPv4) {
			t.Fatal("no traffic while n1 stands by for n2's next key")
		}
		if err := n2.r.SetMeshKey(k); err != nil {
			t.Fatal(err)
		}
		n2.key = k
		start := time.Now()
		deadline := start.Add(10 * time.Second)
		for !ping(a2, a1.IPv6) {
			if time.Now().After(deadline) {
				t.Fatal("no traffic after n2's switch to the announced key")
			}
		}
		t.Logf("traffic again %v after the switch", time.Since(start).Round(10*time.Millisecond))
		n1.r.mu.Lock()
		_, moved := n1.r.mesh.peers[k.Public()]
		n1.r.mu.Unlock()
		if !moved {
			t.Fatal("n1 did not move n2's addresses to its new key")
		}
		// A view that still announces, then one with the new key:
		// traffic stays.
		if err := n1.r.ApplyMesh(context.Background(), mesh.Compute("meshtest", "n1", announce), loop); err != nil {
			t.Fatal(err)
		}
		if !ping(a1, a2.IPv4) {
			t.Fatal("a late view took n2's addresses back to its old key")
		}
		view.Nodes = []types.MeshNode{n1.node(), n2.node()}
		if err := n1.r.ApplyMesh(context.Background(), mesh.Compute("meshtest", "n1", view), loop); err != nil {
			t.Fatal(err)
		}
		if !ping(a1, a2.IPv6) || !ping(a2, a1.IPv4) {
			t.Fatal("no traffic once the view has n2's new key")
		}
	})

	t.Run("a pod gone from the view loses its route and name", func(t *testing.T) {
		v := view
		v.Pods = []types.MeshPod{meshPod(pa1, "n1", a1), meshPod(pb1, "n1", b1), meshPod(pb2, "n2", b2)}
		if err := n1.r.ApplyMesh(context.Background(), mesh.Compute("meshtest", "n1", v), loop); err != nil {
			t.Fatal(err)
		}
		if ping(a1, a2.IPv6) || ping(a1, a2.IPv4) || ping(a1, ovl) {
			t.Fatal("a pod gone from the view is still reached")
		}
		if out, ok := in(t, a1.Netns, "busybox", "nslookup", "db", DNSAddr.String()); ok {
			t.Fatalf("a pod gone from the view still resolves:\n%s", out)
		}
	})
}

// meshPackets counts the packets the mesh device of n has sent.
func meshPackets(t *testing.T, n *meshNode) string { return devStat(t, n, meshName, 9) }

// meshRx counts the packets the mesh device of n has received.
func meshRx(t *testing.T, n *meshNode) string { return devStat(t, n, meshName, 1) }

// devStat is a field of dev's line in n's /proc/net/dev.
func devStat(t *testing.T, n *meshNode, dev string, field int) string {
	t.Helper()
	out, _ := in(t, n.r.ns, "cat", "/proc/net/dev")
	for _, line := range strings.Split(out, "\n") {
		if name, rest, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && name == dev {
			if f := strings.Fields(rest); len(f) > field {
				return f[field]
			}
		}
	}
	t.Fatalf("no %s in /proc/net/dev:\n%s", dev, out)
	return ""
}

// echoReplies is the count of ICMP echo replies n's router has sent.
func echoReplies(t *testing.T, n *meshNode) string {
	t.Helper()
	out, _ := in(t, n.r.ns, "cat", "/proc/net/snmp")
	var names []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Icmp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, name := range names {
			if name == "OutEchoReps" && i < len(f) {
				return f[i]
			}
		}
	}
	t.Fatalf("no Icmp OutEchoReps in /proc/net/snmp:\n%s", out)
	return ""
}

// carrierDev is the tenant's IPv4 carrier device on n.
func carrierDev(t *testing.T, n *meshNode, tenant string) string {
	t.Helper()
	n.r.mu.Lock()
	defer n.r.mu.Unlock()
	c, ok := n.r.mesh.carriers[tenant]
	if !ok {
		t.Fatalf("%s has no carrier for %s", n.name, tenant)
	}
	return c.dev
}

// vxRefused is the count of frames n's carrier check refused.
func vxRefused(t *testing.T, n *meshNode) string {
	t.Helper()
	out, ok := in(t, n.r.ns, "nft", "list", "counter", "inet", "macro", "vx_refused")
	if !ok {
		t.Fatal(out)
	}
	_, rest, _ := strings.Cut(out, "packets ")
	return strings.Fields(rest + " ?")[0]
}

// echoSized sends size bytes over TCP from client to an echo server at
// addr in server's namespace and returns how many came back within 3 s.
func echoSized(t *testing.T, addr netip.Addr, server, client Attachment, size int) int {
	t.Helper()
	ap := netip.AddrPortFrom(addr, 7002).String()
	var l net.Listener
	if err := inNetns(server.Netns, func() error {
		var err error
		l, err = net.Listen("tcp", ap)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()
	got := 0
	inNetns(client.Netns, func() error {
		c, err := net.DialTimeout("tcp", ap, time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(3 * time.Second))
		go c.Write(make([]byte, size))
		buf := make([]byte, 65536)
		for got < size {
			n, err := c.Read(buf)
			got += n
			if err != nil {
				break
			}
		}
		return nil
	})
	return got
}

// echoAcross serves one echo on network ("tcp6", "udp6") in server's
// namespace, sends "hello NETWORK" from client's, and returns the answer
// ("" when none came within 1 s).
func echoAcross(t *testing.T, network string, server, client Attachment) string {
	t.Helper()
	return echoTo(t, network, server.IPv6, server, client)
}

// echoTo is echoAcross to addr (one of server's).
func echoTo(t *testing.T, network string, to netip.Addr, server, client Attachment) string {
	t.Helper()
	addr := netip.AddrPortFrom(to, 7001).String()
	var closer io.Closer
	err := inNetns(server.Netns, func() error {
		if strings.HasPrefix(network, "udp") {
			pc, err := net.ListenPacket(network, addr)
			if err != nil {
				return err
			}
			closer = pc
			go func() {
				buf := make([]byte, 1500)
				n, from, err := pc.ReadFrom(buf)
				if err == nil {
					pc.WriteTo(buf[:n], from)
				}
			}()
			return nil
		}
		l, err := net.Listen(network, addr)
		if err != nil {
			return err
		}
		closer = l
		go func() {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			buf := make([]byte, 1500)
			n, _ := c.Read(buf)
			c.Write(buf[:n])
		}()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	var got string
	inNetns(client.Netns, func() error {
		c, err := net.DialTimeout(network, addr, time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(time.Second))
		if _, err := c.Write([]byte("hello " + network)); err != nil {
			return err
		}
		buf := make([]byte, 1500)
		n, _ := c.Read(buf)
		got = string(buf[:n])
		return nil
	})
	return got
}

// TestMeshRestart replaces a node's router by a new one on the same
// directory, as an agent restart does, while pods of the two nodes ping
// each other across the mesh 20 times a second, over IPv6 one way and
// over the IPv4 carrier the other: the new router adopts the device
// (the same process, keys, port, peers and sessions), and the streams
// lose no more than a few packets. A restart that takes the device down
// with the router loses a second's worth at least (the restart below
// takes one) and fails.
func TestMeshRestart(t *testing.T) {
	requireRoot(t)
	// Last of the cleanups: the routers' Destroy ended the device
	// processes and removed their sockets.
	var devs []string // pid, socket
	t.Cleanup(func() {
		for i := 0; i < len(devs); i += 2 {
			pid, _ := strconv.Atoi(devs[i])
			if pid > 0 && syscall.Kill(pid, 0) == nil {
				t.Errorf("the device process %d is left running", pid)
				syscall.Kill(pid, syscall.SIGKILL)
			}
			if _, err := os.Lstat(devs[i+1]); err == nil {
				t.Errorf("%s is left", devs[i+1])
				os.Remove(devs[i+1])
			}
		}
	})
	n1, n2 := startMeshNode(t, "n1"), startMeshNode(t, "n2")
	for _, n := range []*meshNode{n1, n2} {
		b, _ := os.ReadFile(filepath.Join(meshDevState(n.r.cfg.Dir), "pid"))
		devs = append(devs, strings.TrimSpace(string(b)), filepath.Join(meshSocketDir, meshDevName(n.r.cfg.Dir)+".sock"))
	}
	pa1, pa2 := pod("a1", "alice", "shop", "web"), pod("a2", "alice", "shop", "db")
	a1 := attach(t, n1.r, pa1)
	// Each node picks IPv4 addresses on its own here: a pod that comes
	// and goes first gives a2 an address of its own.
	tmp := pod("d2", "alice", "shop", "tmp")
	attach(t, n2.r, tmp)
	a2 := attach(t, n2.r, pa2)
	if err := n2.r.Detach(context.Background(), tmp.ID); err != nil {
		t.Fatal(err)
	}
	view := types.MeshView{
		Nodes: []types.MeshNode{n1.node(), n2.node()},
		Pods:  []types.MeshPod{meshPod(pa1, "n1", a1), meshPod(pa2, "n2", a2)},
	}
	loop := []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	for _, n := range []*meshNode{n1, n2} {
		if err := n.r.ApplyMesh(context.Background(), mesh.Compute("meshtest", n.name, view), loop); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, ok6 := in(t, a1.Netns, "busybox", "ping", "-c", "1", "-W", "1", a2.IPv6.String())
		_, ok4 := in(t, a2.Netns, "busybox", "ping", "-c", "1", "-W", "1", a1.IPv4.String())
		if ok6 && ok4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no traffic across the mesh")
		}
	}
	pid := func() string {
		b, _ := os.ReadFile(filepath.Join(meshDevState(n1.r.cfg.Dir), "pid"))
		return strings.TrimSpace(string(b))
	}
	before := pid()
	if before == "" {
		t.Fatal("n1's device has no process of its own")
	}

	const count = 100 // 5 s at 20 a second
	outs := make(chan string, 2)
	for _, s := range []struct {
		from Attachment
		to   netip.Addr
	}{{a1, a2.IPv6}, {a2, a1.IPv4}} {
		go func() {
			out, _ := in(t, s.from.Netns, "busybox", "ping", "-q", "-i", "0.05", "-W", "2", "-c", fmt.Sprint(count), s.to.String())
			outs <- s.to.String() + ": " + out
		}()
	}
	time.Sleep(time.Second)
	// The restart: the old router goes, the new one comes a second later.
	if err := n1.r.Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	r, err := Open(context.Background(), n1.r.cfg)
	if err != nil {
		t.Fatal(err)
	}
	*n1.rp, n1.r = r, r
	port, err := r.StartMesh(context.Background(), n1.key, 0)
	if err != nil {
		t.Fatal(err)
	}
	if port != n1.port {
		t.Errorf("the new router's device listens on %d, the old one's on %d", port, n1.port)
	}
	if err := r.ApplyMesh(context.Background(), mesh.Compute("meshtest", "n1", view), loop); err != nil {
		t.Fatal(err)
	}
	if after := pid(); after != before {
		t.Errorf("the device process changed from %s to %s", before, after)
	}
	for range 2 {
		out := <-outs
		var sent, got int
		for _, line := range strings.Split(out, "\n") {
			if _, err := fmt.Sscanf(strings.TrimSpace(line), "%d packets transmitted, %d packets received", &sent, &got); err == nil {
				break
			}
		}
		t.Logf("%d sent, %d received", sent, got)
		if sent != count || got < sent-3 {
			t.Errorf("the stream lost packets over the restart:\n%s", out)
		}
	}
	if _, ok := in(t, a2.Netns, "busybox", "ping", "-c", "1", "-W", "1", a1.IPv4.String()); !ok {
		t.Fatal("no IPv4 traffic after the restart")
	}
}

// TestMeshKernel joins two routers by kernel WireGuard devices, made and
// configured as --mesh-impl kernel does: on a machine without the module
// (these), it checks only that the kernel path fails with a clear error
// and that "auto" falls back to the userspace device.
func TestMeshKernel(t *testing.T) {
	requireRoot(t)
	rp := openRouter(t, Config{Cluster: "meshtest", MeshImpl: "bogus"})
	key, err := mesh.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (*rp).StartMesh(context.Background(), key, 0); err == nil || !strings.Contains(err.Error(), "want auto, kernel or userspace") {
		t.Fatalf("--mesh-impl bogus: %v", err)
	}
	if !meshKernelWorks(context.Background(), (*rp).ns) {
		(*rp).cfg.MeshImpl = "kernel"
		if _, err := (*rp).StartMesh(context.Background(), key, 0); err == nil || !strings.Contains(err.Error(), "kernel WireGuard device") {
			t.Fatalf("--mesh-impl kernel without the module: %v", err)
		}
		(*rp).cfg.MeshImpl = "auto"
		if _, err := (*rp).StartMesh(context.Background(), key, 0); err != nil {
			t.Fatalf("--mesh-impl auto without the module: %v", err)
		}
		if (*rp).mesh.kernel {
			t.Fatal("auto chose the kernel's device, which the kernel cannot make")
		}
		t.Skip("no WireGuard module in this kernel: the kernel device's creation is not exercised")
	}
	n1 := startMeshNodeWith(t, "n1", Config{Cluster: "meshtest", MeshImpl: "kernel"})
	n2 := startMeshNodeWith(t, "n2", Config{Cluster: "meshtest", MeshImpl: "kernel"})
	pa1, pa2 := pod("a1", "alice", "shop", "web"), pod("a2", "alice", "shop", "db")
	a1, a2 := attach(t, n1.r, pa1), attach(t, n2.r, pa2)
	view := types.MeshView{
		Nodes: []types.MeshNode{n1.node(), n2.node()},
		Pods:  []types.MeshPod{meshPod(pa1, "n1", a1), meshPod(pa2, "n2", a2)},
	}
	loop := []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	for _, n := range []*meshNode{n1, n2} {
		if !n.r.mesh.kernel {
			t.Fatal("not a kernel device")
		}
		if err := n.r.ApplyMesh(context.Background(), mesh.Compute("meshtest", n.name, view), loop); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, ok := in(t, a1.Netns, "busybox", "ping", "-c", "1", "-W", "1", a2.IPv6.String()); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no traffic across kernel WireGuard devices")
		}
	}
}
