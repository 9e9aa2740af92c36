package agent

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/macro-cloud/macro/delta"
	"github.com/macro-cloud/macro/volume"
	"github.com/macro-cloud/macro/volume/volfs"
)

// Catch-up: a replica that missed writes (stale) is brought back by the
// delta engine, driven by the primary: a first delta.Sync of the
// primary's files to the replica while writes go on, a second under the
// volume's write lock (only what changed meanwhile), which also gives the
// replica the primary's sequence number; then the replica is recorded in
// sync and gets every write again. The replica receives the tree beside
// its copy and makes it its copy's contents (volume.Btrfs
// ReplaceContents: it stays a subvolume, with its size and snapshots).
// Before the second pass, the replica's snapshots are made the primary's
// (volsnap.go, catchUpSnapshots): it drops those the primary no longer
// has (or has under the same name from another time) and receives those
// it lacks, each by the delta engine into a tree beside its copy that
// becomes a read-only snapshot with the primary's name and time.

// catchUpper is a driver whose volumes can catch up (volume.Btrfs).
type catchUpper interface {
	CatchUpDirs(ctx context.Context, ref volume.Ref) (tree, state string, err error)
	EndCatchUp(ctx context.Context, ref volume.Ref) error
	ReplaceContents(ctx context.Context, ref volume.Ref, opts volume.Options, dir string) error
}

// deltaOps are the delta engine's operations a replica serves.
var deltaOps = map[string]bool{"want": true, "put": true, "commit": true, "known": true}

// receiveCatchUp serves one delta operation of a catch-up on the replica.
func (a *Agent) receiveCatchUp(w http.ResponseWriter, r *http.Request, tenant, name, op string) {
	d, ref, opts, err := a.volumeDriver(tenant, name)
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	cu, ok := d.(catchUpper)
	if !ok || !networkDriver(d.Name()) || !a.holdsVolume(tenant, name) {
		http.Error(w, "volume "+name+" has no replica here", http.StatusNotFound)
		return
	}
	if h := r.Header.Get(headerSnapshot); h != "" {
		a.receiveSnapshot(w, r, tenant, name, op, h)
		return
	}
	tree, state, err := cu.CatchUpDirs(r.Context(), ref)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	recv := delta.SharedReceiver(tree, state, false, false)
	if op != "commit" {
		delta.Serve(w, r, op, nil, recv)
		return
	}
	st := a.volState(tenant, name)
	st.mu.Lock()
	defer st.mu.Unlock()
	rec := httptest.NewRecorder()
	delta.Serve(rec, r, op, nil, recv)
	if rec.Code/100 == 2 {
		if err := cu.ReplaceContents(r.Context(), ref, opts, tree); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if s := r.Header.Get(volfs.HeaderSeq); s != "" {
			// The last pass: the copy is the primary's at write seq.
			seq, err := strconv.ParseUint(s, 10, 64)
			if err == nil {
				err = a.storeSeq(st, tenant, name, seq)
			}
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			if err := cu.EndCatchUp(r.Context(), ref); err != nil {
				a.log.Warn("volume catch-up: clean up", "volume", name, "err", err)
			}
		}
	}
	copyRecorded(w, rec)
}

// volumeReplication brings back, every few seconds, the replicas that are
// not in sync of the volumes this node is the primary of.
func (a *Agent) volumeReplication(ctx context.Context, every time.Duration) {
	running := map[string]bool{}
	gone := map[string]bool{} // volumes whose route was refused once
	done := make(chan string)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case k := <-done:
			delete(running, k)
			continue
		case <-t.C:
		}
		hc, err := a.replicationClient()
		if err != nil {
			continue
		}
		recs, _ := filepath.Glob(filepath.Join(a.cfg.DataDir, "volumes", "*", "*", "volume.json"))
		for _, p := range recs {
			vd := filepath.Dir(p)
			tenant, name := filepath.Base(filepath.Dir(vd)), filepath.Base(vd)
			d, _, _, err := a.volumeDriver(tenant, name)
			if err != nil || !networkDriver(d.Name()) {
				continue
			}
			rt, err := volumeRoute(hc, tenant, name)
			if errors.Is(err, errNoBusiness) {
				// The volume is gone, or it no longer lists this node
				// (the servers refuse its route to a node without
				// business with it): drop the copy once this is seen
				// twice in a row, never on one answer alone.
				k := tenant + "/" + name
				if gone[k] {
					delete(gone, k)
					a.dropCopy(ctx, tenant, name, rt)
				} else {
					gone[k] = true
				}
				continue
			}
			delete(gone, tenant+"/"+name)
			if err != nil {
				continue
			}
			if !slices.Contains(rt.InSync, a.cfg.Node.Name) && !slices.Contains(rt.Others, a.cfg.Node.Name) && rt.Primary != a.cfg.Node.Name {
				a.dropCopy(ctx, tenant, name, rt)
				continue
			}
			if rt.Primary != a.cfg.Node.Name {
				continue
			}
			for _, rep := range rt.Others {
				k := tenant + "/" + name + "/" + rep
				if running[k] {
					continue
				}
				running[k] = true
				go func() {
					if err := a.catchUp(ctx, tenant, name, rep, rt.Epoch); err != nil && ctx.Err() == nil {
						a.log.Debug("volume catch-up", "volume", name, "replica", rep, "err", err)
					}
					select {
					case done <- k:
					case <-ctx.Done():
					}
				}()
			}
		}
	}
}

