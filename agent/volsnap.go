package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/macro-cloud/macro/delta"
	"github.com/macro-cloud/macro/volume"
	"github.com/macro-cloud/macro/volume/volfs"
)

// Snapshots of replicated volumes. A snapshot's creation, its removal and
// a rollback are numbered in the primary's write sequence like a write
// (volrep.go): the primary applies one under the volume's write lock,
// takes the next number and sends it to every replica in sync (POST
// .../volrep/.../snapshot), which applies it in order; so every copy
// takes the same snapshot at the same point of the data, and a rollback
// (whose kept rollback-<time> snapshot the primary names) leaves every
// copy the same. A replica that fails is marked stale, as for a write.
// The schedule runs on the primary only (the route names it). A replica
// that catches up (volcatchup.go) also gets the snapshots it lacks and
// drops those the primary no longer has.

// Snapshot operations in the write sequence.
const (
	snapCreate   = "create"
	snapDelete   = "delete"
	snapRollback = "rollback"
)

// snapOp is one snapshot operation as a primary sends it to its replicas.
type snapOp struct {
	Op   string          `json:"op"`
	Snap volume.Snapshot `json:"snap"`
	// Keep: a rollback's snapshot of the state it replaces.
	Keep volume.Snapshot `json:"keep,omitzero"`
}

// keepRollbacker is a driver whose rollback takes the name of the
// snapshot it keeps (volume.Btrfs).
type keepRollbacker interface {
	RollbackKeeping(ctx context.Context, ref volume.Ref, name string, keep volume.Snapshot, opts volume.Options) error
}

// applySnapshotOp applies op to this node's copy.
func applySnapshotOp(ctx context.Context, s volume.Snapshotter, ref volume.Ref, opts volume.Options, op snapOp) error {
	switch op.Op {
	case snapCreate:
		return s.Snapshot(ctx, ref, op.Snap)
	case snapDelete:
		return s.DeleteSnapshot(ctx, ref, op.Snap.Name)
	case snapRollback:
		if kr, ok := s.(keepRollbacker); ok && op.Keep.Name != "" {
			return kr.RollbackKeeping(ctx, ref, op.Snap.Name, op.Keep, opts)
		}
		return s.Rollback(ctx, ref, op.Snap.Name, opts)
	}
	return fmt.Errorf("unknown snapshot operation %q", op.Op)
}

// snapshotRoute reads the route of a volume of this node when it is an
// nfs or gfs volume and the servers can be reached: replicated tells
// whether its snapshot operations go through the write sequence. An
// error when the route cannot be read (then the caller cannot tell
// whether this node is the primary).
func (a *Agent) snapshotRoute(d volume.Driver, tenant, name string) (rt volfs.Route, replicated bool, err error) {
	if !networkDriver(d.Name()) {
		return rt, false, nil
	}
	hc, err := a.replicationClient()
	if err != nil {
		return rt, false, nil // no servers (a node on its own): no replicas either
	}
	rt, err = volumeRoute(hc, tenant, name)
	if err != nil {
		return rt, false, fmt.Errorf("volume %s: its route: %w", name, err)
	}
	return rt, rt.Replicated(), nil
}

