package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/macro-cloud/macro/types"
	"github.com/macro-cloud/macro/volume"
	"github.com/macro-cloud/macro/volume/volfs"
)

func TestSnapshotDiff(t *testing.T) {
	t1, t2 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name        string
		mine, their []volume.Snapshot
		want        string
	}{
		{"same", []volume.Snapshot{{Name: "a", Created: t1}}, []volume.Snapshot{{Name: "a", Created: t1}}, "[] []"},
		{"missed", []volume.Snapshot{{Name: "a", Created: t1}, {Name: "b", Created: t2}}, []volume.Snapshot{{Name: "a", Created: t1}}, "[] [b]"},
		{"removed while away", nil, []volume.Snapshot{{Name: "a", Created: t1}}, "[a] []"},
		{"removed and taken again", []volume.Snapshot{{Name: "a", Created: t2}}, []volume.Snapshot{{Name: "a", Created: t1}}, "[a] [a]"},
	} {
		drop, send := snapshotDiff(c.mine, c.their)
		var names []string
		for _, s := range send {
			names = append(names, s.Name)
		}
		if got := fmt.Sprint(nilEmpty(drop), " ", nilEmpty(names)); got != c.want {
			t.Errorf("%s: drop %v, send %v; want %s", c.name, drop, names, c.want)
		}
	}
}

func nilEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func TestParseSnapOp(t *testing.T) {
	for _, c := range []struct {
		in string
		ok bool
	}{
		{`{"op":"create","snap":{"name":"s1"}}`, true},
		{`{"op":"rollback","snap":{"name":"s1"},"keep":{"name":"rollback-1"}}`, true},
		{`{"op":"delete","snap":{"name":"../x"}}`, false},
		{`{"op":"rollback","snap":{"name":"s1"},"keep":{"name":"a/b"}}`, false},
		{`{"op":"format","snap":{"name":"s1"}}`, false},
		{`{"op":`, false},
	} {
		_, err := parseSnapOp(strings.NewReader(c.in))
		if (err == nil) != c.ok {
			t.Errorf("%s: %v", c.in, err)
		}
	}
}

func FuzzParseSnapOp(f *testing.F) {
	f.Add(`{"op":"create","snap":{"name":"s1","created":"2026-12-01T00:00:00Z"}}`)
	f.Add(`{"op":"rollback","snap":{"name":"s1"},"keep":{"name":"rollback-1"}}`)
	f.Fuzz(func(t *testing.T, in string) {
		op, err := parseSnapOp(strings.NewReader(in))
		if err == nil && volume.CheckSnapshotName(op.Snap.Name) != nil {
			t.Fatalf("accepted %q", op.Snap.Name)
		}
	})
}

// fakeServers routes the replication requests of agents as servers do:
// the volume's route, replica states (checking the epoch), and writes and
// snapshot operations to the replica's agent.
type fakeServers struct {
	mu     sync.Mutex
	route  volfs.Route
	agents map[string]*Agent
	down   map[string]bool
}

func (s *fakeServers) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")
	s.mu.Lock()
	rt := s.route
	s.mu.Unlock()
	switch {
	case r.Host == "volfs" && len(parts) == 3 && parts[2] == "route":
		json.NewEncoder(w).Encode(rt)
	case r.Host == "volrep" && len(parts) == 4:
		if ep := r.Header.Get(volfs.HeaderEpoch); ep != fmt.Sprint(rt.Epoch) {
			http.Error(w, "epoch "+ep+" is over", http.StatusConflict)
			return
		}
		node := parts[2]
		if parts[3] == "state" {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.route.InSync = slices.DeleteFunc(s.route.InSync, func(n string) bool { return n == node })
			s.route.Others = slices.DeleteFunc(s.route.Others, func(n string) bool { return n == node })
			if r.URL.Query().Get("state") == volume.ReplicaInSync {
				s.route.InSync = append(s.route.InSync, node)
			} else {
				s.route.Others = append(s.route.Others, node)
			}
			w.WriteHeader(http.StatusNoContent)
			return
		}
		s.mu.Lock()
		down := s.down[node]
		s.mu.Unlock()
		if down {
			http.Error(w, "node "+node+" is down", http.StatusBadGateway)
			return
		}
		s.agents[node].VolumeReplicaFS(parts[0], parts[1]).ServeHTTP(w, r)
	default:
		http.NotFound(w, r)
	}
}

