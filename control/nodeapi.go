package control

import (
	"context"
	"time"

	"github.com/macro-cloud/macro/store"
	"github.com/macro-cloud/macro/types"
)

// NodeAPI is the server side of the node protocol: the only way an agent
// learns its pods and reports what it sees. In the single-machine cloud the
// agent calls it in-process; remote agents reach it over the network.
type NodeAPI struct {
	store *store.Store
}

// NewNodeAPI serves the node protocol from st.
func NewNodeAPI(st *store.Store) *NodeAPI { return &NodeAPI{store: st} }

// RegisterNode records a node's capacity and marks it ready.
func (n *NodeAPI) RegisterNode(ctx context.Context, node types.Node) error {
	node.Ready = true
	node.Seen = time.Now().UTC()
	return n.store.PutNode(ctx, node)
}

// ReportStatus records what the agent observed of one pod.
func (n *NodeAPI) ReportStatus(ctx context.Context, tenant string, st types.PodStatus) error {
	return n.store.PutStatus(ctx, tenant, st)
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
