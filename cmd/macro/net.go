package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/macro-cloud/macro/net/dns"
	"github.com/macro-cloud/macro/net/router"
)

// netConfig are the flags of the node's network.
type netConfig struct {
	vpc         bool     // --vpc: wire pods into their tenants' VPCs
	egress      bool     // --egress: pods reach outside the VPC through the node
	dnsUpstream []string // --dns-upstream HOST:PORT; default: the host's resolv.conf
}

// openNetwork opens (or adopts) this node's router under DATA-DIR/net; nil
// with --vpc=false.
func openNetwork(ctx context.Context, nc netConfig, dataDir, cluster string, log *slog.Logger) (*router.Router, error) {
	if !nc.vpc {
		log.Info("pods have loopback only (--vpc=false)")
		return nil, nil
	}
	upstream := nc.dnsUpstream
	if len(upstream) == 0 {
		data, _ := os.ReadFile("/etc/resolv.conf")
		upstream = dns.UpstreamsFromResolvConf(data)
	}
	r, err := router.Open(ctx, router.Config{
		Dir:      filepath.Join(dataDir, "net"),
		Cluster:  cluster,
		Egress:   func(string) bool { return nc.egress },
		Upstream: upstream,
		Log:      log,
	})
	if err != nil {
		return nil, fmt.Errorf("node network (--vpc=false runs pods with loopback only): %w", err)
	}
	return r, nil
}
