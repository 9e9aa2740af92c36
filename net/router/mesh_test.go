package router

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/macro-cloud/macro/net/mesh"
	"github.com/macro-cloud/macro/types"
)

// meshNode is a router with its mesh started, on this machine.
type meshNode struct {
	name string
	r    *Router
	key  mesh.Key
	port uint16
}

func startMeshNode(t *testing.T, name string) *meshNode {
	t.Helper()
	r := *openRouter(t, Config{Cluster: "meshtest"})
	key, err := mesh.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	port, err := r.StartMesh(context.Background(), key, 0)
	if err != nil {
		t.Fatal(err)
	}
	return &meshNode{name: name, r: r, key: key, port: port}
}

func (n *meshNode) node() types.MeshNode {
	return types.MeshNode{Name: n.name, Key: n.key.Public().String(), Endpoint: fmt.Sprintf("127.0.0.1:%d", n.port)}
}

// meshPod is a pod of the view, with the addresses its router gave it.
func meshPod(p types.Pod, node string, a Attachment) types.MeshPod {
	return types.MeshPod{ID: p.ID, Tenant: p.Tenant, Namespace: p.Namespace, Node: node, Names: []string{p.Name}, IPv6: a.IPv6.String(), IPv4: a.IPv4.String()}
}

// TestMesh joins two routers of this machine by their WireGuard mesh (the
// host's loopback is the underlay) and sends real packets between their
// pods: a tenant's pods reach each other across the nodes by address and
// name (ICMP, TCP, UDP over IPv6); another tenant's never do, nor do
// spoofed sources, nor a node that routes another tenant's packets to it.
func TestMesh(t *testing.T) {
	requireRoot(t)
	n1, n2 := startMeshNode(t, "n1"), startMeshNode(t, "n2")
	pa1, pb1 := pod("a1", "alice", "shop", "web"), pod("b1", "eve", "shop", "evil")
	pa2, pb2 := pod("a2", "alice", "shop", "db"), pod("b2", "eve", "shop", "db")
	a1, b1 := attach(t, n1.r, pa1), attach(t, n1.r, pb1)
	a2, b2 := attach(t, n2.r, pa2), attach(t, n2.r, pb2)
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

	t.Run("a pod gone from the view loses its route and name", func(t *testing.T) {
		v := view
		v.Pods = []types.MeshPod{meshPod(pa1, "n1", a1), meshPod(pb1, "n1", b1), meshPod(pb2, "n2", b2)}
		if err := n1.r.ApplyMesh(context.Background(), mesh.Compute("meshtest", "n1", v), loop); err != nil {
			t.Fatal(err)
		}
		if ping(a1, a2.IPv6) {
			t.Fatal("a pod gone from the view is still reached")
		}
		if out, ok := in(t, a1.Netns, "busybox", "nslookup", "db", DNSAddr.String()); ok {
			t.Fatalf("a pod gone from the view still resolves:\n%s", out)
		}
	})
}

// meshPackets counts the packets the mesh device of n has sent.
func meshPackets(t *testing.T, n *meshNode) string { return meshStat(t, n, 9) }

// meshRx counts the packets the mesh device of n has received.
func meshRx(t *testing.T, n *meshNode) string { return meshStat(t, n, 1) }

func meshStat(t *testing.T, n *meshNode, field int) string {
	t.Helper()
	out, _ := in(t, n.r.ns, "cat", "/proc/net/dev")
	for _, line := range strings.Split(out, "\n") {
		if name, rest, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && name == meshName {
			if f := strings.Fields(rest); len(f) > field {
				return f[field]
			}
		}
	}
	t.Fatalf("no %s in /proc/net/dev:\n%s", meshName, out)
	return ""
}

// echoAcross serves one echo on network ("tcp6", "udp6") in server's
// namespace, sends "hello NETWORK" from client's, and returns the answer
// ("" when none came within 1 s).
func echoAcross(t *testing.T, network string, server, client Attachment) string {
	t.Helper()
	addr := netip.AddrPortFrom(server.IPv6, 7001).String()
	var closer io.Closer
	err := inNetns(server.Netns, func() error {
		if network == "udp6" {
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
