package agent

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/macro-cloud/macro/runtime"
	"github.com/macro-cloud/macro/runtime/fake"
	"github.com/macro-cloud/macro/types"
)

// dialNetwork is a fake network that can reach its pods: it records what
// is dialled and answers with one end of a pipe.
type dialNetwork struct {
	*fakeNetwork
	mu     sync.Mutex
	dialed []string
}

func (d *dialNetwork) DialContext(_ context.Context, _, addr string) (net.Conn, error) {
	d.mu.Lock()
	d.dialed = append(d.dialed, addr)
	d.mu.Unlock()
	a, b := net.Pipe()
	go func() { b.Write([]byte("hi")); b.Close() }()
	return a, nil
}

// TestDialPod: a pod is dialled at its own address, from the node's
// network, only for its own tenant; while a dialled connection is open the
// pod is not suspended.
func TestDialPod(t *testing.T) {
	nw := &dialNetwork{fakeNetwork: &fakeNetwork{attached: map[string]int{}}}
	srv := newFakeServer()
	a, err := New(Config{
		Node: types.Node{Name: "n1"}, DataDir: t.TempDir(), Server: srv, Images: fakeImages{},
		Runtimes: map[string]runtime.Runtime{"sandbox": fake.New()}, DefaultRuntime: "sandbox", Network: nw,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	p := running(testPod("d1", types.Restart{}))
	p.Spec.Cmd = []string{"sleep", "600"}
	srv.pods <- types.Assignment{Sync: true, Pods: []types.Pod{p}}
	srv.waitStatus(t, p.ID, "running", func(s types.PodStatus) bool { return s.Phase == types.PhaseRunning && s.IPv6 != "" })

	for _, tc := range []struct {
		tenant, id string
		port       int
		want       error
	}{
		{"other", p.ID, 8080, ErrNoSuchPod},
		{"t", "nope", 8080, ErrNoSuchPod},
		{"t", p.ID, 0, nil},
		{"t", p.ID, 70000, nil},
	} {
		if _, err := a.DialPod(ctx, tc.tenant, tc.id, tc.port); err == nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("dial %s/%s:%d: %v, want %v", tc.tenant, tc.id, tc.port, err, tc.want)
		}
	}
	nw.mu.Lock()
	if len(nw.dialed) != 0 {
		t.Fatalf("refused dials reached the network: %v", nw.dialed)
	}
	nw.mu.Unlock()

	c, err := a.DialPod(ctx, "t", p.ID, 8080)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2)
	if _, err := c.Read(buf); err != nil || string(buf) != "hi" {
		t.Fatalf("read %q %v", buf, err)
	}
	nw.mu.Lock()
	if len(nw.dialed) != 1 || nw.dialed[0] != "[fd00:1:2:3::42]:8080" {
		t.Fatalf("dialled %v", nw.dialed)
	}
	nw.mu.Unlock()
	if err := a.Suspend(ctx, p.ID); !errors.Is(err, ErrBusy) {
		t.Fatalf("suspend with a dialled connection open: %v", err)
	}
	before := time.Now().Add(-time.Minute)
	c.Close()
	c.Close() // twice counts once
	// Auto-suspend asks for no traffic since the idle rule's start.
	if err := a.SuspendIdle(ctx, p.ID, before); !errors.Is(err, ErrBusy) {
		t.Fatalf("suspend-idle with traffic since: %v", err)
	}
	if err := a.SuspendIdle(ctx, p.ID, time.Now().Add(time.Millisecond)); err != nil {
		t.Fatalf("suspend-idle once it closed and was quiet: %v", err)
	}
}
