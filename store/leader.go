package store

// Leader election among the servers of a cluster, on etcd's election
// recipe: each candidate holds a key under /macro/leader/<election>/ on a
// lease of its session; the oldest key leads. A leader whose session ends
// (it died, or it lost the cluster for longer than the TTL) loses its key
// and the next candidate leads.

import (
	"context"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

func electionKey(election string) string { return prefix + "leader/" + election + "/" }

// Lead blocks until the candidate id leads election, or ctx ends. The
// context it returns is cancelled when the leadership is lost (the
// session's lease could not be kept alive for ttl) or ctx ends; resign
// gives the leadership up at once. ttl is rounded up to whole seconds.
func (s *Store) Lead(ctx context.Context, election, id string, ttl time.Duration) (lead context.Context, resign func(), err error) {
	secs := int((ttl + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	sess, err := concurrency.NewSession(s.cli, concurrency.WithTTL(secs), concurrency.WithContext(ctx))
	if err != nil {
		return nil, nil, fmt.Errorf("election session: %w", err)
	}
	e := concurrency.NewElection(sess, electionKey(election))
	if err := e.Campaign(ctx, id); err != nil {
		sess.Close()
		return nil, nil, fmt.Errorf("campaign: %w", err)
	}
	// Campaign returns once the keys before ours are gone, even when our
	// own went with a lease that expired meanwhile: lead only while our
	// key is there, on our session's lease.
	resp, err := s.cli.Get(ctx, e.Key())
	if err != nil || len(resp.Kvs) == 0 || clientv3.LeaseID(resp.Kvs[0].Lease) != sess.Lease() {
		sess.Close()
		if err == nil {
			err = errors.New("the session expired while campaigning")
		}
		return nil, nil, fmt.Errorf("campaign: %w", err)
	}
	lead, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-sess.Done():
			s.log.Warn("leadership lost: the session's lease expired", "election", election, "id", id)
		case <-lead.Done():
		}
		cancel()
	}()
	resign = func() {
		cancel()
		rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer rcancel()
		e.Resign(rctx)
		sess.Close()
	}
	return lead, resign, nil
}

// Leader returns the id of the candidate that leads election;
// ErrNotFound when nobody does.
func (s *Store) Leader(ctx context.Context, election string) (string, error) {
	resp, err := s.cli.Get(ctx, electionKey(election), clientv3.WithFirstCreate()...)
	if err != nil {
		return "", err
	}
	if len(resp.Kvs) == 0 {
		return "", ErrNotFound
	}
	return string(resp.Kvs[0].Value), nil
}