// TestReplicatedSnapshots: on a gfs volume with a primary (n1) and two
// replicas (n2, n3), each agent with its own btrfs pool: a snapshot, its
// removal and a rollback go through the primary's write sequence and
// happen on every copy (the rollback's kept snapshot has the same name
// everywhere, the files are the snapshot's); the schedule takes its
// snapshots on the primary only, and they reach the replicas. A replica
// that is down misses operations and is marked stale; its catch-up
// gives it the snapshots it missed (by the delta engine, with their
// contents) and drops those removed meanwhile, and its write number is
// the primary's.
func TestReplicatedSnapshots(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: loop devices and mounts")
	}
	for _, tool := range []string{"mkfs.btrfs", "btrfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (scripts/setup.sh installs it)", tool)
		}
	}
	ctx := context.Background()
	srv := &fakeServers{route: volfs.Route{Primary: "n1", Epoch: 1, InSync: []string{"n2", "n3"}}, agents: map[string]*Agent{}, down: map[string]bool{}}
	vol := types.Volume{Tenant: "alice", Name: "ha", Driver: "gfs", Options: map[string]string{"snapshot": "hourly", "snapshots.keep": "2"}}
	nodes := []string{"n1", "n2", "n3"}
	for _, n := range nodes {
		data := t.TempDir()
		t.Cleanup(func() { volume.CleanupMounts(data) })
		a := &Agent{cfg: Config{DataDir: data, Node: types.Node{Name: n}, Volumes: volume.Config{PoolBytes: 256 << 20},
			VolumeTransport: func() http.RoundTripper { return handlerTransport{srv} }}, log: slog.New(slog.DiscardHandler)}
		if err := a.CreateVolume(ctx, vol); err != nil {
			t.Fatal(err)
		}
		srv.agents[n] = a
	}
	root := func(n string) string {
		t.Helper()
		r, err := srv.agents[n].VolumeRoot(ctx, "alice", "ha")
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	// The same files on every copy, as the write path leaves them.
	writeAll := func(content string, ns ...string) {
		t.Helper()
		for _, n := range ns {
			if err := os.WriteFile(filepath.Join(root(n), "f"), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	state := func(n string) string {
		t.Helper()
		a := srv.agents[n]
		snaps, err := a.VolumeSnapshots(ctx, "alice", "ha")
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, s := range snaps {
			names = append(names, s.Name)
		}
		seq, err := a.VolumeSeq("alice", "ha")
		if err != nil {
			t.Fatal(err)
		}
		f, _ := os.ReadFile(filepath.Join(root(n), "f"))
		return fmt.Sprintf("seq %d snaps %v f %q", seq, names, f)
	}
	expect := func(what, want string, ns ...string) {
		t.Helper()
		for _, n := range ns {
			if got := state(n); got != want {
				t.Fatalf("%s: %s: %s, want %s", what, n, got, want)
			}
		}
	}
	primary := srv.agents["n1"]
	t0 := time.Now().UTC().Add(-48 * time.Hour).Truncate(time.Hour) // before the rollback's own time
	auto := volume.AutoPrefix + t0.Format("20060102T150405Z")

	writeAll("one", nodes...)
	if err := primary.SnapshotVolume(ctx, "alice", "ha", volume.Snapshot{Name: "s1", Created: t0}); err != nil {
		t.Fatal(err)
	}
	expect("s1 taken", `seq 1 snaps [s1] f "one"`, nodes...)
	writeAll("two", nodes...)
	if err := primary.SnapshotVolume(ctx, "alice", "ha", volume.Snapshot{Name: "s2", Created: t0.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if err := primary.DeleteVolumeSnapshot(ctx, "alice", "ha", "s2"); err != nil {
		t.Fatal(err)
	}
	expect("s2 taken and removed", `seq 3 snaps [s1] f "two"`, nodes...)
	if err := primary.DeleteVolumeSnapshot(ctx, "alice", "ha", "s2"); err == nil {
		t.Fatal("s2 removed twice")
	}
	if err := primary.RollbackVolume(ctx, "alice", "ha", "s1"); err != nil {
		t.Fatal(err)
	}
	got := state("n1")
	if !strings.HasPrefix(got, `seq 4 snaps [s1 rollback-`) || !strings.HasSuffix(got, `] f "one"`) {
		t.Fatalf("rolled back: n1: %s", got)
	}
	expect("rolled back", got, "n2", "n3")

	// The schedule: replicas take nothing of their own; the primary's
	// automatic snapshot is on every copy.
	for _, n := range []string{"n2", "n3"} {
		if err := srv.agents[n].snapshotTick(ctx, t0); err != nil {
			t.Fatal(err)
		}
	}
	expect("the schedule on replicas", got, nodes...)
	if err := primary.snapshotTick(ctx, t0); err != nil {
		t.Fatal(err)
	}
	withAuto := strings.Replace(got, "seq 4", "seq 5", 1)
	withAuto = strings.Replace(withAuto, "snaps [", "snaps ["+auto+" ", 1)
	expect("the schedule on the primary", withAuto, nodes...)

	// n3 is down: it misses a snapshot and a removal, and is stale.
	srv.mu.Lock()
	srv.down["n3"] = true
	srv.mu.Unlock()
	writeAll("three", "n1", "n2")
	if err := primary.SnapshotVolume(ctx, "alice", "ha", volume.Snapshot{Name: "s3", Created: t0.Add(2 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if err := primary.DeleteVolumeSnapshot(ctx, "alice", "ha", "s1"); err != nil {
		t.Fatal(err)
	}
	srv.mu.Lock()
	rt := srv.route
	srv.down["n3"] = false
	srv.mu.Unlock()
	if fmt.Sprint(rt.InSync, rt.Others) != "[n2] [n3]" {
		t.Fatalf("after n3 missed operations: in sync %v, others %v", rt.InSync, rt.Others)
	}
	want := state("n1")
	if !strings.HasPrefix(want, "seq 7 snaps ["+auto+" s3 rollback-") || !strings.HasSuffix(want, `] f "three"`) {
		t.Fatalf("n1: %s", want)
	}
	expect("n2 in sync", want, "n2")
	if err := primary.catchUp(ctx, "alice", "ha", "n3", rt.Epoch); err != nil {
		t.Fatal(err)
	}
	expect("n3 caught up", want, "n3")
	if b, err := os.ReadFile(filepath.Join(srv.agents["n3"].cfg.DataDir, "btrfs", "pool", "s", "alice", "ha", "s3", "f")); err != nil || string(b) != "three" {
		t.Fatalf("n3's s3 received: %q %v", b, err)
	}
	srv.mu.Lock()
	rt = srv.route
	srv.mu.Unlock()
	if fmt.Sprint(rt.InSync, rt.Others) != "[n2 n3] []" {
		t.Fatalf("after the catch-up: in sync %v, others %v", rt.InSync, rt.Others)
	}
	// And it gets the next operation in order.
	if err := primary.SnapshotVolume(ctx, "alice", "ha", volume.Snapshot{Name: "s4", Created: t0.Add(3 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	want = strings.Replace(strings.Replace(want, "seq 7", "seq 8", 1), " s3 ", " s3 s4 ", 1)
	expect("s4 taken", want, nodes...)

	// The primary crashed after it numbered an operation (9) and before
	// its replicas had it: the next one (10) shows them a gap; they are
	// marked stale, and catch up to the primary's copy.
	st := primary.volState("alice", "ha")
	st.mu.Lock()
	err := primary.storeSeq(st, "alice", "ha", 9)
	st.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	writeAll("four", "n1")
	if err := primary.SnapshotVolume(ctx, "alice", "ha", volume.Snapshot{Name: "s5", Created: t0.Add(4 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	srv.mu.Lock()
	rt = srv.route
	srv.mu.Unlock()
	if fmt.Sprint(rt.InSync, rt.Others) != "[] [n3 n2]" && fmt.Sprint(rt.InSync, rt.Others) != "[] [n2 n3]" {
		t.Fatalf("after a gap: in sync %v, others %v", rt.InSync, rt.Others)
	}
	want = state("n1")
	if !strings.HasPrefix(want, "seq 10 ") || !strings.Contains(want, " s4 s5 ") || !strings.HasSuffix(want, `f "four"`) {
		t.Fatalf("n1 after the gap: %s", want)
	}
	for _, n := range []string{"n2", "n3"} {
		if err := primary.catchUp(ctx, "alice", "ha", n, rt.Epoch); err != nil {
			t.Fatal(err)
		}
	}
	expect("caught up after the gap", want, "n2", "n3")
}
