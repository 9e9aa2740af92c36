// Package control runs the leader loops of the cloud: it feeds pending pods
// to the pure scheduler (package sched) and commits its plans, removes
// auto-remove pods once they exited, and serves the server side of the node
// protocol through which agents learn their pods and report what they see.
package control

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/macro-cloud/macro/sched"
	"github.com/macro-cloud/macro/store"
	"github.com/macro-cloud/macro/types"
)

// Controller converges the stored desired state.
type Controller struct {
	store *store.Store
	log   *slog.Logger
}

// New returns a Controller over st.
func New(st *store.Store, log *slog.Logger) *Controller {
	if log == nil {
		log = slog.Default()
	}
	return &Controller{store: st, log: log.With("subsystem", "control")}
}

// Run watches the store until ctx ends: every change to a pod that may need
// scheduling or removal triggers a round. Safe to restart: a round reads all
// it needs from the store.
func (c *Controller) Run(ctx context.Context) error {
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

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
