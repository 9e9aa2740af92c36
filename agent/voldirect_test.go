package agent

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/macro-cloud/macro/types"
	"github.com/macro-cloud/macro/volume/volfs"
)

// roundTripFunc is an http.RoundTripper of a function.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestDirectWriters: the pods that may bind a volume directly are found
// by tenant and volume, from their records in their directories; a
// request of WebDAV or S3 counts while it runs; records are forgotten
// when undone (unless an earlier run of the container made them) or when
// the pod starts again; a half-written record is not read.
func TestDirectWriters(t *testing.T) {
	a := &Agent{cfg: Config{DataDir: t.TempDir()}}
	pod := func(id string) *worker { return &worker{a: a, id: id, dir: a.podDir(id)} }
	want := func(what, tenant, name string, exp ...string) {
		t.Helper()
		got, err := a.DirectWriters(tenant, name)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, exp) {
			t.Fatalf("%s: %v, want %v", what, got, exp)
		}
	}
	web, db, other := pod("p1"), pod("p2"), pod("p3")
	if _, err := web.recordDirect("alice", "data", "web", 0); err != nil {
		t.Fatal(err)
	}
	undoDB, err := db.recordDirect("alice", "data", "db", 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.recordDirect("bob", "data", "x", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := other.recordDirect("alice", "logs", "x", 1); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(web.directDir(), ".1.tmp-123"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	want("two pods", "alice", "data", "db", "web")
	// A running pod prepared again (an agent adopting it) keeps its
	// record, whatever the new decision.
	again, err := web.recordDirect("alice", "data", "web", 0)
	if err != nil {
		t.Fatal(err)
	}
	again()
	want("web prepared again", "alice", "data", "db", "web")
	want("another tenant's volume of the name", "bob", "data", "x")
	undoDB()
	want("db undone", "alice", "data", "web")

	ctx, cancel := context.WithCancel(context.Background())
	release := a.holdAccess(ctx, "alice", "data")
	a.holdAccess(ctx, "alice", "data")
	want("two requests", "alice", "data", "WebDAV/S3", "web")
	release()
	release()
	want("one request left", "alice", "data", "WebDAV/S3", "web")
	cancel()
	for {
		got, _ := a.DirectWriters("alice", "data")
		if !slices.Contains(got, "WebDAV/S3") {
			break
		}
		time.Sleep(10 * time.Millisecond) // the context's AfterFunc runs on its own
	}
	if err := web.forgetDirect(); err != nil {
		t.Fatal(err)
	}
	want("web starts again", "alice", "data")
}

// TestDirectRecordedBeforeRoute: a pod's mount of a network volume is
// recorded as direct before the volume's route is asked (so a leader that
// marks the volume meanwhile and asks afterwards sees it), and forgotten
// when the mount does not bind the directory.
func TestDirectRecordedBeforeRoute(t *testing.T) {
	a := &Agent{cfg: Config{DataDir: t.TempDir(), Node: types.Node{Name: "n1"}}}
	var during []string
	a.cfg.VolumeTransport = func() http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			during, _ = a.DirectWriters("alice", "data")
			return nil, fmt.Errorf("no route today")
		})
	}
	w := &worker{a: a, id: "p1", dir: a.podDir("p1"), log: a.log}
	_, err := w.volumeSource(types.Pod{Name: "web", Tenant: "alice"}, 0, types.Mount{Type: "volume", Source: "data", Driver: "nfs"})
	if err == nil {
		t.Fatal("mounted without a route")
	}
	if !slices.Equal(during, []string{"web"}) {
		t.Fatalf("direct writers while the route was asked: %v", during)
	}
	if got, _ := a.DirectWriters("alice", "data"); len(got) != 0 {
		t.Fatalf("after the mount failed: %v", got)
	}
}

// TestWithCaughtUp: a replica the primary brought in sync is sent the
// writes that come with a route read before that, under the same epoch,
// until a route lists it in sync; a route of a later epoch drops it.
func TestWithCaughtUp(t *testing.T) {
	st := &volumeState{caughtUp: map[string]int64{"n3": 2}}
	old := volfs.Route{Primary: "n2", Epoch: 2, InSync: []string{"n4"}, Others: []string{"n3", "n5"}}
	got := st.withCaughtUp(old)
	if !slices.Equal(got.InSync, []string{"n4", "n3"}) || !slices.Equal(got.Others, []string{"n5"}) {
		t.Fatalf("an older route: %+v", got)
	}
	if !slices.Equal(old.Others, []string{"n3", "n5"}) {
		t.Fatalf("the route read was changed: %+v", old)
	}
	if got := st.withCaughtUp(volfs.Route{Primary: "n2", Epoch: 1, Others: []string{"n3"}}); len(got.InSync) != 0 {
		t.Fatalf("a route of an earlier epoch: %+v", got)
	}
	fresh := volfs.Route{Primary: "n2", Epoch: 2, InSync: []string{"n3", "n4"}}
	if got := st.withCaughtUp(fresh); !reflect.DeepEqual(got, fresh) || len(st.caughtUp) != 0 {
		t.Fatalf("a route that knows: %+v, left %v", got, st.caughtUp)
	}
	// Forgotten: a later route that says stale is believed.
	if got := st.withCaughtUp(old); !reflect.DeepEqual(got, old) {
		t.Fatalf("after a route knew: %+v", got)
	}
	st.caughtUp = map[string]int64{"n3": 2}
	if got := st.withCaughtUp(volfs.Route{Primary: "n2", Epoch: 3, Others: []string{"n3"}}); len(got.InSync) != 0 || len(st.caughtUp) != 0 {
		t.Fatalf("a later epoch: %+v, left %v", got, st.caughtUp)
	}
}
