package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/macro-cloud/macro/net/dns"
	"github.com/macro-cloud/macro/net/router"
	"github.com/macro-cloud/macro/types"
)

// netConfig are the flags of the node's network.
type netConfig struct {
	vpc         bool     // --vpc: wire pods into their tenants' VPCs
	egress      bool     // --egress: pods reach outside the VPC through the node
	dnsUpstream []string // --dns-upstream HOST:PORT; default: the host's resolv.conf
}

// tenantEgress is the tenants' egress setting as the router asks it: the
// node's --egress, and each tenant's own switch (types.Tenant.NoEgress),
// read from the store at start and told of changes by the native API.
type tenantEgress struct {
	node bool
	mu   sync.RWMutex
	off  map[string]bool
}

func (e *tenantEgress) allowed(tenant string) bool {
	if !e.node {
		return false
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	return !e.off[tenant]
}

func (e *tenantEgress) set(t types.Tenant) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.off[t.Name] = t.NoEgress
}

// openNetwork opens (or adopts) this node's router under DATA-DIR/net; nil
// with --vpc=false. The returned func follows a tenant's changed settings.
// tenants lists the tenants whose settings the network follows (their
// egress); nil on a node without the store (a remote agent): every tenant
// then has the node's egress.
func openNetwork(ctx context.Context, nc netConfig, tenants func(context.Context) ([]types.Tenant, error), dataDir, cluster string, log *slog.Logger) (*router.Router, func(types.Tenant), error) {
	if !nc.vpc {
		log.Info("pods have loopback only (--vpc=false)")
		return nil, nil, nil
	}
	egress := &tenantEgress{node: nc.egress, off: map[string]bool{}}
	if tenants != nil {
		list, err := tenants(ctx)
		if err != nil {
			return nil, nil, err
		}
		for _, t := range list {
			egress.set(t)
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
		Log:      log,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("node network (--vpc=false runs pods with loopback only): %w", err)
	}
	changed := func(t types.Tenant) {
		egress.set(t)
		if err := r.Refresh(context.WithoutCancel(ctx)); err != nil {
			log.Warn("network rules after a tenant change", "tenant", t.Name, "err", err)
		}
	}
	return r, changed, nil
}
