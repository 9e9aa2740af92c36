package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/macro-cloud/macro/internal/atomicfile"
	"github.com/macro-cloud/macro/runtime"
	"github.com/macro-cloud/macro/types"
)

// worker converges one pod. Its goroutine owns status; other goroutines
// read a copy through snapshot().
type worker struct {
	a   *Agent
	id  string
	dir string
	rt  runtime.Runtime
	log *slog.Logger

	updates chan types.Pod // latest pod wins
	ops     chan op        // suspend and wake, run between convergences
	execs   atomic.Int32   // exec sessions running: a busy pod is not suspended
	dials   atomic.Int32   // connections another server's ingress holds (DialPod): likewise
	// dialLast is when one of those last carried a byte (unix ns).
	dialLast atomic.Int64
	// freezing is set from the moment a suspend decides to freeze the
	// pod until it is thawed: with execs and dials it makes a suspend and
	// an exec or dial that meet never leave the newcomer in a frozen pod
	// (see Agent.suspend and Agent.Wake).
	freezing atomic.Bool
	gone     chan struct{}
	goneOne  sync.Once

	reportMu sync.Mutex // serialises setStatus
	mu       sync.Mutex
	pod      types.Pod
	status   types.PodStatus
	prepared bool
	exitCh   chan struct{} // closed when the current container exits
}

func newWorker(a *Agent, p types.Pod, rt runtime.Runtime) *worker {
	w := &worker{
		a: a, id: p.ID, dir: a.podDir(p.ID), rt: rt,
		log:     a.log.With("pod", p.ID[:12]),
		updates: make(chan types.Pod, 1),
		ops:     make(chan op),
		gone:    make(chan struct{}),
		pod:     p,
	}
	w.status = types.PodStatus{ID: p.ID, Node: a.cfg.Node.Name, Phase: types.PhaseCreated}
	if data, err := os.ReadFile(filepath.Join(w.dir, "status.json")); err == nil {
		json.Unmarshal(data, &w.status)
	}
	return w
}

func (w *worker) push(p types.Pod) {
	for {
		select {
		case w.updates <- p:
			return
		default:
		}
		select {
		case <-w.updates:
		default:
		}
	}
}

func (w *worker) remove() { w.goneOne.Do(func() { close(w.gone) }) }

func (w *worker) snapshot() (types.Pod, types.PodStatus) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pod, w.status
}

func (w *worker) run(ctx context.Context) {
	if w.rt == nil {
		w.setStatus(ctx, func(st *types.PodStatus) {
			st.Error = fmt.Sprintf("unknown runtime %q", w.pod.Spec.Runtime)
		})
	} else {
		w.adopt(ctx)
	}
	var restartAt <-chan time.Time
	for {
		w.mu.Lock()
		exitCh := w.exitCh
		w.mu.Unlock()
		select {
		case <-ctx.Done():
			return // containers keep running; a new agent adopts them
		case <-w.gone:
			w.destroy(ctx)
			return
		case p := <-w.updates:
			w.mu.Lock()
			changed := networkChanged(w.pod, p)
			w.pod = p
			w.mu.Unlock()
			if changed {
				w.updateNetwork(ctx, p)
			}
			if w.rt != nil {
				w.converge(ctx)
			}
			if _, st := w.snapshot(); st.Phase != types.PhaseRestarting {
				restartAt = nil
			}
		case o := <-w.ops:
			w.runOp(ctx, o)
		case <-exitCh:
			restartAt = w.exited(ctx)
		case <-restartAt:
			restartAt = nil
			if _, st := w.snapshot(); st.Phase == types.PhaseRestarting {
				w.start(ctx, false)
			}
		}
	}
}