// catchUp brings replica of a volume this node is the primary of (at
// epoch) back in sync.
func (a *Agent) catchUp(ctx context.Context, tenant, name, replica string, epoch int64) error {
	hc, err := a.replicationClient()
	if err != nil {
		return err
	}
	root, err := a.networkRoot(ctx, tenant, name)
	if err != nil {
		return err
	}
	base := "http://volrep/" + url.PathEscape(tenant) + "/" + url.PathEscape(name) + "/" + url.PathEscape(replica)
	// Is it there? A node that is down stays stale.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/seq", nil)
	if err != nil {
		return err
	}
	req.Header.Set(volfs.HeaderEpoch, strconv.FormatInt(epoch, 10))
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New("replica " + replica + ": " + resp.Status)
	}
	if err := a.setReplicaState(tenant, name, replica, volume.ReplicaCatchingUp, epoch); err != nil {
		return err
	}
	start := time.Now()
	src := &delta.TreeSource{Root: root, State: filepath.Join(a.cfg.DataDir, "volfs", "catchup", tenant, name)}
	remote := &delta.Remote{
		URL:    base,
		Client: &http.Client{Transport: hc.Transport},
		Header: http.Header{volfs.HeaderEpoch: {strconv.FormatInt(epoch, 10)}},
	}
	if _, err := delta.Sync(ctx, src, remote); err != nil {
		return err
	}
	// The snapshots it lacks (the long part, while writes go on).
	if err := a.catchUpSnapshots(ctx, hc, base, tenant, name, epoch); err != nil {
		return err
	}
	st := a.volState(tenant, name)
	st.mu.Lock()
	defer st.mu.Unlock()
	// Snapshot operations are under the lock too: what is sent now
	// (snapshots taken or removed meanwhile) is the last difference.
	if err := a.catchUpSnapshots(ctx, hc, base, tenant, name, epoch); err != nil {
		return err
	}
	if err := a.loadSeq(st, tenant, name); err != nil {
		return err
	}
	remote.Header.Set(volfs.HeaderSeq, strconv.FormatUint(st.seq, 10))
	stats, err := delta.Sync(ctx, src, remote)
	if err != nil {
		return err
	}
	if err := a.setReplicaState(tenant, name, replica, volume.ReplicaInSync, epoch); err != nil {
		return errors.Join(errors.New("caught up but not recorded"), err)
	}
	if st.caughtUp == nil {
		st.caughtUp = map[string]int64{}
	}
	st.caughtUp[replica] = epoch // writes queued with an older route get it too
	sent, _ := remote.Bytes()
	a.log.Info("volume replica caught up", "volume", name, "replica", replica, "seq", st.seq, "bytes", sent, "last", stats, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// dropCopy removes this node's copy of a volume whose record no longer
// lists the node (rt: the volume's route, read just now): the leader
// replaced its replica while the node was down (control/volumes.go). The
// copy is stale and was fenced off by a new epoch; it is not made a
// replica again.
func (a *Agent) dropCopy(ctx context.Context, tenant, name string, rt volfs.Route) {
	st := a.volState(tenant, name)
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := a.RemoveVolume(ctx, tenant, name); err != nil {
		a.log.Warn("volume: drop a copy that is no longer a replica", "tenant", tenant, "volume", name, "err", err)
		return
	}
	st.seq, st.got = 0, false
	a.log.Warn("volume: dropped this node's stale copy; the volume's copies are elsewhere now", "tenant", tenant, "volume", name,
		"primary", rt.Primary, "epoch", rt.Epoch)
}
