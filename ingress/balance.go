package ingress

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Balancing across nodes: a pod on this ingress's node is dialled from
// here (Options.Dial, the node's router), a pod on another node through
// Options.DialRemote (that node's tunnel). A pod whose dial failed is
// left out for Options.Backoff while another replica is ready, and the
// request that failed (nothing was sent) goes to another replica.

// remoteTarget is what the dial of a pod on another node needs.
type remoteTarget struct {
	node, tenant, pod string
	port              int
}

// remote is true when t runs on another node and is reached through
// DialRemote.
func (p *Proxy) remote(t Target) bool {
	return p.opts.DialRemote != nil && t.Node != "" && t.Node != p.opts.Node
}

// dialError is a failure to connect to a backend: nothing was sent to it.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// dial is the transport's dial: through the tunnel of another node for a
// host of remotes, else from here.
func (p *Proxy) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if v, ok := p.remotes.Load(addr); ok {
		rt := v.(remoteTarget)
		ctx, cancel := context.WithTimeout(ctx, p.opts.DialTimeout)
		defer cancel()
		c, err := p.opts.DialRemote(ctx, rt.node, rt.tenant, rt.pod, rt.port)
		if err != nil {
			return nil, &dialError{fmt.Errorf("pod %s on node %s: %w", rt.pod, rt.node, err)}
		}
		return c, nil
	}
	c, err := p.opts.Dial(ctx, network, addr)
	if err != nil {
		return nil, &dialError{err}
	}
	return c, nil
}

// dialTarget connects to a target (raw TCP ingress).
func (p *Proxy) dialTarget(ctx context.Context, t Target) (net.Conn, error) {
	if p.remote(t) {
		c, err := p.opts.DialRemote(ctx, t.Node, t.Tenant, t.Pod, t.Port)
		if err != nil {
			return nil, &dialError{fmt.Errorf("pod %s on node %s: %w", t.Pod, t.Node, err)}
		}
		return c, nil
	}
	c, err := p.opts.Dial(ctx, "tcp", t.Addr.String())
	if err != nil {
		return nil, &dialError{err}
	}
	return c, nil
}

// health is the passive health check: pods whose dial failed, until when
// they are left out.
type health struct {
	n    atomic.Int32 // entries in down: 0 on the usual path, no lookup
	mu   sync.Mutex
	down map[string]time.Time
}

func (h *health) any() bool { return h.n.Load() > 0 }

func (h *health) failed(pod string, until time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.down == nil {
		h.down = map[string]time.Time{}
	}
	h.down[pod] = until
	h.n.Store(int32(len(h.down)))
}

// isDown is true while pod's backoff lasts; an entry past it is dropped.
func (h *health) isDown(pod string, now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	until, ok := h.down[pod]
	if ok && !now.Before(until) {
		delete(h.down, pod)
		h.n.Store(int32(len(h.down)))
		return false
	}
	return ok
}

// forget drops the entries of pods not in keep.
func (h *health) forget(keep map[string]bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for pod := range h.down {
		if !keep[pod] {
			delete(h.down, pod)
		}
	}
	h.n.Store(int32(len(h.down)))
}

// Down lists the pods left out after a failed dial, with the end of their
// backoff.
func (p *Proxy) Down() map[string]time.Time {
	p.health.mu.Lock()
	defer p.health.mu.Unlock()
	out := map[string]time.Time{}
	now := p.now()
	for pod, until := range p.health.down {
		if now.Before(until) {
			out[pod] = until
		}
	}
	return out
}