// snapshotOp applies a snapshot operation to a volume of this node: for a
// replicated volume whose primary this node is, in the write sequence.
func (a *Agent) snapshotOp(ctx context.Context, tenant, name string, op snapOp) error {
	d, ref, opts, err := a.volumeDriver(tenant, name)
	if err != nil {
		return err
	}
	s, ok := d.(volume.Snapshotter)
	if !ok {
		return fmt.Errorf("%w: %s volumes cannot be snapshotted (use an nfs or gfs volume)", volume.ErrNoSnapshots, d.Name())
	}
	rt, replicated, err := a.snapshotRoute(d, tenant, name)
	if err != nil {
		return err
	}
	if !replicated {
		return applySnapshotOp(ctx, s, ref, opts, op)
	}
	if rt.Primary != a.cfg.Node.Name {
		return fmt.Errorf("volume %s: node %s is not its primary (%s is)", name, a.cfg.Node.Name, rt.Primary)
	}
	st := a.volState(tenant, name)
	st.mu.Lock()
	defer st.mu.Unlock()
	rt = st.withCaughtUp(rt)
	// Numbered before it is applied: a crash between the two, or before
	// the replicas have it, leaves a gap in the numbers they see with
	// the next write, so they are marked stale and catch up from this
	// copy, whatever it has.
	if err := a.loadSeq(st, tenant, name); err != nil {
		return err
	}
	seq := st.seq + 1
	if err := a.storeSeq(st, tenant, name, seq); err != nil {
		return err
	}
	if err := applySnapshotOp(ctx, s, ref, opts, op); err != nil {
		// Not applied, nothing sent: the number is given back.
		if rerr := a.storeSeq(st, tenant, name, seq-1); rerr != nil {
			return errors.Join(err, rerr)
		}
		return err
	}
	body, err := json.Marshal(op)
	if err != nil {
		return err
	}
	send := func(rep string, epoch int64) error { return a.sendSnapshotOp(rep, tenant, name, epoch, seq, body) }
	copies, err := a.replicate(tenant, name, rt, seq, "snapshot operation", send, "op", op.Op, "snapshot", op.Snap.Name)
	if err != nil {
		return err
	}
	// Every replica in sync has the operation now, and the others are
	// stale (never promoted; they catch up from this copy): no copy a
	// failover can choose lacks it. Unlike a write, it needs no second
	// copy to be answered: with no replica in sync the volume takes no
	// write anyway.
	if copies < 2 {
		a.log.Warn("volume snapshot operation on the primary only: no replica in sync", "volume", name, "seq", seq, "op", op.Op, "snapshot", op.Snap.Name)
	}
	return nil
}

