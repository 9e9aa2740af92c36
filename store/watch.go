package store

import (
	"context"
	"encoding/json"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/macro-cloud/macro/types"
)

// Change is one change to a pod or its status, or a published event
// (PublishEvent), as a watch delivers it.
type Change struct {
	Revision int64
	Tenant   string
	ID       string
	Deleted  bool
	// Exactly one of Pod, Status or Event is set for a put; for a delete,
	// Kind tells. Events are never deleted (their expiry is not a change).
	Kind   string // "pods", "status" or "events"
	Pod    *types.Pod
	Status *types.PodStatus
	Event  *types.Event
}

// Snapshot reads every pod and status at one revision, so that a watch from
// Revision+1 misses nothing.
type Snapshot struct {
	Revision int64
	Pods     []types.Pod
	Statuses map[string]types.PodStatus
}

// Snapshot returns all pods and statuses of all tenants at one revision.
func (s *Store) Snapshot(ctx context.Context) (Snapshot, error) {
	resp, err := s.cli.Get(ctx, prefix+"pods/", clientv3.WithPrefix())
	if err != nil {
		return Snapshot{}, err
	}
	rev := resp.Header.Revision
	snap := Snapshot{Revision: rev, Statuses: map[string]types.PodStatus{}}
	for _, kv := range resp.Kvs {
		if p, err := decodePod(kv.Value, kv.ModRevision); err == nil {
			snap.Pods = append(snap.Pods, p)
		}
	}
	sresp, err := s.cli.Get(ctx, prefix+"status/", clientv3.WithPrefix(), clientv3.WithRev(rev))
	if err != nil {
		return Snapshot{}, err
	}
	for _, kv := range sresp.Kvs {
		var st types.PodStatus
		if json.Unmarshal(kv.Value, &st) == nil {
			snap.Statuses[st.ID] = st
		}
	}
	return snap, nil
}

// Watch delivers every change to pods and statuses, and every published
// event, after revision from
// (0: from now) until ctx ends. The channel closes when the watch ends; a
// consumer that needs to go on takes a new Snapshot and watches again.
func (s *Store) Watch(ctx context.Context, from int64) <-chan Change {
	out := make(chan Change, 256)
	opts := []clientv3.OpOption{clientv3.WithPrefix()}
	if from > 0 {
		opts = append(opts, clientv3.WithRev(from))
	}
	wch := s.cli.Watch(clientv3.WithRequireLeader(ctx), prefix, opts...)
	go func() {
		defer close(out)
		for resp := range wch {
			if resp.Err() != nil {
				return
			}
			for _, ev := range resp.Events {
				c, ok := decodeChange(ev)
				if !ok {
					continue
				}
				select {
				case out <- c:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

func decodeChange(ev *clientv3.Event) (Change, bool) {
	// /macro/<kind>/<tenant>/<id>
	parts := strings.SplitN(strings.TrimPrefix(string(ev.Kv.Key), prefix), "/", 3)
	if len(parts) != 3 || (parts[0] != "pods" && parts[0] != "status" && parts[0] != "events") {
		return Change{}, false
	}
	c := Change{Revision: ev.Kv.ModRevision, Kind: parts[0], Tenant: parts[1], ID: parts[2]}
	if ev.Type == clientv3.EventTypeDelete {
		c.Deleted = true
		return c, parts[0] != "events"
	}
	switch parts[0] {
	case "pods":
		p, err := decodePod(ev.Kv.Value, ev.Kv.ModRevision)
		if err != nil {
			return c, false
		}
		c.Pod = &p
	case "status":
		var st types.PodStatus
		if json.Unmarshal(ev.Kv.Value, &st) != nil {
			return c, false
		}
		c.Status = &st
	case "events":
		var e types.Event
		if json.Unmarshal(ev.Kv.Value, &e) != nil {
			return c, false
		}
		c.Event = &e
	}
	return c, true
}
