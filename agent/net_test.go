package agent

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/macro-cloud/macro/net/router"
	"github.com/macro-cloud/macro/runtime"
	"github.com/macro-cloud/macro/runtime/fake"
	"github.com/macro-cloud/macro/types"
)

// fakeNetwork records what the agent asks of the node's network.
type fakeNetwork struct {
	mu        sync.Mutex
	attached  map[string]int
	detached  []string
	renamed   []string
	stopped   []string
	reconcile []map[string]bool
}

func (f *fakeNetwork) Attach(ctx context.Context, pod types.Pod) (router.Attachment, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attached[pod.ID]++
	return router.Attachment{
		Netns: "/run/test/ns/" + pod.ID, IPv6: netip.MustParseAddr("fd00:1:2:3::42"), IPv4: netip.MustParseAddr("10.9.8.7"),
		Gateway4: netip.MustParseAddr("10.9.8.1"), Gateway6: router.Gateway6, Nameserver: router.DNSAddr,
	}, nil
}

func (f *fakeNetwork) Update(ctx context.Context, pod types.Pod) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.renamed = append(f.renamed, pod.Name)
	return nil
}

func (f *fakeNetwork) Stopped(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopped = append(f.stopped, id)
}

func (f *fakeNetwork) Detach(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.detached = append(f.detached, id)
	return nil
}

func (f *fakeNetwork) Reconcile(ctx context.Context, keep map[string]bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reconcile = append(f.reconcile, keep)
	return nil
}

func (f *fakeNetwork) snapshot() (attached map[string]int, detached, renamed []string, reconciles int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := map[string]int{}
	for k, v := range f.attached {
		a[k] = v
	}
	return a, append([]string(nil), f.detached...), append([]string(nil), f.renamed...), len(f.reconcile)
}

func TestNetworkHook(t *testing.T) {
	nw := &fakeNetwork{attached: map[string]int{}}
	srv := newFakeServer()
	dir := t.TempDir()
	a, err := New(Config{
		Node: types.Node{Name: "n1"}, DataDir: dir, Server: srv, Images: fakeImages{},
		Runtimes: map[string]runtime.Runtime{"sandbox": fake.New()}, DefaultRuntime: "sandbox", Network: nw,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	vpc := running(testPod("c1", types.Restart{}))
	none := running(testPod("c2", types.Restart{}))
	none.Spec.Network = "none"
	srv.pods <- types.Assignment{Sync: true, Pods: []types.Pod{vpc, none}}
	st := srv.waitStatus(t, vpc.ID, "running with addresses", func(s types.PodStatus) bool {
		return s.Phase == types.PhaseRunning && s.IPv6 != ""
	})
	srv.waitStatus(t, none.ID, "running", func(s types.PodStatus) bool { return s.Phase == types.PhaseRunning })
	if st.IPv6 != "fd00:1:2:3::42" || st.IPv4 != "10.9.8.7" {
		t.Errorf("status addresses %q %q", st.IPv6, st.IPv4)
	}

	netnsOf := func(id string) string {
		var spec specs.Spec
		data, err := os.ReadFile(filepath.Join(dir, "pods", id, "config.json"))
		if err != nil {
			t.Fatal(err)
		}
		json.Unmarshal(data, &spec)
		for _, ns := range spec.Linux.Namespaces {
			if ns.Type == specs.NetworkNamespace {
				return ns.Path
			}
		}
		t.Fatalf("no network namespace in the spec of %s", id)
		return ""
	}
	if p := netnsOf(vpc.ID); p != "/run/test/ns/"+vpc.ID {
		t.Errorf("vpc pod joins %q", p)
	}
	if p := netnsOf(none.ID); p != "" {
		t.Errorf("--network none pod joins %q, want a new namespace", p)
	}
	etc := func(id, name string) string {
		b, _ := os.ReadFile(filepath.Join(dir, "pods", id, "etc", name))
		return string(b)
	}
	if r := etc(vpc.ID, "resolv.conf"); !strings.HasPrefix(r, "nameserver "+router.DNSAddr.String()+"\n") {
		t.Errorf("resolv.conf %q", r)
	}
	if h := etc(vpc.ID, "hosts"); !strings.Contains(h, "10.9.8.7\t") || !strings.Contains(h, "fd00:1:2:3::42\t") || strings.Contains(h, "127.0.1.1") {
		t.Errorf("hosts %q", h)
	}
	if r := etc(none.ID, "resolv.conf"); strings.Contains(r, router.DNSAddr.String()) {
		t.Errorf("--network none pod's resolv.conf %q", r)
	}

	stopped := vpc
	stopped.Desired = types.DesiredState{State: types.PhaseExited, Run: vpc.Desired.Run}
	srv.pods <- types.Assignment{Pod: &stopped}
	srv.waitStatus(t, vpc.ID, "exited without addresses", func(s types.PodStatus) bool {
		return s.Phase == types.PhaseExited && s.IPv6 == "" && s.IPv4 == ""
	})
	nw.mu.Lock()
	if len(nw.stopped) != 1 || nw.stopped[0] != vpc.ID {
		t.Errorf("Stopped calls %v", nw.stopped)
	}
	nw.mu.Unlock()

	renamed := stopped
	renamed.Name = "other"
	srv.pods <- types.Assignment{Pod: &renamed}
	// The rename reaches the network before the removal is sent: the
	// worker takes only the latest of what queued up for it.
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, _, names, _ := nw.snapshot(); len(names) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the rename did not reach the network")
		}
		time.Sleep(10 * time.Millisecond)
	}
	srv.pods <- types.Assignment{Deleted: vpc.ID}
	deadline := time.Now().Add(10 * time.Second)
	for {
		attached, detached, names, reconciles := nw.snapshot()
		if len(detached) == 1 && detached[0] == vpc.ID {
			if attached[none.ID] != 0 || attached[vpc.ID] == 0 || reconciles != 1 || len(names) != 1 || names[0] != "other" {
				t.Fatalf("attached %v renamed %v reconciles %d", attached, names, reconciles)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the removed pod's network was not detached: %v", detached)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
