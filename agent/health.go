package agent

import (
	"bytes"
	"context"
	"time"

	"github.com/macro-cloud/macro/runtime"
	"github.com/macro-cloud/macro/types"
)

// Docker's healthcheck defaults and limits.
const (
	defaultHealthInterval = 30 * time.Second
	defaultHealthTimeout  = 30 * time.Second
	defaultHealthRetries  = 3
	healthLogEntries      = 5
	healthOutputMax       = 4096
)

// healthCommand turns a HEALTHCHECK test into process arguments.
func healthCommand(test []string) []string {
	switch {
	case len(test) > 1 && test[0] == "CMD":
		return test[1:]
	case len(test) > 1 && test[0] == "CMD-SHELL":
		return []string{"/bin/sh", "-c", test[1]}
	}
	return nil
}

// healthLoop probes the container until exited closes, with Docker's
// semantics: "starting" until the first success, "unhealthy" after Retries
// failures in a row (failures in the start period do not count).
func (w *worker) healthLoop(hc types.Healthcheck, exited <-chan struct{}) {
	args := healthCommand(hc.Test)
	if args == nil {
		return
	}
	interval, timeout, retries := hc.Interval, hc.Timeout, hc.Retries
	if interval <= 0 {
		interval = defaultHealthInterval
	}
	if timeout <= 0 {
		timeout = defaultHealthTimeout
	}
	if retries <= 0 {
		retries = defaultHealthRetries
	}
	started := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-exited:
		case <-w.gone:
		}
		cancel()
	}()
	w.setStatus(ctx, func(s *types.PodStatus) {
		s.Health = &types.Health{Status: "starting"}
	})
	// During the start period, probes come every StartInterval when one
	// is set (Docker's --health-start-interval).
	next := func() time.Duration {
		if hc.StartInterval > 0 && time.Since(started) < hc.StartPeriod {
			return hc.StartInterval
		}
		return interval
	}
	t := time.NewTimer(next())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		t.Reset(next())
		var out bytes.Buffer
		pctx, pcancel := context.WithTimeout(ctx, timeout)
		start := time.Now()
		code, err := w.rt.Exec(pctx, w.id, runtime.Process{Args: args}, runtime.IO{Stdout: &out, Stderr: &out})
		timedOut := pctx.Err() != nil && ctx.Err() == nil
		pcancel()
		if ctx.Err() != nil {
			return
		}
		entry := types.HealthLog{Start: start.UTC(), End: time.Now().UTC(), ExitCode: code}
		switch {
		case timedOut:
			entry.ExitCode = -1
			entry.Output = "Health check exceeded timeout (" + timeout.String() + ")"
		case err != nil:
			entry.ExitCode = -1
			entry.Output = err.Error()
		default:
			entry.Output = out.String()
			if len(entry.Output) > healthOutputMax {
				entry.Output = entry.Output[:healthOutputMax]
			}
		}
		inStartPeriod := time.Since(started) < hc.StartPeriod
		w.setStatus(ctx, func(s *types.PodStatus) {
			h := s.Health
			if h == nil {
				h = &types.Health{Status: "starting"}
			}
			h = &types.Health{Status: h.Status, FailingStreak: h.FailingStreak, Log: append(append([]types.HealthLog{}, h.Log...), entry)}
			if len(h.Log) > healthLogEntries {
				h.Log = h.Log[len(h.Log)-healthLogEntries:]
			}
			if entry.ExitCode == 0 {
				h.Status, h.FailingStreak = "healthy", 0
			} else if !inStartPeriod || h.Status != "starting" {
				h.FailingStreak++
				if h.FailingStreak >= retries {
					h.Status = "unhealthy"
				}
			}
			s.Health = h
		})
	}
}
