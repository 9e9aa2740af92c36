package control

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/macro-cloud/macro/store"
	"github.com/macro-cloud/macro/types"
)

// State is one server's view of every pod and status, kept by one store
// watch: the node API streams each node's assignments from it (thousands
// of nodes share the one watch) and the controller places pods from it,
// without reading the whole store per round. It holds no decisions: every
// write still goes to the store with a compare on what was read.
type State struct {
	store *store.Store
	log   *slog.Logger

	mu      sync.RWMutex
	synced  chan struct{} // closed once the first snapshot is in
	pods    map[string]*types.Pod
	status  map[string]types.PodStatus
	byNode  map[string]map[string]*types.Pod
	pending map[string]*types.Pod // placed nowhere yet
	// placed is every placed pod in one slice for the scheduler (swap
	// removal through slot), so a round costs no copy of a million pods.
	placed []types.Pod
	slot   map[string]int
	subs   map[string]map[*nodeSub]struct{}
	autoRM map[string]*types.Pod // --rm pods, for the controller
	// changed wakes the controller: a pod to place, or an exit to act on.
	changed chan struct{}
}

// NewState returns an empty State; Run fills it and keeps it current.
func NewState(st *store.Store, log *slog.Logger) *State {
	if log == nil {
		log = slog.Default()
	}
	return &State{
		store: st, log: log.With("subsystem", "state"),
		synced: make(chan struct{}), pods: map[string]*types.Pod{}, status: map[string]types.PodStatus{},
		byNode: map[string]map[string]*types.Pod{}, pending: map[string]*types.Pod{}, slot: map[string]int{},
		subs: map[string]map[*nodeSub]struct{}{}, autoRM: map[string]*types.Pod{}, changed: make(chan struct{}, 1),
	}
}

// Run follows the store until ctx ends: a snapshot, then its watch; when
// the watch breaks, a new snapshot, and every node hears its full set again.
func (s *State) Run(ctx context.Context) {
	for ctx.Err() == nil {
		snap, err := s.store.Snapshot(ctx)
		if err != nil {
			s.log.Warn("snapshot", "err", err)
			sleep(ctx, time.Second)
			continue
		}
		s.load(snap)
		for ch := range s.store.Watch(ctx, snap.Revision+1) {
			s.apply(ch)
		}
	}
}

// Synced is closed once the State holds a snapshot.
func (s *State) Synced() <-chan struct{} { return s.synced }

func (s *State) load(snap store.Snapshot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.pods)
	clear(s.byNode)
	clear(s.pending)
	clear(s.slot)
	clear(s.autoRM)
	s.placed = s.placed[:0]
	s.status = snap.Statuses
	for i := range snap.Pods {
		p := snap.Pods[i]
		s.putLocked(&p, false)
	}
	for _, subs := range s.subs {
		for sub := range subs {
			sub.resync()
		}
	}
	select {
	case <-s.synced:
	default:
		close(s.synced)
	}
	s.wake()
}

func (s *State) wake() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

func (s *State) apply(ch store.Change) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case ch.Kind == "pods" && ch.Deleted:
		if old := s.pods[ch.ID]; old != nil {
			s.removeLocked(old)
			s.notifyLocked(old.Node, types.Assignment{Deleted: ch.ID})
		}
		delete(s.status, ch.ID)
	case ch.Kind == "pods" && ch.Pod != nil:
		p := ch.Pod
		if old := s.pods[p.ID]; old != nil {
			s.removeLocked(old)
			if old.Node != "" && old.Node != p.Node {
				s.notifyLocked(old.Node, types.Assignment{Deleted: p.ID}) // moved away
			}
		}
		s.putLocked(p, true)
		if p.Node == "" || p.Spec.AutoRemove {
			s.wake()
		}
	case ch.Kind == "status" && ch.Deleted:
		delete(s.status, ch.ID)
	case ch.Kind == "status" && ch.Status != nil:
		s.status[ch.ID] = *ch.Status
		if ch.Status.Phase == types.PhaseExited {
			s.wake()
		}
	}
}

func (s *State) putLocked(p *types.Pod, notify bool) {
	s.pods[p.ID] = p
	if p.Spec.AutoRemove {
		s.autoRM[p.ID] = p
	}
	if p.Node == "" {
		s.pending[p.ID] = p
		return
	}
	m := s.byNode[p.Node]
	if m == nil {
		m = map[string]*types.Pod{}
		s.byNode[p.Node] = m
	}
	m[p.ID] = p
	s.slot[p.ID] = len(s.placed)
	s.placed = append(s.placed, *p)
	if notify {
		s.notifyLocked(p.Node, types.Assignment{Pod: p})
	}
}

