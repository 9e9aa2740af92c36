package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/macro-cloud/macro/types"
)

// Events that no change of a pod shows (a network or volume created, an
// image tagged, a container attached or killed) are published through the
// store, so that every API server's `docker events` has them, in order
// with the events derived from pod changes: each is a key under
// /macro/events/ that the servers' watches deliver (Change.Event). The key
// is only the carrier; it lives on a shared lease and expires after
// eventTTL.
const eventTTL = 10 * time.Minute

// eventLease is the lease events are written with, renewed by taking a new
// one when half of its life has passed.
type eventLease struct {
	mu      sync.Mutex
	id      clientv3.LeaseID
	granted time.Time
}

func (s *Store) eventLeaseID(ctx context.Context, fresh bool) (clientv3.LeaseID, error) {
	s.events.mu.Lock()
	defer s.events.mu.Unlock()
	if !fresh && s.events.id != 0 && time.Since(s.events.granted) < eventTTL/2 {
		return s.events.id, nil
	}
	resp, err := s.cli.Grant(ctx, int64(eventTTL/time.Second))
	if err != nil {
		return 0, err
	}
	s.events.id, s.events.granted = resp.ID, time.Now()
	return resp.ID, nil
}

// PublishEvent stores e for every server's watch and returns the revision
// it was written at. The caller sets e.Time (the edge chooses times).
func (s *Store) PublishEvent(ctx context.Context, e types.Event) (int64, error) {
	if err := keyPart("tenant", e.Tenant); err != nil {
		return 0, fmt.Errorf("publish event: %w", err)
	}
	data, err := json.Marshal(e)
	if err != nil {
		return 0, err
	}
	var id [8]byte
	rand.Read(id[:])
	key := prefix + "events/" + e.Tenant + "/" + hex.EncodeToString(id[:])
	for _, fresh := range []bool{false, true} {
		var lease clientv3.LeaseID
		if lease, err = s.eventLeaseID(ctx, fresh); err != nil {
			break
		}
		var resp *clientv3.PutResponse
		if resp, err = s.cli.Put(ctx, key, string(data), clientv3.WithLease(lease)); err == nil {
			return resp.Header.Revision, nil
		}
		// The lease may be gone (revoked, or a member restored): one new one.
	}
	return 0, fmt.Errorf("publish event: %w", err)
}
