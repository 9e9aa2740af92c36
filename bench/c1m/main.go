// Command c1m places a million pods onto thousands of nodes through the
// real control plane: the embedded etcd store, the State that follows it,
// the controller (the pure scheduler, batched placement commits) and the
// node API's per-node assignment streams. The nodes are simulated in this
// process: each holds a lease with heartbeats, follows its stream as an
// agent does, and reports every pod it is given as running (no container
// runs). It is Nomad's C1M on one 2-core machine; bench/c1m.sh runs it and
// bench/RESULTS.md has the figures.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/macro-cloud/macro/control"
	"github.com/macro-cloud/macro/store"
	"github.com/macro-cloud/macro/types"
)

func main() {
	pods := flag.Int("pods", 1_000_000, "pods to place")
	nodes := flag.Int("nodes", 5000, "simulated nodes")
	zones := flag.Int("zones", 5, "zones the nodes are spread over; every other pod asks for one (kr.zone)")
	writers := flag.Int("writers", 8, "concurrent clients creating pods (64 per transaction: a job of many replicas)")
	dir := flag.String("dir", "", "data directory (default: a temporary one, removed after)")
	timeout := flag.Duration("timeout", 15*time.Minute, "give up after this long")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile here")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "c1m:", err)
			os.Exit(1)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	if err := run(*pods, *nodes, *zones, *writers, *dir, *timeout); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "c1m:", err)
		os.Exit(1)
	}
}

func run(nPods, nNodes, nZones, writers int, dir string, timeout time.Duration) error {
	if dir == "" {
		d, err := os.MkdirTemp("", "macro-c1m-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	level := slog.LevelWarn
	if os.Getenv("C1M_DEBUG") != "" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	st, err := store.Open(ctx, store.Config{DataDir: dir, Log: log})
	if err != nil {
		return err
	}
	defer st.Close()

	const ttl = time.Minute
	state := control.NewState(st, log)
	go state.Run(ctx)
	api := control.NewNodeAPI(st, ttl).WithState(state)
	go control.New(st, log).WithNodeTTL(ttl).WithState(state).Run(ctx)

	fmt.Printf("c1m: %d pods onto %d simulated nodes in %d zones; %d CPUs, %s\n", nPods, nNodes, nZones, runtime.NumCPU(), runtime.Version())
	t0 := time.Now()
	names := make([]types.Node, nNodes)
	for i := range names {
		names[i] = types.Node{Name: fmt.Sprintf("sim-%05d", i), Arch: "amd64", OS: "linux", CPUs: 64, MemoryBytes: 64 << 30,
			Runtimes: []string{"sandbox"}, Labels: map[string]string{"zone": fmt.Sprintf("zone-%d", i%nZones)}}
	}
	if err := parallel(ctx, 32, nNodes, func(i int) error { return api.RegisterNode(ctx, names[i]) }); err != nil {
		return fmt.Errorf("register nodes: %w", err)
	}
	fmt.Printf("  %d nodes registered in %v\n", nNodes, time.Since(t0).Round(time.Millisecond))
	go heartbeats(ctx, api, names, ttl/4)

	// The simulated agents: each node reports every pod it is given as
	// running, one after another, as an agent's workers would.
	var assigned, running atomic.Int64
	for _, n := range names {
		go func() {
			seen := map[string]bool{}
			for a := range api.WatchPods(ctx, n.Name) {
				give := a.Pods
				if a.Pod != nil {
					give = []types.Pod{*a.Pod}
				}
				for i := range give {
					p := &give[i]
					if seen[p.ID] {
						continue
					}
					seen[p.ID] = true
					assigned.Add(1)
					st := types.PodStatus{ID: p.ID, Node: p.Node, Phase: types.PhaseRunning, Run: p.Desired.Run, StartedAt: time.Now().UTC()}
					if err := api.ReportStatus(ctx, p.Tenant, st); err == nil {
						running.Add(1)
					} else if ctx.Err() == nil {
						fmt.Fprintln(os.Stderr, "report:", err)
					}
				}
			}
		}()
	}

	// The pods: one tenant's jobs of 64 replicas, half of them in a zone.
	start := time.Now()
	var created atomic.Int64
	const batch = 64
	batches := (nPods + batch - 1) / batch
	go progress(ctx, start, nPods, &created, &assigned, &running)
	err = parallel(ctx, writers, batches, func(b int) error {
		n := min(batch, nPods-b*batch)
		ps := make([]*types.Pod, n)
		for i := range ps {
			k := b*batch + i
			p := &types.Pod{ID: randomID(), Name: fmt.Sprintf("c1m-%07d", k), Tenant: "bench", Namespace: "default", Created: time.Now().UTC(),
				Spec:    types.PodSpec{Image: "busybox", Runtime: "sandbox", Resources: types.Resources{MemoryBytes: 32 << 20, NanoCPUs: 1e7}, Labels: map[string]string{}},
				Desired: types.DesiredState{State: types.PhaseRunning, Run: 1}}
			if k%2 == 0 {
				p.Spec.Labels["kr.zone"] = fmt.Sprintf("zone-%d", k%nZones)
			}
			ps[i] = p
		}
		if err := st.CreatePods(ctx, ps); err != nil {
			return err
		}
		created.Add(int64(n))
		return nil
	})
	if err != nil {
		return fmt.Errorf("create pods: %w", err)
	}
	createdIn := time.Since(start)
	fmt.Printf("  created %d pods in %v (%.0f/s)\n", nPods, createdIn.Round(time.Millisecond), float64(nPods)/createdIn.Seconds())
	placedIn := waitCount(ctx, &assigned, nPods, start)
	fmt.Printf("  all %d placed and streamed to their nodes after %v (%.0f placements/s)\n", nPods, placedIn.Round(time.Millisecond), float64(nPods)/placedIn.Seconds())
	runningIn := waitCount(ctx, &running, nPods, start)
	fmt.Printf("  all %d reported running after %v\n", nPods, runningIn.Round(time.Millisecond))
	if ctx.Err() != nil {
		return fmt.Errorf("timed out: %d created, %d placed, %d running", created.Load(), assigned.Load(), running.Load())
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Printf("  Go heap in use at the end (store, State, simulated nodes): %d MiB\n", ms.HeapInuse>>20)
	if p := os.Getenv("C1M_HEAPPROFILE"); p != "" {
		if f, err := os.Create(p); err == nil {
			pprof.WriteHeapProfile(f)
			f.Close()
		}
	}
	return nil
}

func waitCount(ctx context.Context, c *atomic.Int64, n int, start time.Time) time.Duration {
	for c.Load() < int64(n) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

func progress(ctx context.Context, start time.Time, n int, created, assigned, running *atomic.Int64) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fmt.Printf("  %6.0fs: created %d, placed %d, running %d of %d\n", time.Since(start).Seconds(), created.Load(), assigned.Load(), running.Load(), n)
			if running.Load() >= int64(n) {
				return
			}
		}
	}
}

func heartbeats(ctx context.Context, api *control.NodeAPI, nodes []types.Node, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			parallel(ctx, 16, len(nodes), func(i int) error { return api.RegisterNode(ctx, nodes[i]) })
		}
	}
}

// parallel runs fn(0..n-1) on k goroutines; the first error stops it.
func parallel(ctx context.Context, k, n int, fn func(i int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for range k {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { first = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

func randomID() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}
