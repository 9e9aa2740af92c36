package main

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"sync"

	"github.com/macro-cloud/macro/net/dns"
	"github.com/macro-cloud/macro/net/router"
	"github.com/macro-cloud/macro/nodeproto"
	"github.com/macro-cloud/macro/types"
)

// netConfig are the flags of the node's network.
type netConfig struct {
	vpc         bool     // --vpc: wire pods into their tenants' VPCs
	egress      bool     // --egress: pods reach outside the VPC through the node
	dnsUpstream []string // --dns-upstream HOST:PORT; default: the host's resolv.conf
	meshImpl    string   // --mesh-impl auto|kernel|userspace
}

// tenantEgress is the tenants' egress setting as the router asks it: the
// node's --egress, and each tenant's own switch (types.Tenant.NoEgress),
// followed from the store (servers) or the node protocol (agents).
type tenantEgress struct {
	node bool
	mu   sync.RWMutex
	off  map[string]bool
	key  []byte // of the names in off, from an agent's stream (nodeproto.KeyedName)
}

func (e *tenantEgress) allowed(tenant string) bool {
	if !e.node {
		return false
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.key != nil {
		tenant = nodeproto.KeyedName(e.key, tenant)
	}
	return !e.off[tenant]
}

// apply takes in a message of the follow and says whether any tenant's
// egress changed.
func (e *tenantEgress) apply(m types.TenantNets) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	next := e.off
	if m.Sync {
		next = map[string]bool{}
		e.key = m.Key
	} else {
		next = maps.Clone(e.off)
	}
	for _, t := range m.Tenants {
		if t.NoEgress && !t.Gone {
			next[t.Name] = true
		} else {
			delete(next, t.Name)
		}
	}
	changed := !maps.Equal(next, e.off)
	e.off = next
	return changed
}

// openNetwork opens (or adopts) this node's router under DATA-DIR/net; nil
// with --vpc=false. tenants follows the tenants' network settings
// (store.FollowTenantNets, or the node protocol's on an agent): the router
// opens once the first full set has come, so that no pod ever runs with a
// setting its tenant does not have, and follows every change after.
func openNetwork(ctx context.Context, nc netConfig, tenants <-chan types.TenantNets, dataDir, cluster string, log *slog.Logger) (*router.Router, error) {
	if !nc.vpc {
		log.Info("pods have loopback only (--vpc=false)")
		return nil, nil
	}
	egress := &tenantEgress{node: nc.egress, off: map[string]bool{}}
	for first := false; !first; {
		select {
		case m, ok := <-tenants:
			if !ok {
				return nil, fmt.Errorf("node network: the tenants' settings: %w", context.Cause(ctx))
			}
			egress.apply(m)
			first = m.Sync
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
	upstream := nc.dnsUpstream
	if len(upstream) == 0 {
		data, _ := os.ReadFile("/etc/resolv.conf")
		upstream = dns.UpstreamsFromResolvConf(data)
	}
	r, err := router.Open(ctx, router.Config{
		Dir:      filepath.Join(dataDir, "net"),
		Cluster:  cluster,
		Egress:   egress.allowed,
		Upstream: upstream,
		MeshImpl: nc.meshImpl,
		Log:      log,
	})
	if err != nil {
		return nil, fmt.Errorf("node network (--vpc=false runs pods with loopback only): %w", err)
	}
	go func() {
		for m := range tenants {
			if !egress.apply(m) {
				continue
			}
			if err := r.Refresh(context.WithoutCancel(ctx)); err != nil {
				log.Warn("network rules after a tenant change", "err", err)
			}
		}
	}()
	return r, nil
}
