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

	once  sync.Once
	state *State
	stop  context.CancelFunc

	// Status reports waiting for the writer, which commits them together.
	smu     sync.Mutex
	queue   []statusReq
	writing int // writers under way, at most statusWriters

	meshMu sync.Mutex
	mesh   meshNodes
}

// statusWriters bounds the group commits of statuses under way at once:
// while they wait for etcd, the next reports gather for the next commit.
const statusWriters = 4

type statusReq struct {
	sa   store.StatusAt
	done chan statusRes
}

type statusRes struct {
	ok  bool
	err error
}

// putStatus records a status in the next group commit: a report that finds
// no commit under way starts one at once (no added latency when alone);
// those that come meanwhile wait for the next, which takes them all.
func (n *NodeAPI) putStatus(ctx context.Context, sa store.StatusAt) (bool, error) {
	req := statusReq{sa: sa, done: make(chan statusRes, 1)}
	n.smu.Lock()
	n.queue = append(n.queue, req)
	if n.writing < statusWriters {
		n.writing++
		go n.writeStatuses()
	}
	n.smu.Unlock()
	select {
	case r := <-req.done:
		return r.ok, r.err
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

func (n *NodeAPI) writeStatuses() {
	for {
		n.smu.Lock()
		batch := n.queue
		n.queue = nil
		if len(batch) == 0 {
			n.writing--
			n.smu.Unlock()
			return
		}
		n.smu.Unlock()
		sts := make([]store.StatusAt, len(batch))
		for i, r := range batch {
			sts[i] = r.sa
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		ok, err := n.store.PutStatusesAt(ctx, sts)
		cancel()
		for i, r := range batch {
			r.done <- statusRes{ok: ok[i], err: err}
		}
	}
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
	// The mesh views show a changed node (a new key) at once.
	n.meshMu.Lock()
	n.mesh.at = time.Time{}
	n.meshMu.Unlock()
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
	// The common case: the pod is on this node as the State last saw it;
	// concurrent reports share one transaction.
	if p, ok := n.stateOf().Pod(st.ID); ok && p.Node == st.Node && p.Tenant == tenant {
		if done, err := n.putStatus(ctx, store.StatusAt{Tenant: tenant, Rev: p.Revision, Status: st}); err != nil || done {
			return err
		}
	}
	err := n.store.PutStatusFrom(ctx, tenant, st.Node, st)
	if errors.Is(err, store.ErrNotFound) {
		return nil // removed meanwhile: nothing to record
	}
	return err
}

// WithState serves the pod streams from s, which the caller runs (one
// State per server, shared with the controller); it returns n.
func (n *NodeAPI) WithState(s *State) *NodeAPI {
	n.state = s
	return n
}

// Close stops the State that the node API started itself.
func (n *NodeAPI) Close() {
	if n.stop != nil {
		n.stop()
	}
}

func (n *NodeAPI) stateOf() *State {
	n.once.Do(func() {
		if n.state == nil {
			ctx, cancel := context.WithCancel(context.Background())
			n.state, n.stop = NewState(n.store, nil), cancel
			go n.state.Run(ctx)
		}
	})
	return n.state
}

// FollowTenantNets follows the tenants' network settings for a node.
func (n *NodeAPI) FollowTenantNets(ctx context.Context) <-chan types.TenantNets {
	return n.store.FollowTenantNets(ctx)
}

// WatchPods streams (see types.Assignment) the pods assigned to node until
// ctx ends. The full set comes first, then changes; if the store's watch
// breaks, a new full set follows, so the agent never misses a change.
func (n *NodeAPI) WatchPods(ctx context.Context, node string) <-chan types.Assignment {
	return n.stateOf().Subscribe(ctx, node)
}
