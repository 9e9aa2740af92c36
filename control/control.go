// Package control runs the leader loops of the cloud: it feeds pending pods
// to the pure scheduler (package sched) and commits its plans, removes
// auto-remove pods once they exited, and serves the server side of the node
// protocol through which agents learn their pods and report what they see.
package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/macro-cloud/macro/sched"
	"github.com/macro-cloud/macro/store"
	"github.com/macro-cloud/macro/types"
)

// Controller converges the stored desired state.
type Controller struct {
	store   *store.Store
	log     *slog.Logger
	nodeTTL time.Duration
	// downSince is when this controller evicted the pods of each node
	// that is down.
	downSince map[string]time.Time
	started   time.Time // when Run began: leases get a TTL's grace
	state     *State
	now       func() time.Time
	// Replicated volumes (volumes.go): nil leaves them alone.
	volNodes VolumeNodes
	volDown  map[string]time.Time // when this controller saw each node down
	volMade  map[string]bool      // syncing replicas whose storage it made
}

// New returns a Controller over st.
func New(st *store.Store, log *slog.Logger) *Controller {
	if log == nil {
		log = slog.Default()
	}
	return &Controller{store: st, log: log.With("subsystem", "control"), nodeTTL: DefaultNodeTTL, downSince: map[string]time.Time{}, now: time.Now,
		volDown: map[string]time.Time{}, volMade: map[string]bool{}}
}

// WithNodeTTL sets how long a node may miss heartbeats before it is down
// (the TTL of the node API's leases); it returns c.
func (c *Controller) WithNodeTTL(d time.Duration) *Controller {
	if d > 0 {
		c.nodeTTL = d
	}
	return c
}

// Run places pods and removes finished --rm pods until ctx ends, from the
// State (its own unless WithState gave one): every change that may need
// it wakes a round. Safe to restart: every write compares with what the
// round read.
func (c *Controller) Run(ctx context.Context) error {
	c.started = c.now()
	if c.state == nil {
		c.state = NewState(c.store, c.log)
		go c.state.Run(ctx)
	}
	select {
	case <-c.state.Synced():
	case <-ctx.Done():
		return nil
	}
	// The pods of nodes that went down go back to the scheduler, and
	// replicated volumes are repaired, every second.
	go every(ctx, time.Second, c.evictDown)
	if c.volNodes != nil {
		go every(ctx, time.Second, c.repairVolumes)
	}
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		start := time.Now()
		c.round(ctx)
		// A round costs more with more pods: leave at least as long
		// between rounds, so that they batch what arrives meanwhile.
		sleep(ctx, min(time.Since(start), time.Second))
		select {
		case <-ctx.Done():
			return nil
		case <-c.state.changed:
		case <-tick.C:
			// Nodes appear outside the pod watch: pending pods may fit now.
		}
	}
}

// WithState makes the controller read from s, which the caller runs.
func (c *Controller) WithState(s *State) *Controller {
	c.state = s
	return c
}

func (c *Controller) round(ctx context.Context) {
	c.schedule(ctx)
	c.autoRemove(ctx)
}

func (c *Controller) schedule(ctx context.Context) {
	nodes, err := c.store.Nodes(ctx)
	if err != nil {
		c.log.Warn("list nodes", "err", err)
		return
	}
	var decided []store.Placement
	t0 := time.Now()
	c.state.schedule(func(pending, placed []types.Pod) {
		plan := sched.Place(pending, nodes, placed)
		for _, p := range pending {
			node, reason := plan.Assign[p.ID], plan.Unschedulable[p.ID]
			if node == "" && reason == p.Unschedulable {
				continue
			}
			decided = append(decided, store.Placement{Pod: p, Node: node, Reason: reason})
		}
	})
	if len(decided) == 0 {
		return
	}
	// Pods that changed meanwhile are decided again in the next round,
	// from the State, which hears of the change.
	t1 := time.Now()
	_, err = c.store.Place(ctx, decided)
	if err != nil {
		c.log.Warn("commit placements", "err", err)
		return
	}
	t2 := time.Now()
	// The next round must count these pods on their nodes.
	c.state.waitFor(ctx, decided)
	c.log.Debug("round", "decided", len(decided), "place", t1.Sub(t0), "commit", t2.Sub(t1), "seen", time.Since(t2))
}

var errAlreadyPlaced = errors.New("already placed")

