package docker

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/macro-cloud/macro/store"
	"github.com/macro-cloud/macro/types"
)

// Events derives Docker's event stream from changes in the store: a pod
// created, renamed or destroyed; a status that went running, paused or
// exited. Every server derives the same events from the same watch, so no
// extra writes are needed. The last events are kept for `--since`.
type Events struct {
	mu   sync.Mutex
	subs map[chan types.Event]struct{}
	ring []types.Event
	// rev is the store revision of the last change turned into events;
	// advanced is closed (and replaced) whenever it grows.
	rev      int64
	advanced chan struct{}
	// following is set while run turns the store's changes into events.
	following atomic.Bool
}

const eventHistory = 1024

func newEvents() *Events {
	return &Events{subs: map[chan types.Event]struct{}{}, advanced: make(chan struct{})}
}

// setRevision records that every change up to rev has been published.
func (ev *Events) setRevision(rev int64) {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	if rev > ev.rev {
		ev.rev = rev
		close(ev.advanced)
		ev.advanced = make(chan struct{})
	}
}

// catchUp waits until the changes up to store revision rev are published,
// for at most max: revisions of keys that make no events (node heartbeats)
// never show up in the pod watch, so the wait is bounded.
func (ev *Events) catchUp(ctx context.Context, rev int64, max time.Duration) {
	timeout := time.After(max)
	for {
		ev.mu.Lock()
		done, advanced := ev.rev >= rev, ev.advanced
		ev.mu.Unlock()
		if done {
			return
		}
		select {
		case <-advanced:
		case <-timeout:
			return
		case <-ctx.Done():
			return
		}
	}
}

// Publish sends an event to every subscriber.
func (ev *Events) Publish(e types.Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	ev.mu.Lock()
	defer ev.mu.Unlock()
	ev.ring = append(ev.ring, e)
	if len(ev.ring) > eventHistory {
		ev.ring = ev.ring[len(ev.ring)-eventHistory:]
	}
	for ch := range ev.subs {
		select {
		case ch <- e:
		default: // a slow reader loses events rather than stalling the cloud
		}
	}
}

func (ev *Events) subscribe() (<-chan types.Event, []types.Event, func()) {
	ch := make(chan types.Event, 256)
	ev.mu.Lock()
	ev.subs[ch] = struct{}{}
	past := append([]types.Event(nil), ev.ring...)
	ev.mu.Unlock()
	return ch, past, func() {
		ev.mu.Lock()
		delete(ev.subs, ch)
		ev.mu.Unlock()
	}
}

type podMemo struct {
	name, image string
	labels      map[string]string
	phase       types.PodPhase
	exits       int
}

func (ev *Events) run(ctx context.Context, st *store.Store, log *slog.Logger) {
	ev.following.Store(true)
	defer ev.following.Store(false)
	memo := map[string]*podMemo{}
	for ctx.Err() == nil {
		snap, err := st.Snapshot(ctx)
		if err != nil {
			time.Sleep(time.Second)
			continue
		}
		for _, p := range snap.Pods {
			s := snap.Statuses[p.ID]
			memo[p.ID] = &podMemo{name: p.Name, image: p.Spec.Image, labels: p.Spec.Labels, phase: s.Phase, exits: s.Exits}
		}
		ev.setRevision(snap.Revision)
		tenants := map[string]string{}
		for _, p := range snap.Pods {
			tenants[p.ID] = p.Tenant
		}
		for ch := range st.Watch(ctx, snap.Revision+1) {
			if ch.Kind == "events" {
				if ch.Event != nil {
					ev.Publish(*ch.Event)
				}
				ev.setRevision(ch.Revision)
				continue
			}
			m := memo[ch.ID]
			// Events carry the time the change happened where the change
			// records it, so that --since/--until select what dockerd would.
			at := time.Time{}
			pub := func(action string, extra map[string]string) {
				if m == nil {
					return
				}
				attrs := map[string]string{"name": m.name, "image": m.image}
				for k, v := range m.labels {
					attrs[k] = v
				}
				for k, v := range extra {
					attrs[k] = v
				}
				ev.Publish(types.Event{Tenant: ch.Tenant, Type: "container", Action: action, ID: ch.ID, Attrs: attrs, Time: at})
			}
			switch {
			case ch.Kind == "pods" && ch.Deleted:
				pub("destroy", nil)
				delete(memo, ch.ID)
			case ch.Kind == "pods" && ch.Pod != nil:
				p := ch.Pod
				if m == nil {
					m = &podMemo{name: p.Name, image: p.Spec.Image, labels: p.Spec.Labels, phase: types.PhaseCreated}
					memo[ch.ID] = m
					at = p.Created
					pub("create", nil)
					at = time.Time{}
				} else if m.name != p.Name {
					old := m.name
					m.name = p.Name
					pub("rename", map[string]string{"oldName": "/" + old})
				}
			case ch.Kind == "status" && ch.Status != nil && m != nil:
				s := ch.Status
				if s.Exits > m.exits {
					at = s.FinishedAt
					if s.OOMKilled {
						pub("oom", nil)
					}
					pub("die", map[string]string{"exitCode": strconv.Itoa(s.ExitCode)})
					at = time.Time{}
				}
				if s.Phase == types.PhaseRunning && m.phase != types.PhaseRunning && m.phase != types.PhasePaused {
					at = s.StartedAt
				}
				switch {
				case s.Phase == types.PhaseRunning && m.phase == types.PhasePaused:
					pub("unpause", nil)
				case s.Phase == types.PhaseRunning && m.phase != types.PhaseRunning:
					pub("start", nil)
				case s.Phase == types.PhasePaused && m.phase != types.PhasePaused:
					pub("pause", nil)
				}
				m.phase, m.exits = s.Phase, s.Exits
			}
			ev.setRevision(ch.Revision)
		}
	}
	_ = log
}

// containerEvent publishes an event that no store change shows (attach,
// kill), as dockerd logs it when it acts: with the container's name, image
// and labels.
func (s *Server) containerEvent(ctx context.Context, p types.Pod, action string, extra map[string]string) {
	attrs := map[string]string{"name": p.Name, "image": p.Spec.Image}
	for k, v := range p.Spec.Labels {
		attrs[k] = v
	}
	for k, v := range extra {
		attrs[k] = v
	}
	s.publish(ctx, types.Event{Tenant: p.Tenant, Type: "container", Action: action, ID: p.ID, Attrs: attrs})
}

// publish sends an event that no store change shows to every API server's
// `docker events` through the store (store.PublishEvent): it comes after
// the events of the changes already made (a create the watch has not
// turned into an event yet comes first), and this server's subscribers
// have it when publish returns. Should the store refuse it, this server's
// subscribers still get it.
func (s *Server) publish(ctx context.Context, e types.Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if s.store == nil || !s.events.following.Load() {
		// Nothing follows the store here (a server of images alone,
		// or not running yet): this server's subscribers only.
		s.events.Publish(e)
		return
	}
	rev, err := s.store.PublishEvent(context.WithoutCancel(ctx), e)
	if err != nil {
		s.log.Warn("event for other servers", "type", e.Type, "action", e.Action, "err", err)
		s.events.Publish(e)
		return
	}
	s.events.catchUp(ctx, rev, 2*time.Second)
}
