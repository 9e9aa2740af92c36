package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/macro-cloud/macro/runtime"
	"github.com/macro-cloud/macro/types"
)

// ErrBusy is returned by Suspend for a pod someone is working in.
var ErrBusy = errors.New("pod is busy")

// op is work for a worker's goroutine that a caller waits for: do runs
// and answers the caller; then, after the caller is on its way, report
// (if set) records the outcome.
type op struct {
	do   func(ctx context.Context) (report func(ctx context.Context), err error)
	done chan error
}

func (w *worker) runOp(ctx context.Context, o op) {
	report, err := o.do(ctx)
	o.done <- err
	if report != nil {
		report(ctx)
	}
}

// call runs do in w's goroutine and returns its error.
func (w *worker) call(ctx context.Context, do func(ctx context.Context) (func(ctx context.Context), error)) error {
	o := op{do: do, done: make(chan error, 1)}
	select {
	case w.ops <- o:
	case <-w.gone:
		return ErrNoSuchPod
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-o.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Suspend freezes a running pod for being idle: its memory stays, it gets
// no CPU, and for Docker it still runs. Suspending a suspended pod does
// nothing; a pod that is not running cannot be suspended.
func (a *Agent) Suspend(ctx context.Context, id string) error {
	return a.suspend(ctx, id, time.Time{})
}

// SuspendIdle suspends a pod as Suspend does, for auto-suspend: only if
// no connection of another server's ingress (DialPod) is open and none
// carried a byte since since (ErrBusy otherwise). The server's own
// ingress traffic it knows itself; this is that of the others.
func (a *Agent) SuspendIdle(ctx context.Context, id string, since time.Time) error {
	return a.suspend(ctx, id, since)
}

func (a *Agent) suspend(ctx context.Context, id string, since time.Time) error {
	w, err := a.worker(id)
	if err != nil {
		return err
	}
	return w.call(ctx, func(ctx context.Context) (func(context.Context), error) {
		_, st := w.snapshot()
		if st.Suspended() {
			return nil, nil
		}
		if st.Phase != types.PhaseRunning {
			return nil, fmt.Errorf("suspend: %w (%s)", runtime.ErrNotRunning, st.Phase)
		}
		// freezing first, the counters after: an exec or dial that counts
		// itself too late for the checks below sees freezing in Wake and
		// waits for this op, then thaws (atomics are sequentially
		// consistent).
		w.freezing.Store(true)
		busy := func(err error) (func(context.Context), error) {
			w.freezing.Store(false)
			return nil, err
		}
		if n := w.execs.Load(); n > 0 {
			return busy(fmt.Errorf("suspend: %w: %d exec sessions are running", ErrBusy, n))
		}
		if n := w.dials.Load(); n > 0 {
			return busy(fmt.Errorf("suspend: %w: %d ingress connections of other servers are open", ErrBusy, n))
		}
		if !since.IsZero() && w.dialLast.Load() >= since.UnixNano() {
			return busy(fmt.Errorf("suspend: %w: ingress traffic of other servers since %s", ErrBusy, since.Format(time.RFC3339)))
		}
		if err := w.rt.Pause(ctx, w.id); err != nil {
			return busy(fmt.Errorf("suspend: %w", err))
		}
		now := time.Now().UTC()
		return func(ctx context.Context) {
			w.setStatus(ctx, func(s *types.PodStatus) {
				s.Suspend.Suspended = true
				s.Suspend.Since = now
			})
		}, nil
	})
}

// Wake thaws a suspended pod and returns as soon as it runs; the status
// report follows. Waking a pod that is not suspended does nothing.
func (a *Agent) Wake(ctx context.Context, id string) error {
	w, err := a.worker(id)
	if err != nil {
		return err
	}
	// Most callers (exec, signals) find the pod awake; they must not wait
	// behind the worker's goroutine, which may be in a long stop. A pod a
	// suspend is freezing (its status may not say so yet) is not awake.
	if _, st := w.snapshot(); !st.Suspended() && !w.freezing.Load() {
		return nil
	}
	return w.call(ctx, func(ctx context.Context) (func(context.Context), error) {
		_, st := w.snapshot()
		if !st.Suspended() {
			return nil, nil
		}
		took, err := w.thaw(ctx)
		if err != nil {
			return nil, fmt.Errorf("wake: %w", err)
		}
		return func(ctx context.Context) {
			w.setStatus(ctx, func(s *types.PodStatus) { thawed(s, took) })
		}, nil
	})
}

// thawed records the end of a suspension in s.
func thawed(s *types.PodStatus, took time.Duration) {
	if !s.Suspended() {
		return
	}
	s.Suspend.Suspended = false
	s.Suspend.Wakes++
	s.Suspend.Woke = time.Now().UTC()
	s.Suspend.Total += time.Since(s.Suspend.Since)
	s.Suspend.Since = time.Time{}
	s.Suspend.LastWake = took
}

// thawForStop resumes a suspended pod before it is stopped, paused or
// signalled by the tenant, and records it.
func (w *worker) thawForStop(ctx context.Context) {
	if _, st := w.snapshot(); !st.Suspended() {
		return
	}
	took, err := w.thaw(ctx)
	if err != nil {
		w.log.Warn("thaw suspended pod", "err", err)
	}
	w.setStatus(ctx, func(s *types.PodStatus) { thawed(s, took) })
}

// thaw resumes the frozen container and says how long that took.
func (w *worker) thaw(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	err := w.rt.Resume(ctx, w.id)
	if err == nil {
		w.freezing.Store(false)
	}
	return time.Since(start), err
}