// adopt finds the pod's container after an agent restart.
func (w *worker) adopt(ctx context.Context) {
	st, err := w.rt.State(ctx, w.id)
	_, prev := w.snapshot()
	switch {
	case err == nil && (st.Status == runtime.StatusRunning || st.Status == runtime.StatusPaused):
		w.prepare(ctx) // remount if the host lost it; harmless otherwise
		w.watchExit()
		w.setStatus(ctx, func(s *types.PodStatus) {
			s.Pid = st.Pid
			s.Phase = types.PhaseRunning
			// Frozen by docker pause, or by auto-suspend (still running
			// for Docker), as the previous agent recorded.
			if st.Status == runtime.StatusPaused && !prev.Suspended() {
				s.Phase = types.PhasePaused
			}
			if st.Status != runtime.StatusPaused {
				thawed(s, 0)
			}
		})
	case err == nil && st.Status == runtime.StatusStopped && prev.Phase.Up():
		// Exited while no agent watched: handle like a live exit.
		w.mu.Lock()
		w.exitCh = closedChan()
		w.mu.Unlock()
	case err == nil && st.Status == runtime.StatusStopped && prev.Phase == types.PhaseRestarting:
		// The restart timer died with the previous agent.
		if w.shouldRestart(prev.ExitCode) {
			w.start(ctx, false)
		} else {
			w.setStatus(ctx, func(s *types.PodStatus) { s.Phase = types.PhaseExited })
		}
	case err == nil && st.Status == runtime.StatusStopped:
		// An exit the previous agent already recorded: counting it again
		// would publish a second die event and could restart the pod.
	case prev.Phase.Active():
		// The container vanished (host reboot): it died.
		w.setStatus(ctx, func(s *types.PodStatus) {
			s.Phase = types.PhaseExited
			s.ExitCode = 255
			s.FinishedAt = time.Now().UTC()
			s.Exits++
			s.Pid = 0
		})
		if w.shouldRestart(255) {
			w.start(ctx, false)
		}
	}
}

func closedChan() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

// converge moves the container toward the pod's desired state.
func (w *worker) converge(ctx context.Context) {
	pod, st := w.snapshot()
	d := pod.Desired
	running := st.Phase.Up()
	switch d.State {
	case types.PhaseRunning:
		if d.Run > st.Run {
			if running {
				w.stop(ctx, d.StopTimeout)
			}
			w.start(ctx, true)
			return
		}
		if st.Phase == types.PhasePaused {
			if err := w.rt.Resume(ctx, w.id); err != nil {
				w.log.Warn("resume", "err", err)
			}
			w.setStatus(ctx, func(s *types.PodStatus) { s.Phase = types.PhaseRunning })
		}
	case types.PhasePaused:
		if st.Phase == types.PhaseRunning {
			w.thawForStop(ctx) // docker pause of a suspended pod
			if err := w.rt.Pause(ctx, w.id); err != nil {
				w.log.Warn("pause", "err", err)
				w.setStatus(ctx, func(s *types.PodStatus) { s.Error = err.Error() })
				return
			}
			w.setStatus(ctx, func(s *types.PodStatus) { s.Phase = types.PhasePaused })
		}
	case types.PhaseExited:
		if running || st.Phase == types.PhaseRestarting {
			w.stop(ctx, d.StopTimeout)
		}
		if st.Run < d.Run {
			w.setStatus(ctx, func(s *types.PodStatus) { s.Run = d.Run })
		}
	case types.PhaseCreated:
		if !w.prepared {
			if err := w.prepare(ctx); err != nil {
				w.setStatus(ctx, func(s *types.PodStatus) { s.Error = err.Error() })
			}
		}
	}
}