// autoRemove deletes --rm pods whose container exited and will not restart.
func (c *Controller) autoRemove(ctx context.Context) {
	for _, p := range c.state.exited() {
		if err := c.store.DeletePod(ctx, p.Tenant, p.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
			c.log.Warn("auto-remove", "pod", p.ID, "err", err)
		}
	}
}

// every runs f each period until ctx ends.
func every(ctx context.Context, period time.Duration, f func(context.Context)) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f(ctx)
		}
	}
}

// evictDown sends the pods of down nodes back to the scheduler, once per
// time a node goes down. A node is down when its lease expired, but a
// controller that just took the lead (or a server that just restarted)
// first gives every node a TTL to renew its lease. Pods pinned to a down
// node (their data lives only there) stay, with a reason.
func (c *Controller) evictDown(ctx context.Context) {
	nodes, err := c.store.Nodes(ctx)
	if err != nil {
		return
	}
	now := c.now()
	if now.Sub(c.started) < c.nodeTTL {
		return
	}
	var down []string
	back := map[string]bool{}
	for _, n := range nodes {
		_, handled := c.downSince[n.Name]
		switch {
		case n.Ready && handled:
			back[n.Name] = true
			delete(c.downSince, n.Name)
		case !n.Ready && !handled:
			down = append(down, n.Name)
		}
	}
	if len(down) == 0 && len(back) == 0 {
		return
	}
	all := map[string]bool{}
	for _, n := range down {
		all[n] = true
	}
	for n := range back {
		all[n] = true
	}
	pods, statuses := c.state.onNodes(all)
	isDown := map[string]bool{}
	for _, n := range down {
		isDown[n] = true
		c.downSince[n] = now
	}
	for _, p := range pods {
		if back[p.Node] && p.Unschedulable != "" {
			// A pinned pod's node is back: its reason is over.
			c.clearReason(ctx, p)
			continue
		}
		if p.Node == "" || !isDown[p.Node] {
			continue
		}
		reason := ""
		if p.Spec.PinnedNode != "" {
			reason = fmt.Sprintf("node %s is down; the container stays pinned to it (%s)", p.Node, p.Spec.PinnedBy)
			if p.Unschedulable == reason {
				continue
			}
		}
		dead := p.Node
		if st, ok := statuses[p.ID]; ok && reason == "" {
			// First the status, so that once the pod is elsewhere no
			// one reads the dead node's word for it.
			c.orphanStatus(ctx, p, st, dead)
		}
		_, err := c.store.UpdatePod(ctx, p.Tenant, p.ID, func(cur *types.Pod) error {
			if cur.Node != dead {
				return errAlreadyPlaced
			}
			if reason != "" {
				cur.Unschedulable = reason
				return nil
			}
			cur.Node, cur.Unschedulable = "", ""
			return nil
		})
		switch {
		case err == nil && reason == "":
			c.log.Info("node down: pod goes back to the scheduler", "node", dead, "pod", p.ID, "tenant", p.Tenant)
		case err != nil && !errors.Is(err, errAlreadyPlaced) && !errors.Is(err, store.ErrNotFound):
			c.log.Warn("evict pod", "pod", p.ID, "err", err)
		}
	}
}

// orphanStatus rewrites the status a down node last reported for a pod
// that left it: nothing of it runs anywhere the cluster can see until its
// new node reports, so an active pod shows as restarting, with why.
func (c *Controller) orphanStatus(ctx context.Context, p types.Pod, st types.PodStatus, dead string) {
	if st.Node != dead {
		return
	}
	st.Node, st.Pid, st.IPv4, st.IPv6 = "", 0, "", ""
	st.Suspend = types.Suspend{}
	if st.Phase.Active() {
		st.Phase = types.PhaseRestarting
	}
	st.Error = fmt.Sprintf("node %s is down; the container moves to another node", dead)
	if err := c.store.PutStatus(ctx, p.Tenant, st); err != nil {
		c.log.Warn("status of a moved pod", "pod", p.ID, "err", err)
	}
}

func (c *Controller) clearReason(ctx context.Context, p types.Pod) {
	_, err := c.store.UpdatePod(ctx, p.Tenant, p.ID, func(cur *types.Pod) error {
		if cur.Node != p.Node {
			return errAlreadyPlaced
		}
		cur.Unschedulable = ""
		return nil
	})
	if err != nil && !errors.Is(err, errAlreadyPlaced) && !errors.Is(err, store.ErrNotFound) {
		c.log.Warn("clear pod reason", "pod", p.ID, "err", err)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
