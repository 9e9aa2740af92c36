package agent

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/macro-cloud/macro/net/router"
	"github.com/macro-cloud/macro/runtime/ocispec"
	"github.com/macro-cloud/macro/types"
)

// Network gives pods their place in their tenant's VPC (net/router on a
// node). Attach is idempotent: it also re-checks a pod adopted after a
// restart. Without a Network, pods get a network namespace with loopback
// only, as with --network none.
type Network interface {
	Attach(ctx context.Context, pod types.Pod) (router.Attachment, error)
	// Rename updates the names the pod answers to in DNS.
	Rename(pod types.Pod)
	Detach(ctx context.Context, podID string) error
	// Reconcile removes the network of every pod not in keep.
	Reconcile(ctx context.Context, keep map[string]bool) error
}

// attachNetwork wires the pod into its VPC before its container starts and
// points its /etc files at it; it returns the network namespace for the
// OCI spec ("" for a new, empty one).
func (w *worker) attachNetwork(ctx context.Context, pod types.Pod, etc ocispec.EtcFiles) (string, error) {
	nw := w.a.cfg.Network
	if nw == nil || pod.Spec.Network == "none" {
		return "", nil
	}
	att, err := nw.Attach(ctx, pod)
	if err != nil {
		return "", fmt.Errorf("network: %w", err)
	}
	if err := os.WriteFile(etc.ResolvConf, podResolvConf(att), 0o644); err != nil {
		return "", err
	}
	if err := rewriteHosts(etc.Hosts, att); err != nil {
		return "", err
	}
	if _, st := w.snapshot(); st.IPv6 != att.IPv6.String() || st.IPv4 != att.IPv4.String() {
		w.setStatus(ctx, func(s *types.PodStatus) {
			s.IPv6 = att.IPv6.String()
			s.IPv4 = att.IPv4.String()
		})
	}
	return att.Netns, nil
}

// renameNetwork follows docker rename into DNS.
func (w *worker) renameNetwork(pod types.Pod) {
	if nw := w.a.cfg.Network; nw != nil && pod.Spec.Network != "none" {
		nw.Rename(pod)
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
	for _, line := range strings.Split(string(resolvConf()), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && (f[0] == "search" || f[0] == "domain" || f[0] == "options") {
			b.WriteString(line + "\n")
		}
	}
	return []byte(b.String())
}

// rewriteHosts names the pod's own addresses where writeEtcFiles put
// 127.0.1.1 (Docker writes the container's address there).
func rewriteHosts(path string, att router.Attachment) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var out []string
	for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		if names, ok := strings.CutPrefix(line, "127.0.1.1\t"); ok {
			if att.IPv4.IsValid() {
				out = append(out, att.IPv4.String()+"\t"+names)
			}
			out = append(out, att.IPv6.String()+"\t"+names)
			continue
		}
		out = append(out, line)
	}
	return os.WriteFile(path, []byte(strings.Join(out, "\n")+"\n"), 0o644)
}
