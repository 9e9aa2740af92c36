package ingress

import (
	"context"
	"log/slog"
	"sort"
	"strings"
	"testing"
	"time"
)

func TestParseSuspend(t *testing.T) {
	cases := []struct {
		labels map[string]string
		def    time.Duration
		want   time.Duration
		err    string
	}{
		{labels: nil, def: 5 * time.Minute, want: 5 * time.Minute},
		{labels: map[string]string{"kr.suspend": "10m"}, want: 10 * time.Minute},
		{labels: map[string]string{"kr.suspend": "off"}, def: time.Minute, want: 0},
		{labels: map[string]string{"kr.suspend": "0"}, def: time.Minute, want: 0},
		{labels: map[string]string{"kr.suspend": "soon"}, err: "want a duration"},
		{labels: map[string]string{"kr.suspend": "-1m"}, err: "want a duration"},
		{labels: map[string]string{"kr.suspend": "10ms"}, err: "at least 1s"},
	}
	for _, c := range cases {
		got, err := ParseSuspend(c.labels, c.def)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%v: error %v, want %q", c.labels, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%v: %v %v, want %v", c.labels, got, err, c.want)
		}
	}
}

type recordFreezer struct{ frozen []string }

func (r *recordFreezer) Suspend(_ context.Context, tenant, pod string) error {
	r.frozen = append(r.frozen, pod)
	return nil
}

func TestSuspenderFreezesIdlePodsOnly(t *testing.T) {
	act := NewActivity()
	f := &recordFreezer{}
	s := NewSuspender(act, f, slog.New(slog.DiscardHandler))
	real := time.Now()
	s.now = func() time.Time { return real.Add(20 * time.Minute) }
	long := real.Add(-time.Hour)
	act.Begin("busy")                                             // a request in flight (never ended)
	act.Begin("recent")()                                         // a request that ended just now...
	s.now = func() time.Time { return real.Add(5 * time.Minute) } // ...5 minutes before the check
	n := s.Check(context.Background(), []Candidate{
		{Tenant: "a", Pod: "idle", After: time.Minute, StartedAt: long, Running: true},
		{Tenant: "a", Pod: "busy", After: time.Minute, StartedAt: long, Running: true},
		{Tenant: "a", Pod: "recent", After: 10 * time.Minute, StartedAt: long, Running: true},
		{Tenant: "a", Pod: "young", After: 10 * time.Minute, StartedAt: real, Running: true},
		{Tenant: "a", Pod: "norule", After: 0, StartedAt: long, Running: true},
		{Tenant: "a", Pod: "stopped", After: time.Minute, StartedAt: long, Running: false},
		{Tenant: "a", Pod: "due", After: 4 * time.Minute, StartedAt: long, Running: true},
		{Tenant: "a", Pod: "woken", After: 10 * time.Minute, StartedAt: long, WokeAt: real, Running: true},
	})
	sort.Strings(f.frozen)
	if n != 2 || strings.Join(f.frozen, ",") != "due,idle" {
		t.Fatalf("froze %d: %v, want due and idle", n, f.frozen)
	}
}
