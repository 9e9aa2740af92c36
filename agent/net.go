package agent

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/macro-cloud/macro/net/router"
	"github.com/macro-cloud/macro/types"
)

// Network gives pods their place in their tenant's VPC (net/router on a
// node). Attach is idempotent: it also re-checks a pod adopted after a
// restart. Without a Network, pods get a network namespace with loopback
// only, as with --network none.
type Network interface {
	Attach(ctx context.Context, pod types.Pod) (router.Attachment, error)
	// Update follows a change of the pod's names (docker rename, aliases)
	// and overlays (docker network connect/disconnect), live.
	Update(ctx context.Context, pod types.Pod) error
	// Stopped takes an exited pod's names out of DNS until its next Attach.
	Stopped(podID string)
	Detach(ctx context.Context, podID string) error
	// Reconcile removes the network of every pod not in keep.
	Reconcile(ctx context.Context, keep map[string]bool) error
}

// attachNetwork wires the pod into its VPC before its container starts;
// nil means a network namespace of its own with loopback only.
func (w *worker) attachNetwork(ctx context.Context, pod types.Pod) (*router.Attachment, error) {
	nw := w.a.cfg.Network
	if nw == nil || pod.Spec.Network == "none" {
		return nil, nil
	}
	att, err := nw.Attach(ctx, pod)
	if err != nil {
		w.log.Warn("attach network", "err", err)
		return nil, fmt.Errorf("network: %w", err)
	}
	// The next status report (running, on start or adoption) carries
	// them: a created pod shows no address yet, as in Docker, and a start
	// costs no extra store write.
	w.mu.Lock()
	w.status.IPv6 = att.IPv6.String()
	w.status.IPv4 = att.IPv4.String()
	w.mu.Unlock()
	return &att, nil
}

// networkChanged reports whether the pod's change from old to new is one
// for its network: its names or the networks it joined.
func networkChanged(old, new types.Pod) bool {
	return old.Name != new.Name || !slices.Equal(old.Spec.Aliases, new.Spec.Aliases) ||
		!maps.EqualFunc(old.Spec.Networks, new.Spec.Networks, func(a, b types.Endpoint) bool {
			return a.NetworkID == b.NetworkID && a.IPv4Address == b.IPv4Address && a.Subnet == b.Subnet
		})
}

// updateNetwork follows a change of names or networks (docker rename,
// network connect and disconnect) into the pod's network and DNS.
func (w *worker) updateNetwork(ctx context.Context, pod types.Pod) {
	if nw := w.a.cfg.Network; nw != nil && pod.Spec.Network != "none" {
		if err := nw.Update(ctx, pod); err != nil {
			w.log.Warn("update network", "err", err)
		}
	}
}

// networkStopped is called when the pod's container has exited.
func (w *worker) networkStopped() {
	if nw := w.a.cfg.Network; nw != nil {
		nw.Stopped(w.id)
	}
}

// detachNetwork removes the pod's network when the pod goes.
func (w *worker) detachNetwork(ctx context.Context) {
	if nw := w.a.cfg.Network; nw != nil {
		if err := nw.Detach(ctx, w.id); err != nil {
			w.log.Warn("detach network", "err", err)
		}
	}
}

// podResolvConf sends every query to the node's DNS server; the host's
// search domains and options stay, as Docker keeps them.
func podResolvConf(att router.Attachment) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "nameserver %s\n", att.Nameserver)
	if att.Nameserver4.IsValid() {
		fmt.Fprintf(&b, "nameserver %s\n", att.Nameserver4)
	}
	for _, line := range strings.Split(string(resolvConf()), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && (f[0] == "search" || f[0] == "domain" || f[0] == "options") {
			b.WriteString(line + "\n")
		}
	}
	return []byte(b.String())
}

// podHostsLines name the pod's own addresses in its /etc/hosts, where
// Docker writes the container's address.
func podHostsLines(att router.Attachment, names string) string {
	var b strings.Builder
	if att.IPv4.IsValid() {
		b.WriteString(att.IPv4.String() + "\t" + names + "\n")
	}
	b.WriteString(att.IPv6.String() + "\t" + names + "\n")
	return b.String()
}
