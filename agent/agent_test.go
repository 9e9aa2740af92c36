package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/macro-cloud/macro/image"
	"github.com/macro-cloud/macro/runtime"
	"github.com/macro-cloud/macro/runtime/fake"
	"github.com/macro-cloud/macro/types"
)

// fakeServer is the node protocol in memory: tests push assignments and
// read back the statuses the agent reported.
type fakeServer struct {
	mu       sync.Mutex
	statuses map[string]types.PodStatus
	pods     chan types.Assignment
	changed  chan struct{}
}

func newFakeServer() *fakeServer {
	return &fakeServer{statuses: map[string]types.PodStatus{}, pods: make(chan types.Assignment, 16), changed: make(chan struct{}, 1)}
}

func (f *fakeServer) RegisterNode(ctx context.Context, n types.Node) error { return nil }

func (f *fakeServer) WatchPods(ctx context.Context, node string) <-chan types.Assignment {
	out := make(chan types.Assignment)
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case a := <-f.pods:
				select {
				case out <- a:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

func (f *fakeServer) ReportStatus(ctx context.Context, tenant string, st types.PodStatus) error {
	f.mu.Lock()
	f.statuses[st.ID] = st
	f.mu.Unlock()
	select {
	case f.changed <- struct{}{}:
	default:
	}
	return nil
}

func (f *fakeServer) status(id string) types.PodStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.statuses[id]
}

// waitStatus waits until the reported status of id satisfies cond.
func (f *fakeServer) waitStatus(t *testing.T, id, what string, cond func(types.PodStatus) bool) types.PodStatus {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		if st := f.status(id); cond(st) {
			return st
		}
		select {
		case <-f.changed:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatalf("pod %s never %s; last status %+v", id[:8], what, f.status(id))
		}
	}
}

// fakeImages prepares an empty rootfs directory.
type fakeImages struct{}

func (fakeImages) LookupID(ctx context.Context, ref string) (image.Image, error) {
	return image.Image{ID: ref}, nil
}

func (fakeImages) Prepare(ctx context.Context, imageID, dir string) (string, error) {
	root := filepath.Join(dir, "rootfs")
	return root, os.MkdirAll(root, 0o755)
}

func (fakeImages) Release(dir string) error { return nil }

type harness struct {
	t      *testing.T
	dir    string
	server *fakeServer
	rt     *fake.Runtime
	a      *Agent
	cancel context.CancelFunc
	done   chan struct{}
}

