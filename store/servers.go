package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// The servers of a cluster say where their API port is, under
// /macro/servers/<name>, on a lease that lives as long as the server: a
// server's own node (the agent in its process) keeps a tunnel to every
// other server through it, as remote agents do.

func serverKey(name string) string { return prefix + "servers/" + name }

// AdvertiseServer records that server name answers at apiURL until ctx
// ends (and ttlSeconds after the server dies), recording it again when its
// lease is lost (a partition). It returns when ctx ends.
func (s *Store) AdvertiseServer(ctx context.Context, name, apiURL string, ttlSeconds int64) {
	for ctx.Err() == nil {
		if err := s.advertiseOnce(ctx, name, apiURL, ttlSeconds); err != nil && ctx.Err() == nil {
			s.log.Warn("advertise this server", "err", err)
		}
		t := time.NewTimer(time.Second)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
}

func (s *Store) advertiseOnce(ctx context.Context, name, apiURL string, ttlSeconds int64) error {
	lease, err := s.cli.Grant(ctx, ttlSeconds)
	if err != nil {
		return fmt.Errorf("server lease: %w", err)
	}
	if _, err := s.cli.Put(ctx, serverKey(name), apiURL, clientv3.WithLease(lease.ID)); err != nil {
		return fmt.Errorf("advertise server: %w", err)
	}
	ka, err := s.cli.KeepAlive(ctx, lease.ID)
	if err != nil {
		return fmt.Errorf("server lease: %w", err)
	}
	for range ka {
	}
	return nil
}

// Servers maps the name of every live server to its API URL.
func (s *Store) Servers(ctx context.Context) (map[string]string, error) {
	resp, err := s.cli.Get(ctx, prefix+"servers/", clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, kv := range resp.Kvs {
		out[strings.TrimPrefix(string(kv.Key), prefix+"servers/")] = string(kv.Value)
	}
	return out, nil
}
