package e2e

import (
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"

	"github.com/macro-cloud/macro/internal/testenv"
	"github.com/macro-cloud/macro/internal/testimages"
)

// TestExternalEtcd: two servers keep their state in an etcd they do not
// run themselves (--etcd-endpoints; here a member this test starts). They
// share one cluster CA through the store: each server reaches the other's
// node, so a pod made through one is exec'd through the other, and a
// server that restarts finds its state and its CA again.
func TestExternalEtcd(t *testing.T) {
	hosts := testenv.NewHosts(t, 2)
	client := url.URL{Scheme: "http", Host: netip.AddrPortFrom(hosts.Self, uint16(testenv.FreePort(t))).String()}
	peer := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))}
	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir, cfg.LogLevel = "ext", t.TempDir(), "error"
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.InitialCluster = "ext=" + peer.String()
	etcd, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(etcd.Close)
	select {
	case <-etcd.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		t.Fatal("the external etcd did not become ready")
	}

	var servers []*testenv.Server
	for i, h := range hosts.List {
		servers = append(servers, testenv.StartServer(t, testenv.OnHost(h), testenv.WithArgs(
			"--node-name", fmt.Sprintf("s%d", i+1), "--api-addr", netip.AddrPortFrom(h.Addr, 7443).String(),
			"--etcd-endpoints", client.String(), "--cluster-name", "ext",
			"--ingress-http", "off", "--ingress-https", "off", "--vpc=false")))
	}
	s1, s2 := servers[0].Host(), servers[1].Host()
	testenv.MustDocker(t, s1, "load", "-i", testimages.Busybox(t))
	// Two replicas of a compose service: the scheduler spreads them, one
	// on each server's node.
	replica := []string{"-l", "com.docker.compose.project=ext", "-l", "com.docker.compose.service=w", "busybox", "sleep", "1d"}
	testenv.MustDocker(t, s1, append([]string{"run", "-d", "--name", "one"}, replica...)...)
	testenv.MustDocker(t, s2, append([]string{"run", "-d", "--name", "two"}, replica...)...)
	on := map[string]bool{}
	for _, pod := range []string{"one", "two"} {
		on[strings.TrimSpace(testenv.MustDocker(t, s1, "inspect", "-f", "{{.Node}}", pod).Stdout)] = true
	}
	if !on["s1"] || !on["s2"] {
		t.Errorf("the replicas run on %v, want s1 and s2", on)
	}
	for _, srv := range []string{s1, s2} {
		for _, pod := range []string{"one", "two"} {
			if got := strings.TrimSpace(testenv.MustDocker(t, srv, "exec", pod, "echo", "hi").Stdout); got != "hi" {
				t.Errorf("exec %s through %s: %q", pod, srv, got)
			}
		}
	}
	if names := strings.Fields(testenv.MustDocker(t, s2, "ps", "--format", "{{.Names}}").Stdout); len(names) != 2 {
		t.Errorf("docker ps through s2: %v", names)
	}
	// A restart finds the state and the same CA (its own copy, and the
	// store's agree).
	servers[1].Stop()
	servers[1].Start()
	if got := strings.TrimSpace(testenv.MustDocker(t, s2, "exec", "one", "echo", "again").Stdout); got != "again" {
		t.Errorf("exec through s2 after its restart: %q", got)
	}
	testenv.MustDocker(t, s1, "rm", "-f", "one", "two")
}
