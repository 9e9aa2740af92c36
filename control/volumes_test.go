package control

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/macro-cloud/macro/types"
	"github.com/macro-cloud/macro/volume"
)

// fakeVolumeNodes answers the write numbers of seqs and records the
// volumes made on nodes.
type fakeVolumeNodes struct {
	mu      sync.Mutex
	seqs    map[string]uint64
	created []string
	// direct are the direct writers each volume's primary answers, by
	// name; silent: the volumes whose primary does not answer.
	direct map[string][]string
	silent map[string]bool
}

func (f *fakeVolumeNodes) DirectWriters(_ context.Context, node, tenant, name string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.silent[name] {
		return nil, fmt.Errorf("node %s does not answer", node)
	}
	return f.direct[name], nil
}

func (f *fakeVolumeNodes) VolumeSeq(_ context.Context, node, tenant, name string) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.seqs[node]
	if !ok {
		return 0, fmt.Errorf("node %s does not answer", node)
	}
	return s, nil
}

func (f *fakeVolumeNodes) CreateVolume(_ context.Context, node string, v types.Volume) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.created = append(f.created, node+":"+v.Tenant+"/"+v.Name)
	return nil
}

// TestVolumeRepair drives the leader's volume loop over a real store: the
// primary's node n1 dies, the replica with the most writes (n3) is
// promoted; once n1 has been down for a further TTL its replica is
// replaced by the free node of the volume's zone (n5 before n4), whose
// storage is made; a second loss with no node free leaves the replica
// stale and the volume degraded; a node removed from the cluster is
// replaced at once.
func TestVolumeRepair(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	zones := map[string]string{"n1": "a", "n2": "a", "n3": "b", "n4": "b", "n5": "a"}
	// Every node keeps its (short) lease alive until it is killed.
	stop := map[string]context.CancelFunc{}
	for n, z := range zones {
		lease, err := st.RegisterNode(ctx, types.Node{Name: n, Labels: map[string]string{"zone": z}}, 1)
		if err != nil {
			t.Fatal(err)
		}
		kctx, cancel := context.WithCancel(ctx)
		stop[n] = cancel
		t.Cleanup(cancel)
		go func() {
			for kctx.Err() == nil {
				st.KeepNodeAlive(kctx, lease)
				time.Sleep(200 * time.Millisecond)
			}
		}()
	}
	v := types.Volume{Name: "ha", Tenant: "alice", Driver: "gfs", Node: "n1", Options: map[string]string{"zone": "a"},
		Replicas: []types.VolumeReplica{{Node: "n2", State: volume.ReplicaInSync}, {Node: "n3", State: volume.ReplicaInSync}}}
	if err := st.CreateVolume(ctx, &v); err != nil {
		t.Fatal(err)
	}
	fake := &fakeVolumeNodes{seqs: map[string]uint64{"n2": 41, "n3": 42}}
	const ttl = 200 * time.Millisecond
	c := New(st, nil).WithNodeTTL(ttl).WithVolumes(fake)
	clock := time.Now()
	c.now = func() time.Time { return clock }
	c.started = clock.Add(-time.Hour)
	get := func() types.Volume {
		t.Helper()
		v, err := st.Volume(ctx, "alice", "ha")
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	show := func(v types.Volume) string { return fmt.Sprintf("%s %d %v", v.Node, v.Epoch, v.Replicas) }

	// All alive: nothing to do.
	c.repairVolumes(ctx)
	if got := show(get()); got != "n1 0 [{n2 in-sync} {n3 in-sync}]" {
		t.Fatalf("all alive: %s", got)
	}
	kill := func(n string) {
		t.Helper()
		stop[n]()
		eventually(t, n+"'s lease to end", func() bool {
			nodes, err := st.Nodes(ctx)
			if err != nil {
				return false
			}
			for _, x := range nodes {
				if x.Name == n {
					return !x.Ready
				}
			}
			return false
		})
	}
	kill("n1")
	c.repairVolumes(ctx)
	if got := show(get()); got != "n3 1 [{n1 stale} {n2 stale}]" {
		t.Fatalf("after n1 died: %s", got)
	}
	// n2 was behind n3: stale; it catches up from n3 (agents).
	if _, err := st.UpdateVolume(ctx, "alice", "ha", func(v *types.Volume) error {
		v.Replicas[1].State = volume.ReplicaInSync
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// n1 not down for a further TTL yet: kept.
	c.repairVolumes(ctx)
	if got := show(get()); got != "n3 1 [{n1 stale} {n2 in-sync}]" {
		t.Fatalf("right after n1 died: %s", got)
	}
	clock = clock.Add(ttl)
	c.repairVolumes(ctx)
	got := get()
	if s := show(got); s != "n3 2 [{n2 in-sync} {n5 syncing}]" {
		t.Fatalf("n1 lost: %s", s)
	}
	if fmt.Sprint(fake.created) != "[n5:alice/ha]" {
		t.Fatalf("made on nodes: %v", fake.created)
	}
	if d := volume.InSyncCopies(got); d != 2 {
		t.Fatalf("copies in sync: %d", d)
	}

	// n2 is lost as well; n4 is the only free node (another zone). Then
	// n4 is lost too, before it is in sync: no node is free.
	kill("n2")
	c.repairVolumes(ctx)
	if s := show(get()); s != "n3 2 [{n2 stale} {n5 syncing}]" {
		t.Fatalf("n2 down: %s", s)
	}
	clock = clock.Add(ttl)
	c.repairVolumes(ctx)
	if s := show(get()); s != "n3 3 [{n4 syncing} {n5 syncing}]" {
		t.Fatalf("n2 lost: %s", s)
	}
	kill("n4")
	c.repairVolumes(ctx)
	clock = clock.Add(ttl)
	c.repairVolumes(ctx)
	if s := show(get()); s != "n3 3 [{n4 syncing} {n5 syncing}]" {
		t.Fatalf("n4 lost, no node free: %s", s)
	}
	if fmt.Sprint(fake.created) != "[n5:alice/ha n4:alice/ha]" {
		t.Fatalf("made on nodes: %v", fake.created)
	}

	// n5 dies and is removed (kra node rm) at once; n6 and n7 join: n4
	// and n5 are replaced, n5 without waiting for a further TTL.
	kill("n5")
	if err := st.RemoveNode(ctx, "n5"); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"n6", "n7"} {
		if _, err := st.RegisterNode(ctx, types.Node{Name: n}, 60); err != nil {
			t.Fatal(err)
		}
	}
	c.repairVolumes(ctx) // one decision per volume and round: n4 first
	if s := show(get()); s != "n3 4 [{n5 syncing} {n6 syncing}]" {
		t.Fatalf("n6 joined: %s", s)
	}
	c.repairVolumes(ctx)
	if s := show(get()); s != "n3 5 [{n6 syncing} {n7 syncing}]" {
		t.Fatalf("n5 removed: %s", s)
	}
}

// TestTwoLeadersPromote: two controllers that both believe they lead (a
// leader that lost its lease and does not know yet) see the primary's
// node down at once and, from different answers of the replicas, choose
// different replicas: one promotion lands, the volume has one primary at
// epoch 1, and the other controller's later rounds change nothing.
func TestTwoLeadersPromote(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	if err := st.PutNode(ctx, types.Node{Name: "n1"}); err != nil { // no lease: down
		t.Fatal(err)
	}
	for _, n := range []string{"n2", "n3"} {
		if _, err := st.RegisterNode(ctx, types.Node{Name: n}, 60); err != nil {
			t.Fatal(err)
		}
	}
	for round := range 10 {
		name := fmt.Sprintf("ha%d", round)
		v := types.Volume{Name: name, Tenant: "alice", Driver: "gfs", Node: "n1",
			Replicas: []types.VolumeReplica{{Node: "n2", State: volume.ReplicaInSync}, {Node: "n3", State: volume.ReplicaInSync}}}
		if err := st.CreateVolume(ctx, &v); err != nil {
			t.Fatal(err)
		}
	}
	var cs []*Controller
	// The first chooses n2 (equal numbers: by name) and leaves n3 in sync;
	// the second chooses n3.
	for _, seqs := range []map[string]uint64{{"n2": 5, "n3": 5}, {"n2": 4, "n3": 5}} {
		c := New(st, nil).WithNodeTTL(time.Hour).WithVolumes(&fakeVolumeNodes{seqs: seqs})
		c.started = time.Now().Add(-2 * time.Hour)
		cs = append(cs, c)
	}
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Go(func() { c.repairVolumes(ctx) })
	}
	wg.Wait()
	for _, c := range cs {
		c.repairVolumes(ctx)
	}
	vols, err := st.Volumes(ctx, "alice")
	if err != nil || len(vols) != 10 {
		t.Fatalf("volumes: %d %v", len(vols), err)
	}
	for _, v := range vols {
		if v.Epoch != 1 || (v.Node != "n2" && v.Node != "n3") || len(v.Replicas) != 2 {
			t.Errorf("%s: primary %s, epoch %d, replicas %v", v.Name, v.Node, v.Epoch, v.Replicas)
		}
	}
}

// TestVolumeAddReplicas: volumes made on a cluster with too few nodes (a
// full one on two nodes, with one replica, and one on three nodes, with
// two, one of them stale) get replicas from the leader's loop as nodes
// join, syncing, made on their nodes, one per volume and round, up to
// what their redundancy asks and no further. A volume made on a single
// node (no replica: written outside the write sequence) and a lv2 volume
// get none.
func TestVolumeAddReplicas(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	join := func(n, zone string) {
		t.Helper()
		if _, err := st.RegisterNode(ctx, types.Node{Name: n, Labels: map[string]string{"zone": zone}}, 60); err != nil {
			t.Fatal(err)
		}
	}
	join("n1", "a")
	join("n2", "a")
	vols := []types.Volume{
		{Name: "full", Tenant: "alice", Driver: "gfs", Node: "n1", Replicas: []types.VolumeReplica{{Node: "n2", State: volume.ReplicaInSync}}},
		{Name: "alone", Tenant: "alice", Driver: "nfs", Node: "n2", Options: map[string]string{"redundancy": "reduced", "zone": "a"}},
		{Name: "fast", Tenant: "alice", Driver: "lv2", Node: "n1"},
		{Name: "two", Tenant: "alice", Driver: "nfs", Node: "n2", Epoch: 3, Replicas: []types.VolumeReplica{{Node: "n1", State: volume.ReplicaStale}}},
	}
	for i := range vols {
		if err := st.CreateVolume(ctx, &vols[i]); err != nil {
			t.Fatal(err)
		}
	}
	// alone, made on one node, is bound directly by a container: it
	// gets no replica (TestVolumeFirstReplica).
	fake := &fakeVolumeNodes{seqs: map[string]uint64{}, direct: map[string][]string{"alone": {"web"}}}
	c := New(st, nil).WithNodeTTL(time.Second).WithVolumes(fake)
	c.started = time.Now().Add(-time.Hour)
	show := func() string {
		t.Helper()
		var out []string
		for _, v := range vols {
			got, err := st.Volume(ctx, "alice", v.Name)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, fmt.Sprintf("%s:%s %d %v", got.Name, got.Node, got.Epoch, got.Replicas))
		}
		return fmt.Sprint(out)
	}

	// Two nodes: no node is free.
	const before = "[full:n1 0 [{n2 in-sync}] alone:n2 0 [] fast:n1 0 [] two:n2 3 [{n1 stale}]]"
	c.repairVolumes(ctx)
	if got := show(); got != before {
		t.Fatalf("two nodes: %s", got)
	}
	// n3 (another zone) and n4 (zone a) join: full gets n4, its zone's
	// (its primary's) first, not n3; so does two (its primary's zone).
	// Their epochs stay; then nothing more.
	join("n3", "b")
	join("n4", "a")
	const after = "[full:n1 0 [{n2 in-sync} {n4 syncing}] alone:n2 0 [] fast:n1 0 [] two:n2 3 [{n1 stale} {n4 syncing}]]"
	for round := range 2 {
		c.repairVolumes(ctx)
		if got := show(); got != after {
			t.Fatalf("four nodes, round %d: %s", round, got)
		}
	}
	if fmt.Sprint(fake.created) != "[n4:alice/full n4:alice/two]" {
		t.Fatalf("made on nodes: %v", fake.created)
	}
}

