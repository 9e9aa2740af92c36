package nodeproto

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/macro-cloud/macro/agent"
)

// dialOps serves DialPod only: pod p1 of tenant alice is an echo server.
type dialOps struct {
	Ops
	echo string
}

func (o dialOps) DialPod(ctx context.Context, tenant, id string, port int) (net.Conn, error) {
	if tenant != "alice" || id != "p1" {
		return nil, agent.ErrNoSuchPod
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", o.echo)
}

// TestDialThroughTunnel: a server dials a pod through the node's tunnel
// and talks to it, half-close included; the node's refusal crosses the
// wire as its sentinel.
func TestDialThroughTunnel(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
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
			go func() {
				b, _ := io.ReadAll(c) // until the half-close
				c.Write(append([]byte("echo:"), b...))
				c.Close()
			}()
		}
	}()
	srvEnd, nodeEnd := net.Pipe()
	srvSess, err := yamux.Client(srvEnd, yamuxConfig())
	if err != nil {
		t.Fatal(err)
	}
	nodeSess, err := yamux.Server(nodeEnd, yamuxConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer srvSess.Close()
	defer nodeSess.Close()
	go ServeOps(nodeSess, dialOps{echo: l.Addr().String()})
	tun := NewTunnels()
	tun.put("n2", srvSess)
	ctx := context.Background()

	c, err := tun.Remote("n2").DialPod(ctx, "alice", "p1", 8080)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("ping"))
	c.(interface{ CloseWrite() error }).CloseWrite()
	b, err := io.ReadAll(c)
	if err != nil || string(b) != "echo:ping" {
		t.Fatalf("through the tunnel: %q %v", b, err)
	}
	c.Close()

	if _, err := tun.Remote("n2").DialPod(ctx, "bob", "p1", 8080); !errors.Is(err, agent.ErrNoSuchPod) {
		t.Fatalf("another tenant's pod: %v", err)
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err := tun.Remote("n3").DialPod(short, "alice", "p1", 8080); err == nil {
		t.Fatal("dial of a node without a tunnel")
	}
}
