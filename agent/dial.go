package agent

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/macro-cloud/macro/runtime"
	"github.com/macro-cloud/macro/types"
)

// Dialer is what a Network offers when it can reach the node's pods (the
// router's namespace, where every pod of the node is routed).
type Dialer interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// DialPod connects to port of pod id of tenant, which must be assigned to
// this node and running (a suspended one is woken first): the ingress of a
// server on another node reaches the pod this way, through the node's
// tunnel. The tenant, the pod and its address are this agent's own
// (never the caller's word): a server cannot be led to another tenant's
// pod, or to any address that is not the pod's. While the connection is
// open the pod is not suspended.
func (a *Agent) DialPod(ctx context.Context, tenant, id string, port int) (net.Conn, error) {
	if port < 1 || port > 65535 {
		return nil, fmt.Errorf("dial: port %d is out of range", port)
	}
	w, err := a.worker(id)
	if err != nil {
		return nil, err
	}
	pod, _ := w.snapshot()
	if pod.Tenant != tenant {
		return nil, ErrNoSuchPod // another tenant's pod does not exist
	}
	// Counted before the wake, so that a suspend under way either sees
	// this connection or is waited for and undone (see Agent.suspend);
	// a dial that fails uncounts itself.
	w.dials.Add(1)
	w.dialLast.Store(time.Now().UnixNano())
	counted := true
	defer func() {
		if counted {
			w.dials.Add(-1)
		}
	}()
	if err := a.Wake(ctx, id); err != nil {
		return nil, err
	}
	_, st := w.snapshot()
	if st.Phase != types.PhaseRunning {
		return nil, fmt.Errorf("dial: %w (%s)", runtime.ErrNotRunning, st.Phase)
	}
	var addr netip.Addr
	for _, s := range []string{st.IPv6, st.IPv4} {
		if ad, err := netip.ParseAddr(s); err == nil && !addr.IsValid() {
			addr = ad
		}
	}
	if !addr.IsValid() {
		return nil, fmt.Errorf("dial: pod %s has no address", id)
	}
	target := net.JoinHostPort(addr.String(), strconv.Itoa(port))
	var c net.Conn
	if d, ok := a.cfg.Network.(Dialer); ok {
		c, err = d.DialContext(ctx, "tcp", target)
	} else {
		var d net.Dialer
		c, err = d.DialContext(ctx, "tcp", target)
	}
	if err != nil {
		return nil, fmt.Errorf("dial pod %s: %w", id, err)
	}
	counted = false // the connection uncounts itself on Close
	w.dialLast.Store(time.Now().UnixNano())
	return &dialedConn{Conn: c, w: w}, nil
}

// dialedConn keeps its pod's record of other servers' ingress traffic:
// the time of its last byte, and the count of open connections, ended
// once on Close.
type dialedConn struct {
	net.Conn
	w    *worker
	once sync.Once
}

func (c *dialedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.w.dialLast.Store(time.Now().UnixNano())
	}
	return n, err
}

func (c *dialedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.w.dialLast.Store(time.Now().UnixNano())
	}
	return n, err
}

func (c *dialedConn) Close() error {
	c.once.Do(func() { c.w.dials.Add(-1) })
	return c.Conn.Close()
}

// CloseWrite half-closes, as a TCP connection does.
func (c *dialedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
