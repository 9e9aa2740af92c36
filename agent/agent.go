// Package agent is the node agent: it learns the pods assigned to its node
// through the node protocol, converges each of them (prepare the rootfs and
// the OCI bundle, start, stop, pause, restart per policy) with a runtime,
// and reports what it observes. It never imports the store, so an agent can
// run far from the control plane. It also serves the imperative operations
// the API carries to a node: logs, attach, exec, signals, top, stats, files.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	goruntime "runtime"
	"sync"
	"syscall"
	"time"

	"github.com/macro-cloud/macro/image"
	"github.com/macro-cloud/macro/runtime"
	"github.com/macro-cloud/macro/types"
	"github.com/macro-cloud/macro/volume"
)

// Server is the control plane as the agent sees it: the node protocol.
type Server interface {
	RegisterNode(ctx context.Context, n types.Node) error
	WatchPods(ctx context.Context, node string) <-chan types.Assignment
	ReportStatus(ctx context.Context, tenant string, st types.PodStatus) error
}

// Images is what the agent needs from the node's image store.
type Images interface {
	LookupID(ctx context.Context, id string) (image.Image, error)
	Prepare(ctx context.Context, imageID, dir string) (rootfs string, err error)
	Release(dir string) error
}

// Config wires an Agent.
type Config struct {
	Node           types.Node
	DataDir        string // pods live in DataDir/pods/<id>
	Server         Server
	Images         Images
	Runtimes       map[string]runtime.Runtime
	DefaultRuntime string
	// InitPath is a tini-compatible init on this node, run as PID 1 of
	// pods created with --init; empty means --init is refused.
	InitPath string
	// Network wires pods into their VPC; nil leaves them loopback only.
	Network Network
	// FetchImage brings an image this node's store lacks from the
	// servers (a remote node); nil: every image is local.
	FetchImage func(ctx context.Context, tenant, imageID string) error
	// Heartbeat is how often the node renews its lease (default 3 s:
	// well within the servers' node TTL).
	Heartbeat time.Duration
	// Volumes sizes the node's volume storage (the btrfs pool).
	Volumes volume.Config
	Log     *slog.Logger

	// VolumeTransport carries the FUSE mounts of nfs and gfs volumes
	// held by other nodes to the servers (volmount.go); nil, or a nil
	// answer, while there is none.
	VolumeTransport func() http.RoundTripper
	// VolumeShim, if set, is how a remote volume's FUSE mount gets a
	// process of its own that outlives the agent (volshim.go): the
	// command to run (the state directory is added as the last
	// argument) and the node's credentials to write for it, opaque
	// here; ok is false while there are none yet.
	VolumeShim func() (argv []string, creds []byte, ok bool)
}

// Agent runs the pods of one node.
type Agent struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	workers map[string]*worker
	// arrived is closed and replaced whenever a worker is added.
	arrived chan struct{}
	wg      sync.WaitGroup

	volOnce sync.Once
	vols    volume.Registry
	volfs   volfsMounts
	// accessMu makes one mount at a time for access (volaccess.go).
	accessMu sync.Mutex
	// direct counts requests of access that use a volume's directory
	// (voldirect.go).
	direct directAccess
}

// New returns an Agent; Run starts it.
func New(cfg Config) (*Agent, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if _, ok := cfg.Runtimes[cfg.DefaultRuntime]; !ok {
		return nil, fmt.Errorf("default runtime %q is not configured", cfg.DefaultRuntime)
	}
	if cfg.Node.Arch == "" {
		cfg.Node.Arch = goruntime.GOARCH
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 3 * time.Second
	}
	if cfg.Node.OS == "" {
		cfg.Node.OS = "linux"
	}
	if len(cfg.Node.Runtimes) == 0 {
		for name := range cfg.Runtimes {
			cfg.Node.Runtimes = append(cfg.Node.Runtimes, name)
		}
	}
	if err := os.MkdirAll(filepath.Join(cfg.DataDir, "pods"), 0o711); err != nil {
		return nil, err
	}
	return &Agent{cfg: cfg, log: cfg.Log.With("subsystem", "agent", "node", cfg.Node.Name), workers: map[string]*worker{}, arrived: make(chan struct{})}, nil
}

// Node is the node this agent registered.
func (a *Agent) Node() types.Node { return a.cfg.Node }