// start runs the container. manual marks a start the tenant asked for (it
// answers DesiredState.Run); otherwise it is a restart by policy.
func (w *worker) start(ctx context.Context, manual bool) {
	pod, _ := w.snapshot()
	fail := func(err error) {
		w.log.Info("start failed", "err", err)
		w.setStatus(ctx, func(s *types.PodStatus) {
			s.Phase = types.PhaseExited
			s.Error = err.Error()
			s.ExitCode = exitCodeOf(err)
			s.Run = pod.Desired.Run
			s.FinishedAt = time.Now().UTC()
			s.Pid = 0
		})
	}
	// No container of the pod runs: its mounts are decided anew
	// (voldirect.go).
	if err := w.forgetDirect(); err != nil {
		fail(err)
		return
	}
	if err := w.prepare(ctx); err != nil {
		fail(err)
		return
	}
	// The previous container of this pod, if any, must be gone first.
	if err := w.rt.Delete(ctx, w.id); err != nil {
		w.log.Warn("delete previous container", "err", err)
	}
	pid, err := w.rt.Start(ctx, runtime.Container{
		ID:        w.id,
		Bundle:    w.dir,
		StateDir:  filepath.Join(w.dir, "runtime"),
		LogPath:   w.logPath(),
		Tty:       pod.Spec.Tty,
		OpenStdin: pod.Spec.OpenStdin,
		StdinOnce: pod.Spec.StdinOnce,
	})
	if err != nil {
		fail(err)
		return
	}
	w.watchExit()
	w.setStatus(ctx, func(s *types.PodStatus) {
		s.Phase = types.PhaseRunning
		s.Health = nil
		s.Pid = pid
		s.Error = ""
		s.OOMKilled = false
		s.ExitCode = 0
		s.StartedAt = time.Now().UTC()
		s.FinishedAt = time.Time{}
		s.Run = pod.Desired.Run
		if !manual {
			s.RestartCount++
		}
	})
}

// watchExit arranges for exitCh to close when the container exits.
func (w *worker) watchExit() {
	ch := make(chan struct{})
	w.mu.Lock()
	w.exitCh = ch
	w.mu.Unlock()
	go func() {
		defer close(ch)
		waitExit(w.rt, w.id, w.gone)
	}()
	pod, _ := w.snapshot()
	if hc := pod.Spec.Healthcheck; hc != nil && len(hc.Test) > 0 && hc.Test[0] != "NONE" {
		go w.healthLoop(*hc, ch)
	}
}

// exited records an exit and decides about a restart; it returns when to
// restart (nil: no restart).
func (w *worker) exited(ctx context.Context) <-chan time.Time {
	w.mu.Lock()
	w.exitCh = nil
	stopping := w.pod.Desired.State != types.PhaseRunning && w.pod.Desired.State != types.PhasePaused || w.pod.Desired.Killed
	w.mu.Unlock()
	st, err := w.rt.State(ctx, w.id)
	if err != nil {
		st = runtime.State{Status: runtime.StatusStopped, ExitCode: 255, FinishedAt: time.Now()}
	}
	if st.FinishedAt.IsZero() {
		st.FinishedAt = time.Now()
	}
	_, prev := w.snapshot()
	// A process that exits at once may be gone before start recorded the
	// time it started: it did not finish before it started.
	if st.FinishedAt.Before(prev.StartedAt) {
		st.FinishedAt = prev.StartedAt
	}
	w.networkStopped()
	w.setStatus(ctx, func(s *types.PodStatus) {
		thawed(s, 0)
		s.Phase = types.PhaseExited
		s.ExitCode = st.ExitCode
		s.OOMKilled = st.OOMKilled
		s.FinishedAt = st.FinishedAt.UTC()
		s.Pid = 0
		s.Exits++
		s.IPv6, s.IPv4 = "", "" // Docker shows no address for a stopped container
	})
	if stopping || !w.shouldRestart(st.ExitCode) {
		return nil
	}
	// Docker's back-off: 100ms doubling, reset after 10s of good running.
	delay := 100 * time.Millisecond
	if time.Since(prev.StartedAt) < 10*time.Second {
		for i := 0; i < prev.RestartCount && delay < time.Minute; i++ {
			delay *= 2
		}
	}
	w.setStatus(ctx, func(s *types.PodStatus) { s.Phase = types.PhaseRestarting })
	return time.After(delay)
}

func (w *worker) shouldRestart(exitCode int) bool {
	pod, st := w.snapshot()
	if pod.Desired.State != types.PhaseRunning || pod.Desired.Killed || pod.Spec.AutoRemove {
		return false
	}
	switch r := pod.Spec.Restart; r.Policy {
	case "always", "unless-stopped":
		return true
	case "on-failure":
		return exitCode != 0 && (r.MaxRetries <= 0 || st.RestartCount < r.MaxRetries)
	}
	return false
}

