package ingress

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sort"
	"strings"
	"sync"
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

func (r *recordFreezer) Suspend(_ context.Context, tenant, pod string, _ time.Time) error {
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

// freezableApp is a backend whose handler stalls while frozen, as a pod in
// the cgroup freezer does; it is both the proxy's waker and the
// suspender's freezer.
type freezableApp struct {
	mu     sync.Mutex
	frozen bool
	thawed *sync.Cond
	wakes  int
}

func newFreezableApp() *freezableApp {
	f := &freezableApp{}
	f.thawed = sync.NewCond(&f.mu)
	return f
}

func (f *freezableApp) Suspend(context.Context, string, string, time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.frozen = true
	return nil
}

func (f *freezableApp) Wake(context.Context, string, string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.frozen {
		f.wakes++
	}
	f.frozen = false
	f.thawed.Broadcast()
	return nil
}

func (f *freezableApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	for f.frozen {
		f.thawed.Wait()
	}
	f.mu.Unlock()
	io.WriteString(w, "awake")
}

// TestFrozenBeforeTheTableKnows: the suspender froze a pod and the table
// still says it is ready (its status has not come back yet); a request
// must wake it rather than wait on a frozen pod.
func TestFrozenBeforeTheTableKnows(t *testing.T) {
	app := newFreezableApp()
	srv := httptest.NewServer(app)
	defer srv.Close()
	ap := netip.MustParseAddrPort(srv.Listener.Addr().String())
	p := NewProxy(Options{WakeTimeout: 5 * time.Second}, app, slog.New(slog.DiscardHandler))
	p.SetTable(Build(Config{Domain: "cloud.test"}, []Backend{routeTo("alice", "web", ap, "http://web.*")}))
	front := httptest.NewServer(p)
	defer front.Close()
	get := func() string {
		req, _ := http.NewRequest("GET", front.URL+"/", nil)
		req.Host = "web.alice.cloud.test"
		c := &http.Client{Timeout: 10 * time.Second}
		resp, err := c.Do(req)
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if got := get(); got != "awake" {
		t.Fatalf("first request: %s", got)
	}
	s := NewSuspender(p.Activity, app, slog.New(slog.DiscardHandler))
	s.now = func() time.Time { return time.Now().Add(time.Hour) }
	if n := s.Check(context.Background(), []Candidate{{Tenant: "alice", Pod: "web", After: time.Minute, StartedAt: time.Now().Add(-2 * time.Hour), Running: true}}); n != 1 {
		t.Fatalf("froze %d pods", n)
	}
	if got := get(); got != "awake" || app.wakes != 1 {
		t.Fatalf("request to a frozen pod the table thinks ready: %q, %d wakes", got, app.wakes)
	}
	// A request in flight keeps the suspender off.
	done := p.Activity.Begin("web")
	if n := s.Check(context.Background(), []Candidate{{Tenant: "alice", Pod: "web", After: time.Minute, StartedAt: time.Now().Add(-2 * time.Hour), Running: true}}); n != 0 {
		t.Fatalf("froze a pod with a request in flight")
	}
	done()
}
