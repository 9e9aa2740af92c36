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
	now       func() time.Time
}

// New returns a Controller over st.
func New(st *store.Store, log *slog.Logger) *Controller {
	if log == nil {
		log = slog.Default()
	}
	return &Controller{store: st, log: log.With("subsystem", "control"), nodeTTL: DefaultNodeTTL, downSince: map[string]time.Time{}, now: time.Now}
}

// WithNodeTTL sets how long a node may miss heartbeats before it is down
// (the TTL of the node API's leases); it returns c.
func (c *Controller) WithNodeTTL(d time.Duration) *Controller {
	if d > 0 {
		c.nodeTTL = d
	}
	return c
}

// Run watches the store until ctx ends: every change to a pod that may need
// scheduling or removal triggers a round. Safe to restart: a round reads all
// it needs from the store.
func (c *Controller) Run(ctx context.Context) error {
	c.started = c.now()
	go c.watchNodes(ctx)
	for ctx.Err() == nil {
		snap, err := c.store.Snapshot(ctx)
		if err != nil {
			c.log.Warn("snapshot failed", "err", err)
			sleep(ctx, time.Second)
			continue
		}
		c.round(ctx, snap)
		ch := c.store.Watch(ctx, snap.Revision+1)
		for ch != nil {
			select {
			case <-ctx.Done():
				return nil
			case ch2, ok := <-ch:
				if !ok {
					ch = nil
					break
				}
				if c.interesting(ch2) {
					// Drain what has queued up, then run one round over fresh state.
					drain(ch)
					snap, err := c.store.Snapshot(ctx)
					if err != nil {
						ch = nil
						break
					}
					c.round(ctx, snap)
				}
			case <-time.After(10 * time.Second):
				// Nodes appear and disappear outside the pod watch.
				if snap, err := c.store.Snapshot(ctx); err == nil {
					c.round(ctx, snap)
				}
			}
		}
	}
	return nil
}

func (c *Controller) interesting(ch store.Change) bool {
	switch {
	case ch.Kind == "pods" && ch.Pod != nil:
		return ch.Pod.Node == "" || ch.Pod.Spec.AutoRemove
	case ch.Kind == "status" && ch.Status != nil:
		return ch.Status.Phase == types.PhaseExited
	}
	return false
}

func drain(ch <-chan store.Change) {
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		default:
			return
		}
	}
}

func (c *Controller) round(ctx context.Context, snap store.Snapshot) {
	c.schedule(ctx, snap)
	c.autoRemove(ctx, snap)
}

func (c *Controller) schedule(ctx context.Context, snap store.Snapshot) {
	var pending, placed []types.Pod
	for _, p := range snap.Pods {
		if p.Node == "" {
			pending = append(pending, p)
		} else {
			placed = append(placed, p)
		}
	}
	if len(pending) == 0 {
		return
	}
	nodes, err := c.store.Nodes(ctx)
	if err != nil {
		c.log.Warn("list nodes", "err", err)
		return
	}
	plan := sched.Place(pending, nodes, placed)
	for _, p := range pending {
		node, reason := plan.Assign[p.ID], plan.Unschedulable[p.ID]
		if node == "" && reason == p.Unschedulable {
			continue
		}
		_, err := c.store.UpdatePod(ctx, p.Tenant, p.ID, func(cur *types.Pod) error {
			if cur.Node != "" {
				return errAlreadyPlaced
			}
			cur.Node, cur.Unschedulable = node, reason
			return nil
		})
		if err != nil && !errors.Is(err, errAlreadyPlaced) && !errors.Is(err, store.ErrNotFound) {
			c.log.Warn("commit placement", "pod", p.ID, "err", err)
		}
	}
}

var errAlreadyPlaced = errors.New("already placed")

// autoRemove deletes --rm pods whose container exited and will not restart.
func (c *Controller) autoRemove(ctx context.Context, snap store.Snapshot) {
	for _, p := range snap.Pods {
		if !p.Spec.AutoRemove {
			continue
		}
		st, ok := snap.Statuses[p.ID]
		if !ok || st.Phase != types.PhaseExited || st.Run < p.Desired.Run {
			continue
		}
		if err := c.store.DeletePod(ctx, p.Tenant, p.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
			c.log.Warn("auto-remove", "pod", p.ID, "err", err)
		}
	}
}

// watchNodes evicts the pods of nodes that went down, every second.
func (c *Controller) watchNodes(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.evictDown(ctx)
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
	snap, err := c.store.Snapshot(ctx)
	if err != nil {
		return
	}
	isDown := map[string]bool{}
	for _, n := range down {
		isDown[n] = true
		c.downSince[n] = now
	}
	for _, p := range snap.Pods {
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
			if st, ok := snap.Statuses[p.ID]; ok {
				c.orphanStatus(ctx, p, st, dead)
			}
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