// Run registers the node and converges its pods until ctx ends. Pods keep
// running when Run returns: a later agent on the same data dir adopts them.
func (a *Agent) Run(ctx context.Context) error {
	for {
		err := a.cfg.Server.RegisterNode(ctx, a.cfg.Node)
		if err == nil {
			break
		}
		a.log.Warn("register node", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
	go a.heartbeat(ctx)
	go a.snapshotSchedules(ctx, time.Minute)
	go a.volumeReplication(ctx, 2*time.Second)
	for msg := range a.cfg.Server.WatchPods(ctx, a.cfg.Node.Name) {
		switch {
		case msg.Sync:
			seen := map[string]bool{}
			for _, p := range msg.Pods {
				seen[p.ID] = true
				a.update(ctx, p)
			}
			a.mu.Lock()
			for id, w := range a.workers {
				if !seen[id] {
					w.remove()
				}
			}
			a.mu.Unlock()
			a.collectOrphans(seen)
			if a.cfg.Network != nil {
				if err := a.cfg.Network.Reconcile(ctx, seen); err != nil {
					a.log.Warn("reconcile pod networks", "err", err)
				}
			}
		case msg.Pod != nil:
			a.update(ctx, *msg.Pod)
		case msg.Deleted != "":
			a.mu.Lock()
			if w := a.workers[msg.Deleted]; w != nil {
				w.remove()
			}
			a.mu.Unlock()
		}
	}
	a.wg.Wait()
	return nil
}

func (a *Agent) heartbeat(ctx context.Context) {
	t := time.NewTicker(a.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := a.cfg.Server.RegisterNode(ctx, a.cfg.Node); err != nil && ctx.Err() == nil {
				a.log.Warn("heartbeat", "err", err)
			}
		}
	}
}

func (a *Agent) update(ctx context.Context, p types.Pod) {
	a.mu.Lock()
	defer a.mu.Unlock()
	w := a.workers[p.ID]
	if w == nil {
		rt := a.cfg.Runtimes[p.Spec.Runtime]
		if p.Spec.Runtime == "" {
			rt = a.cfg.Runtimes[a.cfg.DefaultRuntime]
		}
		w = newWorker(a, p, rt)
		a.workers[p.ID] = w
		close(a.arrived)
		a.arrived = make(chan struct{})
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			w.run(ctx)
			a.mu.Lock()
			if a.workers[p.ID] == w {
				delete(a.workers, p.ID)
			}
			a.mu.Unlock()
		}()
	}
	w.push(p)
}

// collectOrphans removes pod directories of pods this node no longer has
// (deleted while the agent was down).
func (a *Agent) collectOrphans(keep map[string]bool) {
	entries, err := os.ReadDir(filepath.Join(a.cfg.DataDir, "pods"))
	if err != nil {
		return
	}
	for _, e := range entries {
		if keep[e.Name()] {
			continue
		}
		a.mu.Lock()
		_, busy := a.workers[e.Name()]
		a.mu.Unlock()
		if busy {
			continue
		}
		// Which runtime ran it is gone with the pod: ask them all.
		ctx := context.Background()
		for _, rt := range a.cfg.Runtimes {
			rt.Signal(ctx, e.Name(), syscall.SIGKILL)
			rt.Delete(ctx, e.Name())
		}
		w := &worker{a: a, id: e.Name(), dir: a.podDir(e.Name()), log: a.log.With("pod", e.Name())}
		w.destroy(ctx)
	}
	a.collectShimOrphans(keep)
}

func (a *Agent) podDir(id string) string { return filepath.Join(a.cfg.DataDir, "pods", id) }

// ErrNoSuchPod is returned by node operations for pods this node does not run.
var ErrNoSuchPod = errors.New("no such pod on this node")

// worker returns the live worker of a pod.
// awaitWorker is worker for a pod that may have just been placed here:
// the API answers a create before its node has the assignment, and a
// client may go on at once (docker cp into a created container). It waits
// up to 10 s for the worker to come.
func (a *Agent) awaitWorker(ctx context.Context, id string) (*worker, error) {
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		a.mu.Lock()
		w, arrived := a.workers[id], a.arrived
		a.mu.Unlock()
		if w != nil {
			return w, nil
		}
		select {
		case <-arrived:
		case <-deadline.C:
			return nil, ErrNoSuchPod
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (a *Agent) worker(id string) (*worker, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	w := a.workers[id]
	if w == nil {
		return nil, ErrNoSuchPod
	}
	return w, nil
}
