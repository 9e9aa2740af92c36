package control

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"time"

	"github.com/macro-cloud/macro/store"
	"github.com/macro-cloud/macro/types"
)

// NodeAPI is the server side of the node protocol: the only way an agent
// learns its pods and reports what it sees. In the single-machine cloud the
// agent calls it in-process; remote agents reach it over the network
// (package nodeproto).
type NodeAPI struct {
	store *store.Store
	ttl   time.Duration

	mu     sync.Mutex
	leases map[string]nodeLease // by node name: the leases this server granted
}

type nodeLease struct {
	id   int64
	node types.Node // as registered, to tell a heartbeat from a change
}

// DefaultNodeTTL is how long a node stays alive without a heartbeat.
const DefaultNodeTTL = 10 * time.Second

// NewNodeAPI serves the node protocol from st; a node is down ttl after
// its last heartbeat (DefaultNodeTTL when 0).
func NewNodeAPI(st *store.Store, ttl time.Duration) *NodeAPI {
	if ttl <= 0 {
		ttl = DefaultNodeTTL
	}
	return &NodeAPI{store: st, ttl: ttl, leases: map[string]nodeLease{}}
}

// RegisterNode records a node's capacity and keeps it alive for the TTL:
// agents call it again as their heartbeat, which only renews the lease
// while nothing about the node changed.
func (n *NodeAPI) RegisterNode(ctx context.Context, node types.Node) error {
	node.Ready = true
	n.mu.Lock()
	l, ok := n.leases[node.Name]
	n.mu.Unlock()
	if ok && sameNode(l.node, node) {
		// Renew; a lease that expired (or a renewal that failed) is
		// replaced by a new one below.
		if n.store.KeepNodeAlive(ctx, l.id) == nil {
			return nil
		}
	}
	reg := node
	reg.Seen = time.Now().UTC()
	id, err := n.store.RegisterNode(ctx, reg, int64((n.ttl+time.Second-1)/time.Second))
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.leases[node.Name] = nodeLease{id: id, node: node}
	n.mu.Unlock()
	return nil
}

func sameNode(a, b types.Node) bool {
	a.Seen, b.Seen = time.Time{}, time.Time{}
	return reflect.DeepEqual(a, b)
}

// ReportStatus records what the agent observed of one pod, as long as the
// pod is still placed on the node that reports.
func (n *NodeAPI) ReportStatus(ctx context.Context, tenant string, st types.PodStatus) error {
	if st.Node == "" {
		return errors.New("a status must name the node that observed it")
	}
	err := n.store.PutStatusFrom(ctx, tenant, st.Node, st)
	if errors.Is(err, store.ErrNotFound) {
		return nil // removed meanwhile: nothing to record
	}
	return err
}

// WatchPods streams (see types.Assignment) the pods assigned to node until ctx ends. The full set
// comes first, then changes; if the store's watch breaks, a new full set
// follows, so the agent never misses a change.
func (n *NodeAPI) WatchPods(ctx context.Context, node string) <-chan types.Assignment {
	out := make(chan types.Assignment, 64)
	go func() {
		defer close(out)
		mine := map[string]bool{}
		for ctx.Err() == nil {
			snap, err := n.store.Snapshot(ctx)
			if err != nil {
				sleep(ctx, time.Second)
				continue
			}
			var pods []types.Pod
			clear(mine)
			for _, p := range snap.Pods {
				if p.Node == node {
					pods = append(pods, p)
					mine[p.ID] = true
				}
			}
			if !send(ctx, out, types.Assignment{Sync: true, Pods: pods}) {
				return
			}
			for ch := range n.store.Watch(ctx, snap.Revision+1) {
				if ch.Kind != "pods" {
					continue
				}
				var a types.Assignment
				switch {
				case ch.Deleted && mine[ch.ID]:
					delete(mine, ch.ID)
					a.Deleted = ch.ID
				case ch.Pod != nil && ch.Pod.Node == node:
					mine[ch.ID] = true
					a.Pod = ch.Pod
				case ch.Pod != nil && mine[ch.ID]:
					// Moved away from this node.
					delete(mine, ch.ID)
					a.Deleted = ch.ID
				default:
					continue
				}
				if !send(ctx, out, a) {
					return
				}
			}
		}
	}()
	return out
}

func send(ctx context.Context, out chan<- types.Assignment, a types.Assignment) bool {
	select {
	case out <- a:
		return true
	case <-ctx.Done():
		return false
	}
}