func (s *State) removeLocked(p *types.Pod) {
	delete(s.pods, p.ID)
	delete(s.autoRM, p.ID)
	delete(s.pending, p.ID)
	if m := s.byNode[p.Node]; m != nil {
		delete(m, p.ID)
		if len(m) == 0 {
			delete(s.byNode, p.Node)
		}
	}
	if i, ok := s.slot[p.ID]; ok {
		last := len(s.placed) - 1
		if i != last {
			s.placed[i] = s.placed[last]
			s.slot[s.placed[i].ID] = i
		}
		s.placed = s.placed[:last]
		delete(s.slot, p.ID)
	}
}

// Pod is the pod as last seen, and whether it exists.
func (s *State) Pod(id string) (types.Pod, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	p := s.pods[id]
	if p == nil {
		return types.Pod{}, false
	}
	return *p, true
}

// schedule calls fn with the pending pods and every placed pod: copies
// taken under the read lock, so that the watch goes on while fn places.
func (s *State) schedule(fn func(pending, placed []types.Pod)) {
	s.mu.RLock()
	if len(s.pending) == 0 {
		s.mu.RUnlock()
		return
	}
	pending := make([]types.Pod, 0, len(s.pending))
	for _, p := range s.pending {
		pending = append(pending, *p)
	}
	placed := slices.Clone(s.placed)
	s.mu.RUnlock()
	fn(pending, placed)
}

// waitFor waits (up to a few seconds) until the State has seen the
// placements commit or their pods change otherwise.
func (s *State) waitFor(ctx context.Context, ps []store.Placement) {
	deadline := time.Now().Add(5 * time.Second)
	for _, pl := range ps {
		for {
			s.mu.RLock()
			p := s.pods[pl.Pod.ID]
			seen := p == nil || p.Revision != pl.Pod.Revision
			s.mu.RUnlock()
			if seen || ctx.Err() != nil || time.Now().After(deadline) {
				break
			}
			sleep(ctx, 2*time.Millisecond)
		}
	}
}

// exited lists the auto-remove pods whose container exited for good.
func (s *State) exited() []types.Pod {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []types.Pod
	for _, p := range s.autoRM {
		st, ok := s.status[p.ID]
		if ok && st.Phase == types.PhaseExited && st.Run >= p.Desired.Run {
			out = append(out, *p)
		}
	}
	return out
}

// onNodes lists the pods placed on the nodes and their statuses.
func (s *State) onNodes(nodes map[string]bool) ([]types.Pod, map[string]types.PodStatus) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var pods []types.Pod
	sts := map[string]types.PodStatus{}
	for n := range nodes {
		for _, p := range s.byNode[n] {
			pods = append(pods, *p)
			if st, ok := s.status[p.ID]; ok {
				sts[p.ID] = st
			}
		}
	}
	return pods, sts
}

// nodeSub is one stream of a node's assignments. Changes queue up under
// the State's lock, in order; a stream that falls far behind is given a
// full set instead of its backlog.
type nodeSub struct {
	node string
	mu   sync.Mutex
	q    []types.Assignment
	sync bool // the next message is a full set
	wake chan struct{}
}

const maxBacklog = 4096

func (n *nodeSub) push(a types.Assignment) {
	n.mu.Lock()
	if !n.sync {
		if len(n.q) >= maxBacklog {
			n.q, n.sync = nil, true
		} else {
			n.q = append(n.q, a)
		}
	}
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

func (n *nodeSub) resync() {
	n.mu.Lock()
	n.q, n.sync = nil, true
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

func (s *State) notifyLocked(node string, a types.Assignment) {
	for sub := range s.subs[node] {
		sub.push(a)
	}
}

// Subscribe streams the node's assignments until ctx ends: the full set
// first (once the State is synced), then changes.
func (s *State) Subscribe(ctx context.Context, node string) <-chan types.Assignment {
	sub := &nodeSub{node: node, sync: true, wake: make(chan struct{}, 1)}
	s.mu.Lock()
	if s.subs[node] == nil {
		s.subs[node] = map[*nodeSub]struct{}{}
	}
	s.subs[node][sub] = struct{}{}
	s.mu.Unlock()
	out := make(chan types.Assignment, 64)
	go func() {
		defer close(out)
		defer func() {
			s.mu.Lock()
			delete(s.subs[node], sub)
			if len(s.subs[node]) == 0 {
				delete(s.subs, node)
			}
			s.mu.Unlock()
		}()
		select {
		case <-s.synced:
		case <-ctx.Done():
			return
		}
		for {
			for _, a := range s.take(sub) {
				select {
				case out <- a:
				case <-ctx.Done():
					return
				}
			}
			select {
			case <-sub.wake:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// take returns what the stream has to send: a full set built under the
// State's lock (so no change is missed or doubled), or its backlog.
func (s *State) take(sub *nodeSub) []types.Assignment {
	s.mu.RLock()
	defer s.mu.RUnlock()
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if sub.sync {
		sub.sync, sub.q = false, nil
		pods := make([]types.Pod, 0, len(s.byNode[sub.node]))
		for _, p := range s.byNode[sub.node] {
			pods = append(pods, *p)
		}
		return []types.Assignment{{Sync: true, Pods: pods}}
	}
	q := sub.q
	sub.q = nil
	return q
}