// TestVolumeFirstReplica drives the leader's loop over a real store for a
// volume made on a one-node cluster: no mark while no node could keep a
// copy; when nodes join, the volume is marked (its writes go through the
// write sequence from then on) and waits while its primary's node says a
// container binds it directly (inspect names it), or does not answer;
// then it gets its replicas, one per round. A replica is never added to a
// record that is not marked, and the mark never lands on a record that
// changed since it was read.
func TestVolumeFirstReplica(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	join := func(n string) {
		t.Helper()
		if _, err := st.RegisterNode(ctx, types.Node{Name: n}, 60); err != nil {
			t.Fatal(err)
		}
	}
	join("n1")
	v := types.Volume{Name: "data", Tenant: "alice", Driver: "nfs", Node: "n1"}
	if err := st.CreateVolume(ctx, &v); err != nil {
		t.Fatal(err)
	}
	fake := &fakeVolumeNodes{seqs: map[string]uint64{}, direct: map[string][]string{"data": {"web"}}, silent: map[string]bool{}}
	c := New(st, nil).WithNodeTTL(time.Second).WithVolumes(fake)
	c.started = time.Now().Add(-time.Hour)
	show := func() string {
		t.Helper()
		got, err := st.Volume(ctx, "alice", "data")
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("%v %v %v %q", got.Replicating, got.DirectPods, got.Replicas, volume.Degraded(got))
	}
	step := func(what, want string) {
		t.Helper()
		c.repairVolumes(ctx)
		if got := show(); got != want {
			t.Fatalf("%s:\n got %s\nwant %s", what, got, want)
		}
	}

	step("one node", `false [] [] ""`)
	join("n2")
	join("n3")
	const waiting = `true [web] [] "1 of 3 copies in sync: replicas are added once no container binds it directly; restart web"`
	step("nodes joined, web binds it", waiting)
	step("again", waiting)
	fake.direct["data"] = nil
	fake.silent["data"] = true
	step("web restarted, the primary does not answer", waiting)
	fake.silent["data"] = false
	step("the primary answers: none binds it", `true [] [{n2 syncing}] "1 of 3 copies in sync"`)
	step("next round", `true [] [{n2 syncing} {n3 syncing}] "1 of 3 copies in sync"`)
	if fmt.Sprint(fake.created) != "[n2:alice/data n3:alice/data]" {
		t.Fatalf("made on nodes: %v", fake.created)
	}

	// The guards: a decision read from a record that changed since.
	w := types.Volume{Name: "other", Tenant: "alice", Driver: "gfs", Node: "n1"}
	if err := st.CreateVolume(ctx, &w); err != nil {
		t.Fatal(err)
	}
	stale := w
	stale.Epoch = 7 // not the record's: the mark does not land
	if c.firstReplica(ctx, &stale) {
		t.Fatal("first replica allowed on a record read before a change")
	}
	if got, _ := st.Volume(ctx, "alice", "other"); got.Replicating {
		t.Fatal("marked although the record changed since it was read")
	}
	// A caller that believes the record marked, when it is not: no
	// replica is added (a pod may still bind it directly).
	claimed := w
	claimed.Replicating = true
	cands := []volume.ReplicaNode{{Name: "n1", Ready: true}, {Name: "n2", Ready: true}, {Name: "n3", Ready: true}}
	c.addReplica(ctx, claimed, cands, map[string]string{})
	if got, _ := st.Volume(ctx, "alice", "other"); len(got.Replicas) != 0 || got.Replicating {
		t.Fatalf("replica added to a record that is not marked: %+v", got)
	}
}