// sendSnapshotOp sends one snapshot operation to a replica and waits
// until it applied it.
func (a *Agent) sendSnapshotOp(replica, tenant, name string, epoch int64, seq uint64, body []byte) error {
	hc, err := a.replicationClient()
	if err != nil {
		return err
	}
	hc.Timeout = 2 * time.Minute // a rollback copies a subvolume
	u := "http://volrep/" + url.PathEscape(tenant) + "/" + url.PathEscape(name) + "/" + url.PathEscape(replica) + "/snapshot"
	req, err := http.NewRequest(http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(volfs.HeaderEpoch, strconv.FormatInt(epoch, 10))
	req.Header.Set(volfs.HeaderSeq, strconv.FormatUint(seq, 10))
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}

// receiveSnapshotOp applies, on a replica, a snapshot operation its
// primary numbered (POST .../snapshot), in order with the writes.
func (a *Agent) receiveSnapshotOp(w http.ResponseWriter, r *http.Request, tenant, name string) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	seq, err := strconv.ParseUint(r.Header.Get(volfs.HeaderSeq), 10, 64)
	if err != nil {
		http.Error(w, "volume replication: no sequence number", http.StatusBadRequest)
		return
	}
	op, err := parseSnapOp(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	d, ref, opts, err := a.volumeDriver(tenant, name)
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	s, ok := d.(volume.Snapshotter)
	if !ok || !networkDriver(d.Name()) || !a.holdsVolume(tenant, name) {
		http.Error(w, "volume "+name+" has no replica here", http.StatusNotFound)
		return
	}
	st := a.volState(tenant, name)
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := a.loadSeq(st, tenant, name); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if seq != st.seq+1 {
		http.Error(w, fmt.Sprintf("volume %s: write %d after %d: out of order", name, seq, st.seq), http.StatusConflict)
		return
	}
	err = applySnapshotOp(r.Context(), s, ref, opts, op)
	if op.Op == snapDelete && errors.Is(err, volume.ErrSnapshotNotFound) {
		err = nil // already as the primary's
	}
	if err != nil {
		http.Error(w, fmt.Sprintf("volume %s: snapshot %s %s: %v", name, op.Op, op.Snap.Name, err), http.StatusConflict)
		return
	}
	if err := a.storeSeq(st, tenant, name, seq); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// parseSnapOp reads a snapshot operation a primary sent.
func parseSnapOp(r io.Reader) (snapOp, error) {
	var op snapOp
	if err := json.NewDecoder(r).Decode(&op); err != nil {
		return op, fmt.Errorf("snapshot operation: %w", err)
	}
	if !slices.Contains([]string{snapCreate, snapDelete, snapRollback}, op.Op) {
		return op, fmt.Errorf("unknown snapshot operation %q", op.Op)
	}
	if err := volume.CheckSnapshotName(op.Snap.Name); err != nil {
		return op, err
	}
	if op.Op == snapRollback && op.Keep.Name != "" {
		if err := volume.CheckSnapshotName(op.Keep.Name); err != nil {
			return op, err
		}
	}
	return op, nil
}

// replicatedSnapshotter is a volume's snapshotter whose changes go
// through snapshotOp: what the schedule runs with.
type replicatedSnapshotter struct {
	volume.Snapshotter
	a            *Agent
	tenant, name string
}

func (r replicatedSnapshotter) Snapshot(ctx context.Context, _ volume.Ref, s volume.Snapshot) error {
	return r.a.snapshotOp(ctx, r.tenant, r.name, snapOp{Op: snapCreate, Snap: s})
}

func (r replicatedSnapshotter) DeleteSnapshot(ctx context.Context, _ volume.Ref, name string) error {
	return r.a.snapshotOp(ctx, r.tenant, r.name, snapOp{Op: snapDelete, Snap: volume.Snapshot{Name: name}})
}

func (r replicatedSnapshotter) Rollback(ctx context.Context, _ volume.Ref, name string, _ volume.Options) error {
	return r.a.snapshotOp(ctx, r.tenant, r.name, snapOp{Op: snapRollback, Snap: volume.Snapshot{Name: name}, Keep: volume.RollbackKeep(time.Now())})
}

// replicaSnapshots answers, on a replica, the snapshots of its copy (GET
// .../snapshots): what a catch-up compares with the primary's.
func (a *Agent) replicaSnapshots(w http.ResponseWriter, r *http.Request, tenant, name string) {
	if !a.holdsVolume(tenant, name) {
		http.Error(w, "volume "+name+" has no replica here", http.StatusNotFound)
		return
	}
	s, ref, _, err := a.snapshotter(tenant, name)
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	snaps, err := s.Snapshots(r.Context(), ref)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(snaps)
}

// headerSnapshot marks the delta operations of a catch-up that send a
// snapshot the replica lacks: the snapshot (JSON: name, time, kind).
const headerSnapshot = "X-Volfs-Snapshot"

// snapshotCatchUpper is a driver that sends and receives snapshots in a
// catch-up (volume.Btrfs).
type snapshotCatchUpper interface {
	volume.Snapshotter
	SnapshotDir(ctx context.Context, ref volume.Ref, name string) (string, error)
	SnapshotCatchUpDirs(ctx context.Context, ref volume.Ref, name string) (tree, state string, err error)
	ReceiveSnapshot(ctx context.Context, ref volume.Ref, s volume.Snapshot, dir string) error
	EndSnapshotCatchUp(ctx context.Context, ref volume.Ref, name string) error
}

// snapshotDiff compares a primary's snapshots (mine) with a replica's
// (theirs): the replica drops those the primary does not have by name and
// time (removed while it was away, or removed and taken again), then
// receives those it lacks, oldest first.
func snapshotDiff(mine, theirs []volume.Snapshot) (drop []string, send []volume.Snapshot) {
	same := func(a, b volume.Snapshot) bool { return a.Name == b.Name && a.Created.Equal(b.Created) }
	kept := map[string]bool{}
	for _, t := range theirs {
		if slices.ContainsFunc(mine, func(m volume.Snapshot) bool { return same(m, t) }) {
			kept[t.Name] = true
			continue
		}
		drop = append(drop, t.Name)
	}
	for _, m := range mine {
		if !kept[m.Name] {
			send = append(send, m)
		}
	}
	return drop, send
}

// catchUpSnapshots makes the snapshots of replica (base: its volrep URL)
// the primary's: it drops the others and sends the missing ones, each by
// the delta engine.
func (a *Agent) catchUpSnapshots(ctx context.Context, hc *http.Client, base, tenant, name string, epoch int64) error {
	d, ref, _, err := a.volumeDriver(tenant, name)
	if err != nil {
		return err
	}
	sc, ok := d.(snapshotCatchUpper)
	if !ok {
		return nil
	}
	mine, err := sc.Snapshots(ctx, ref)
	if err != nil {
		return err
	}
	ep := strconv.FormatInt(epoch, 10)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/snapshots", nil)
	if err != nil {
		return err
	}
	req.Header.Set(volfs.HeaderEpoch, ep)
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	var theirs []volume.Snapshot
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		resp.Body.Close()
		return fmt.Errorf("replica's snapshots: %s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	err = json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&theirs)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("replica's snapshots: %w", err)
	}
	drop, send := snapshotDiff(mine, theirs)
	for _, n := range drop {
		body, _ := json.Marshal(volume.Snapshot{Name: n})
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/dropsnapshot", bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set(volfs.HeaderEpoch, ep)
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			return fmt.Errorf("replica: drop snapshot %s: %s: %s", n, resp.Status, bytes.TrimSpace(msg))
		}
	}
	state := filepath.Join(a.cfg.DataDir, "volfs", "catchup-snap", tenant, name)
	defer os.RemoveAll(state)
	for _, s := range send {
		dir, err := sc.SnapshotDir(ctx, ref, s.Name)
		if errors.Is(err, volume.ErrSnapshotNotFound) {
			continue // removed meanwhile: the pass under the lock sees it
		} else if err != nil {
			return err
		}
		hdr, err := json.Marshal(s)
		if err != nil {
			return err
		}
		remote := &delta.Remote{
			URL:    base,
			Client: &http.Client{Transport: hc.Transport},
			Header: http.Header{volfs.HeaderEpoch: {ep}, headerSnapshot: {string(hdr)}},
		}
		src := &delta.TreeSource{Root: dir, State: filepath.Join(state, s.Name)}
		if _, err := delta.Sync(ctx, src, remote); err != nil {
			return fmt.Errorf("send snapshot %s: %w", s.Name, err)
		}
		sent, _ := remote.Bytes()
		a.log.Info("volume replica received a snapshot it lacked", "volume", name, "snapshot", s.Name, "bytes", sent)
	}
	return nil
}

// receiveSnapshot serves, on a replica, one delta operation of a
// catch-up that sends a snapshot it lacks (hdr: the snapshot); the commit
// makes the snapshot.
func (a *Agent) receiveSnapshot(w http.ResponseWriter, r *http.Request, tenant, name, op, hdr string) {
	var snap volume.Snapshot
	if err := json.Unmarshal([]byte(hdr), &snap); err != nil {
		http.Error(w, "snapshot header: "+err.Error(), http.StatusBadRequest)
		return
	}
	if err := volume.CheckSnapshotName(snap.Name); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	d, ref, _, err := a.volumeDriver(tenant, name)
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	sc, ok := d.(snapshotCatchUpper)
	if !ok {
		http.Error(w, "volume "+name+" has no snapshots", http.StatusNotFound)
		return
	}
	tree, state, err := sc.SnapshotCatchUpDirs(r.Context(), ref, snap.Name)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	recv := delta.SharedReceiver(tree, state, false, false)
	if op != "commit" {
		delta.Serve(w, r, op, nil, recv)
		return
	}
	rec := httptest.NewRecorder()
	delta.Serve(rec, r, op, nil, recv)
	if rec.Code/100 == 2 {
		if err := sc.ReceiveSnapshot(r.Context(), ref, snap, tree); err != nil && !errors.Is(err, volume.ErrSnapshotExists) {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if err := sc.EndSnapshotCatchUp(r.Context(), ref, snap.Name); err != nil {
			a.log.Warn("volume catch-up: clean up", "volume", name, "snapshot", snap.Name, "err", err)
		}
	}
	copyRecorded(w, rec)
}

// dropReplicaSnapshot removes, on a replica that catches up, a snapshot
// its primary does not have (POST .../dropsnapshot).
func (a *Agent) dropReplicaSnapshot(w http.ResponseWriter, r *http.Request, tenant, name string) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	var snap volume.Snapshot
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&snap); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if !a.holdsVolume(tenant, name) {
		http.Error(w, "volume "+name+" has no replica here", http.StatusNotFound)
		return
	}
	s, ref, _, err := a.snapshotter(tenant, name)
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	if err := s.DeleteSnapshot(r.Context(), ref, snap.Name); err != nil && !errors.Is(err, volume.ErrSnapshotNotFound) {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
