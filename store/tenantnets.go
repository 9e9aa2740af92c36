package store

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/macro-cloud/macro/types"
)

// FollowTenantNets delivers the tenants' network settings until ctx ends:
// first every tenant (Sync), then each change as it commits. After a lost
// watch (compaction, no leader) it starts again with a Sync, so a
// follower never misses a change.
func (s *Store) FollowTenantNets(ctx context.Context) <-chan types.TenantNets {
	out := make(chan types.TenantNets, 16)
	send := func(m types.TenantNets) bool {
		select {
		case out <- m:
			return true
		case <-ctx.Done():
			return false
		}
	}
	go func() {
		defer close(out)
		for ctx.Err() == nil {
			resp, err := s.cli.Get(ctx, prefix+"tenants/", clientv3.WithPrefix())
			if err != nil {
				s.log.Warn("read tenants to follow", "err", err)
				pause(ctx, time.Second)
				continue
			}
			sync := types.TenantNets{Sync: true, Tenants: []types.TenantNet{}}
			for _, kv := range resp.Kvs {
				if tn, ok := tenantNet(kv.Value); ok {
					sync.Tenants = append(sync.Tenants, tn)
				}
			}
			if !send(sync) {
				return
			}
			wch := s.cli.Watch(clientv3.WithRequireLeader(ctx), prefix+"tenants/", clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
			for wresp := range wch {
				if wresp.Err() != nil {
					break
				}
				var m types.TenantNets
				for _, ev := range wresp.Events {
					if ev.Type == clientv3.EventTypeDelete {
						name := strings.TrimPrefix(string(ev.Kv.Key), prefix+"tenants/")
						m.Tenants = append(m.Tenants, types.TenantNet{Name: name, Gone: true})
					} else if tn, ok := tenantNet(ev.Kv.Value); ok {
						m.Tenants = append(m.Tenants, tn)
					}
				}
				if len(m.Tenants) > 0 && !send(m) {
					return
				}
			}
			pause(ctx, 100*time.Millisecond)
		}
	}()
	return out
}

func tenantNet(data []byte) (types.TenantNet, bool) {
	var t types.Tenant
	if json.Unmarshal(data, &t) != nil || t.Name == "" {
		return types.TenantNet{}, false
	}
	return types.TenantNet{Name: t.Name, NoEgress: t.NoEgress}, true
}

func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