func newHarness(t *testing.T, rt *fake.Runtime, dir string) *harness {
	h := &harness{t: t, dir: dir, server: newFakeServer(), rt: rt, done: make(chan struct{})}
	a, err := New(Config{
		Node:           types.Node{Name: "n1"},
		DataDir:        dir,
		Server:         h.server,
		Images:         fakeImages{},
		Runtimes:       map[string]runtime.Runtime{"sandbox": rt},
		DefaultRuntime: "sandbox",
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.a, h.cancel = a, cancel
	go func() { a.Run(ctx); close(h.done) }()
	t.Cleanup(h.stop)
	return h
}

func (h *harness) stop() {
	h.cancel()
	<-h.done
}

func (h *harness) agent(t *testing.T) *Agent { return h.a }

func testPod(id string, restart types.Restart) types.Pod {
	id = id + strings.Repeat("0", 64-len(id))
	return types.Pod{
		ID: id, Name: "p", Tenant: "t", Node: "n1",
		Spec:    types.PodSpec{ImageID: "sha256:img", Cmd: []string{"sleep", "1"}, Runtime: "sandbox", Restart: restart},
		Desired: types.DesiredState{State: types.PhaseCreated},
	}
}

func running(p types.Pod) types.Pod {
	p.Desired = types.DesiredState{State: types.PhaseRunning, Run: p.Desired.Run + 1}
	return p
}

func TestStartStopRemove(t *testing.T) {
	h := newHarness(t, fake.New(), t.TempDir())
	p := testPod("a1", types.Restart{Policy: "no"})
	h.server.pods <- types.Assignment{Sync: true, Pods: []types.Pod{p}}
	p = running(p)
	h.server.pods <- types.Assignment{Pod: &p}
	st := h.server.waitStatus(t, p.ID, "running", func(s types.PodStatus) bool { return s.Phase == types.PhaseRunning && s.Run == 1 })
	if st.Pid == 0 || st.StartedAt.IsZero() {
		t.Fatalf("running status without pid or start time: %+v", st)
	}
	if _, err := os.Stat(filepath.Join(h.dir, "pods", p.ID, "config.json")); err != nil {
		t.Fatalf("no bundle written: %v", err)
	}
	p.Desired = types.DesiredState{State: types.PhaseExited, Run: 1}
	h.server.pods <- types.Assignment{Pod: &p}
	st = h.server.waitStatus(t, p.ID, "stopped", func(s types.PodStatus) bool { return s.Phase == types.PhaseExited })
	if st.ExitCode != 143 {
		t.Fatalf("stop: exit code %d, want 143 (SIGTERM)", st.ExitCode)
	}
	h.server.pods <- types.Assignment{Deleted: p.ID}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(h.dir, "pods", p.ID)); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("pod dir not removed after delete")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := h.rt.State(context.Background(), p.ID); err == nil {
		t.Fatal("runtime still knows the deleted pod")
	}
}

func TestRestartPolicies(t *testing.T) {
	tests := []struct {
		policy       types.Restart
		exitCode     int
		wantRestarts int
	}{
		{types.Restart{Policy: "no"}, 1, 0},
		{types.Restart{Policy: "on-failure", MaxRetries: 2}, 1, 2},
		{types.Restart{Policy: "on-failure"}, 0, 0},
		{types.Restart{Policy: "always"}, 0, 3},
		{types.Restart{Policy: "unless-stopped"}, 7, 3},
	}
	for _, tt := range tests {
		t.Run(tt.policy.Policy, func(t *testing.T) {
			rt := fake.New()
			h := newHarness(t, rt, t.TempDir())
			p := running(testPod("b2", tt.policy))
			h.server.pods <- types.Assignment{Sync: true, Pods: []types.Pod{p}}
			for i := 0; ; i++ {
				h.server.waitStatus(t, p.ID, "running", func(s types.PodStatus) bool {
					return s.Phase == types.PhaseRunning && s.RestartCount == i
				})
				if i == 3 {
					break // enough: always and unless-stopped go on forever
				}
				if err := rt.Exit(p.ID, tt.exitCode, false); err != nil {
					t.Fatal(err)
				}
				h.server.waitStatus(t, p.ID, "exited", func(s types.PodStatus) bool { return s.Exits == i+1 })
				if i == tt.wantRestarts {
					// No restart may follow.
					time.Sleep(300 * time.Millisecond)
					if st := h.server.status(p.ID); st.Phase != types.PhaseExited || st.RestartCount != tt.wantRestarts {
						t.Fatalf("after %d restarts: %+v", i, st)
					}
					return
				}
			}
		})
	}
}

func TestAgentRestartAdoptsRunningPods(t *testing.T) {
	rt := fake.New()
	dir := t.TempDir()
	h := newHarness(t, rt, dir)
	p := running(testPod("c3", types.Restart{Policy: "no"}))
	h.server.pods <- types.Assignment{Sync: true, Pods: []types.Pod{p}}
	first := h.server.waitStatus(t, p.ID, "running", func(s types.PodStatus) bool { return s.Phase == types.PhaseRunning })
	h.stop()

	// A new agent over the same data dir and runtime finds the container.
	h2 := newHarness(t, rt, dir)
	h2.server.pods <- types.Assignment{Sync: true, Pods: []types.Pod{p}}
	st := h2.server.waitStatus(t, p.ID, "adopted", func(s types.PodStatus) bool { return s.Phase == types.PhaseRunning })
	if st.Pid != first.Pid || st.RestartCount != 0 {
		t.Fatalf("adopted status %+v, first %+v", st, first)
	}
	// It also sees the container's exit.
	rt.Exit(p.ID, 4, true)
	st = h2.server.waitStatus(t, p.ID, "exited", func(s types.PodStatus) bool { return s.Phase == types.PhaseExited })
	if st.ExitCode != 4 || !st.OOMKilled {
		t.Fatalf("exit after adoption: %+v", st)
	}
}

func TestFilterPs(t *testing.T) {
	out := []byte("UID          PID    PPID  C STIME TTY          TIME CMD\nroot           1       0  0 10:00 ?        00:00:01 /sbin/init\nroot        4242       1  0 10:01 ?        00:00:00 sleep 60 now\n")
	titles, procs, err := filterPs(out, []int{4242})
	if err != nil || len(titles) != 8 || len(procs) != 1 || procs[0][1] != "4242" || procs[0][7] != "sleep 60 now" {
		t.Fatalf("titles %v procs %v err %v", titles, procs, err)
	}
}
