package ingress

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// SuspendLabel sets a pod's auto-suspend rule: "10m" freezes it after ten
// minutes without ingress traffic or open connections; "off" (or "0")
// never does.
const SuspendLabel = "kr.suspend"

// ParseSuspend reads a pod's auto-suspend rule from its labels; def is the
// tenant's default, used when the pod has no label. Zero means never.
func ParseSuspend(labels map[string]string, def time.Duration) (time.Duration, error) {
	v, ok := labels[SuspendLabel]
	if !ok {
		return def, nil
	}
	v = strings.TrimSpace(v)
	if v == "off" || v == "0" || v == "never" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("label %s=%q: want a duration such as 10m, or off", SuspendLabel, v)
	}
	if d < time.Second {
		return 0, fmt.Errorf("label %s=%q: at least 1s", SuspendLabel, v)
	}
	return d, nil
}

// Freezer suspends pods (the node agent's freezer) that had no ingress
// traffic since idleSince through other ingresses than this one, which the
// freezer knows of (the node's record of the connections of other
// servers); it fails when they had.
type Freezer interface {
	Suspend(ctx context.Context, tenant, pod string, idleSince time.Time) error
}

// Candidate is a pod that auto-suspend may freeze.
type Candidate struct {
	Tenant    string
	Pod       string
	After     time.Duration // its rule; zero: never
	StartedAt time.Time
	WokeAt    time.Time // the last wake, by a request or an exec
	Running   bool      // running, not paused, not suspended already
}

// Suspender freezes pods idle for longer than their rule, idle meaning no
// request or connection through this ingress in that time.
type Suspender struct {
	activity *Activity
	freezer  Freezer
	log      *slog.Logger
	now      func() time.Time
}

// NewSuspender suspends through freezer, reading activity.
func NewSuspender(activity *Activity, freezer Freezer, log *slog.Logger) *Suspender {
	return &Suspender{activity: activity, freezer: freezer, log: log, now: time.Now}
}

// Check freezes the candidates that are due and returns how many it froze.
func (s *Suspender) Check(ctx context.Context, pods []Candidate) int {
	now := s.now()
	n := 0
	for _, c := range pods {
		if c.After <= 0 || !c.Running {
			continue
		}
		since := now.Add(-c.After)
		if c.StartedAt.After(since) || c.WokeAt.After(since) {
			continue
		}
		froze, err := s.activity.freeze(c.Pod, since, func() error { return s.freezer.Suspend(ctx, c.Tenant, c.Pod, since) })
		if err != nil {
			s.log.Info("suspend", "pod", c.Pod, "err", err)
			continue
		}
		if !froze {
			continue
		}
		s.log.Info("suspended idle pod", "tenant", c.Tenant, "pod", c.Pod, "rule", c.After)
		n++
	}
	return n
}