// stop sends the stop signal, waits for the timeout, then kills.
func (w *worker) stop(ctx context.Context, override *int) {
	pod, st := w.snapshot()
	if st.Phase == types.PhaseRestarting {
		w.setStatus(ctx, func(s *types.PodStatus) { s.Phase = types.PhaseExited })
		return
	}
	timeout := 10
	if pod.Spec.StopTimeout != nil {
		timeout = *pod.Spec.StopTimeout
	}
	if override != nil {
		timeout = *override
	}
	w.mu.Lock()
	exitCh := w.exitCh
	w.mu.Unlock()
	w.thawForStop(ctx)
	if st.Phase == types.PhasePaused {
		w.rt.Resume(ctx, w.id)
	}
	sig := stopSignal(pod)
	if timeout != 0 {
		if err := w.rt.Signal(ctx, w.id, sig); err != nil {
			w.log.Info("stop signal", "err", err)
		}
	}
	if exitCh == nil {
		return
	}
	var deadline <-chan time.Time
	if timeout >= 0 {
		deadline = time.After(time.Duration(timeout) * time.Second)
	}
	select {
	case <-exitCh:
	case <-deadline:
		w.rt.Signal(ctx, w.id, syscall.SIGKILL)
		select {
		case <-exitCh:
		case <-time.After(10 * time.Second):
			w.log.Warn("container did not die after SIGKILL")
		}
	}
	w.exited(ctx)
}

// destroy kills the container and removes everything the pod had here.
func (w *worker) destroy(ctx context.Context) {
	if w.rt != nil {
		w.rt.Signal(ctx, w.id, syscall.SIGKILL)
		if err := w.rt.Delete(ctx, w.id); err != nil {
			w.log.Warn("delete container", "err", err)
		}
	}
	w.detachNetwork(ctx)
	if err := w.unmountVolumes(); err != nil {
		// Removing the directory now would remove volume data through
		// a staging mount: leave it for a later destroy.
		w.log.Error("unmount volumes, keeping the pod directory", "err", err)
		return
	}
	if err := w.a.cfg.Images.Release(w.dir); err != nil {
		w.log.Warn("release rootfs", "err", err)
	}
	if err := os.RemoveAll(w.dir); err != nil {
		w.log.Warn("remove pod dir", "err", err)
	}
}

func (w *worker) setStatus(ctx context.Context, fn func(*types.PodStatus)) {
	// Reports leave in the order the changes were made.
	w.reportMu.Lock()
	defer w.reportMu.Unlock()
	w.mu.Lock()
	fn(&w.status)
	st := w.status
	tenant := w.pod.Tenant
	w.mu.Unlock()
	if data, err := json.Marshal(&st); err == nil {
		if err := writeFileAtomic(filepath.Join(w.dir, "status.json"), data); err != nil && !errors.Is(err, os.ErrNotExist) {
			w.log.Warn("save status", "err", err)
		}
	}
	if err := w.a.cfg.Server.ReportStatus(ctx, tenant, st); err != nil && ctx.Err() == nil {
		w.log.Warn("report status", "err", err)
	}
}

func (w *worker) logPath() string { return filepath.Join(w.dir, "container.log") }

func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o711); err != nil {
		return err
	}
	return atomicfile.Write(path, data, 0o600)
}

// waitExit blocks until the container has stopped and the runtime knows
// it, or until stop is closed. Runtimes that can wait without polling
// (runtime.Waiter) sleep until then, so idle containers cost no CPU.
func waitExit(rt runtime.Runtime, id string, stop <-chan struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	if wt, ok := rt.(runtime.Waiter); ok {
		if _, err := wt.Wait(ctx, id); err == nil || ctx.Err() != nil {
			return
		}
	}
	for i := 0; ; i++ {
		st, err := rt.State(ctx, id)
		if err != nil || st.Status == runtime.StatusStopped {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(pollDelay(i)):
		}
	}
}

func pollDelay(i int) time.Duration {
	if i < 20 {
		return 5 * time.Millisecond
	}
	if i < 100 {
		return 50 * time.Millisecond
	}
	return time.Second
}
