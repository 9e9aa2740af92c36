package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/macro-cloud/macro/internal/atomicfile"
	"github.com/macro-cloud/macro/volume"
	"github.com/macro-cloud/macro/volume/volfs"
)

// Replication of nfs and gfs volumes, the node's side. The primary serves
// every operation of other nodes' FUSE mounts (and of its own node's,
// when the volume has replicas); a server sends the volume's route with
// each request (volfs.RouteOf: epoch, replicas in sync). A write
// (a mutating metadata operation or a file's write-back) is numbered and
// applied here under the volume's write lock (a number is given back when
// the write fails here), then sent to every replica in
// sync through a server; one that fails is marked stale (through a
// server) before the write is acknowledged, and a write that is on fewer
// than two nodes of a replicated volume is not acknowledged (503: the
// client retries, then fails with EIO). A replica applies the writes it
// is sent to its own copy, in order, and keeps the number of the last.

// volumeState is what the agent keeps per volume for replication.
type volumeState struct {
	mu  sync.Mutex // the write lock
	seq uint64     // last write applied here; 0: not read yet
	got bool
	// caughtUp are the replicas this primary brought in sync
	// (volcatchup.go), with the epoch, until a route lists them in sync
	// (withCaughtUp).
	caughtUp map[string]int64
}

// withCaughtUp is rt with the replicas this primary brought in sync under
// rt's epoch among its replicas in sync (st.mu held). A write that waited
// for the write lock while a catch-up ended came with a route read before
// the replica was recorded in sync: sent without it, it would leave the
// replica a gap, stale again at the next write (and, under steady
// writes, at every catch-up's end). Sending a write to a replica that is
// no longer in sync is harmless: it refuses it, or the server does.
func (st *volumeState) withCaughtUp(rt volfs.Route) volfs.Route {
	for rep, epoch := range st.caughtUp {
		switch {
		case epoch < rt.Epoch || slices.Contains(rt.InSync, rep):
			delete(st.caughtUp, rep) // the route knows, or the epoch moved on
		case epoch == rt.Epoch && slices.Contains(rt.Others, rep):
			rt.InSync = append(slices.Clip(rt.InSync), rep)
			rt.Others = slices.DeleteFunc(slices.Clone(rt.Others), func(r string) bool { return r == rep })
		}
	}
	return rt
}

func (a *Agent) volState(tenant, name string) *volumeState {
	v, _ := a.volfs.states.LoadOrStore(tenant+"/"+name, &volumeState{})
	return v.(*volumeState)
}

func (a *Agent) seqFile(tenant, name string) (string, error) {
	vd, err := volume.VolumeDir(a.cfg.DataDir, volume.Ref{Tenant: tenant, Name: name})
	if err != nil {
		return "", err
	}
	return filepath.Join(vd, "seq"), nil
}

// loadSeq reads the volume's sequence number into st (st.mu held).
func (a *Agent) loadSeq(st *volumeState, tenant, name string) error {
	if st.got {
		return nil
	}
	f, err := a.seqFile(tenant, name)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(f)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return err
	default:
		if st.seq, err = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err != nil {
			return fmt.Errorf("volume %s: seq: %w", name, err)
		}
	}
	st.got = true
	return nil
}

// storeSeq records the number of the last write applied (st.mu held).
func (a *Agent) storeSeq(st *volumeState, tenant, name string, seq uint64) error {
	f, err := a.seqFile(tenant, name)
	if err != nil {
		return err
	}
	// Synced: a copy that forgot after a crash which writes it applied
	// would take them again or claim ones it lacks.
	if err := atomicfile.Write(f, []byte(strconv.FormatUint(seq, 10)+"\n"), 0o600); err != nil {
		return err
	}
	st.seq = seq
	return nil
}

// VolumeSeq is the number of the last write this node's copy of a volume
// applied.
func (a *Agent) VolumeSeq(tenant, name string) (uint64, error) {
	st := a.volState(tenant, name)
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := a.loadSeq(st, tenant, name); err != nil {
		return 0, err
	}
	return st.seq, nil
}

// networkRoot is the directory of this node's copy of a volume it serves
// to other nodes.
func (a *Agent) networkRoot(ctx context.Context, tenant, name string) (string, error) {
	if !a.holdsVolume(tenant, name) {
		return "", fmt.Errorf("node %s does not hold volume %s", a.cfg.Node.Name, name)
	}
	// An lv2 or local volume is served too: to a server's WebDAV and
	// S3 (the servers admit no other node to it: cmd/macro/nodecreds.go).
	d, ref, opts, err := a.volumeDriver(tenant, name)
	if err != nil {
		return "", err
	}
	return d.Root(ctx, ref, opts)
}

// VolumeFS serves the files of one of this node's nfs or gfs volumes to
// FUSE mounts (the node protocol's VolumeFiles), replicating its writes. The server
// that forwards the request checked the volume in the store.
func (a *Agent) VolumeFS(tenant, name string) http.Handler {
	local := volfs.Handler(func(ctx context.Context) (string, error) { return a.networkRoot(ctx, tenant, name) })
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rt := volfs.RouteOf(r.Header)
		write, body, err := isWrite(r, filepath.Join(a.cfg.DataDir, "volfs", "cache"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if !write {
			local.ServeHTTP(w, r)
			return
		}
		defer body.Close()
		st := a.volState(tenant, name)
		st.mu.Lock()
		defer st.mu.Unlock()
		rt = st.withCaughtUp(rt)
		rec := httptest.NewRecorder()
		if !rt.Replicated() {
			local.ServeHTTP(rec, withBody(r, body.reader()))
			copyRecorded(w, rec)
			return
		}
		// Numbered before it is applied: a crash between the two, or
		// before the replicas have it, leaves a gap in the numbers they
		// see with the next write, so they are marked stale and catch up
		// from this copy rather than miss a write it has.
		if err := a.loadSeq(st, tenant, name); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		seq := st.seq + 1
		if err := a.storeSeq(st, tenant, name, seq); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		local.ServeHTTP(rec, withBody(r, body.reader()))
		if !applied(rec) {
			if rec.Header().Get(volfs.HeaderPartial) != "" {
				// A ranged write that failed halfway changed this
				// copy alone.
				a.partialWrite(tenant, name, rt)
			}
			// Not applied, nothing sent: the number is given back.
			if err := a.storeSeq(st, tenant, name, seq-1); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			copyRecorded(w, rec)
			return
		}
		send := func(rep string, epoch int64) error { return a.sendWrite(r, rep, tenant, name, epoch, seq, body) }
		copies, err := a.replicate(tenant, name, rt, seq, "write", send)
		if err != nil {
			// The write may not be acknowledged: a promotion could
			// choose a replica without it.
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		if copies < 2 && !a.oneCopyEnough(tenant, name, rt) {
			http.Error(w, fmt.Sprintf("volume %s: write %d is on %d node only; it needs two (no replica in sync is reachable)", name, seq, copies), http.StatusServiceUnavailable)
			return
		}
		copyRecorded(w, rec)
	})
}

// oneCopyEnough tells whether a write that is on this primary only may be
// acknowledged: the volume is getting its first replica and none is in
// sync (volfs.Route.OneCopyEnough), in its route read again now, under
// the write lock: a write that waited for the lock while a catch-up
// brought the first replica in sync came with a route older than that,
// and the replica did not get it (the client retries with the new route).
func (a *Agent) oneCopyEnough(tenant, name string, rt volfs.Route) bool {
	if !rt.OneCopyEnough() {
		return false
	}
	hc, err := a.replicationClient()
	if err != nil {
		return false
	}
	nrt, err := volumeRoute(hc, tenant, name)
	return err == nil && nrt.Primary == a.cfg.Node.Name && nrt.OneCopyEnough()
}

// replicate sends the numbered operation seq (what it is, for messages)
// to every replica in sync of rt at once, again under a new epoch to those
// that refused it under the old one (resendUnderNewEpoch), and marks those
// that still missed it stale, so that no copy a failover can choose lacks
// it. It returns how many copies have it, this one included; an error
// when a replica that missed it cannot be marked stale.
func (a *Agent) replicate(tenant, name string, rt volfs.Route, seq uint64, what string, send func(rep string, epoch int64) error, logArgs ...any) (int, error) {
	copies := 1
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed []string
	for _, rep := range rt.InSync {
		wg.Go(func() {
			err := send(rep, rt.Epoch)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				a.log.Warn("volume replica missed a "+what, append([]any{"volume", name, "replica", rep, "seq", seq, "err", err}, logArgs...)...)
				failed = append(failed, rep)
				return
			}
			copies++
		})
	}
	wg.Wait()
	if len(failed) > 0 {
		failed, copies, rt = a.resendUnderNewEpoch(tenant, name, rt, seq, send, failed, copies)
	}
	for _, rep := range failed {
		delete(a.volState(tenant, name).caughtUp, rep) // st.mu is held
		if err := a.setReplicaState(tenant, name, rep, volume.ReplicaStale, rt.Epoch); err != nil {
			return copies, fmt.Errorf("volume %s: replica %s missed %s %d and cannot be marked stale: %w", name, rep, what, seq, err)
		}
	}
	return copies, nil
}

// partialWrite marks the replicas in sync stale after a
// ranged write that changed the primary's copy and then failed (a full
// volume halfway through a write batch): it was not sent to them, so their
// copies differ; they catch up from this one (volcatchup.go).
func (a *Agent) partialWrite(tenant, name string, rt volfs.Route) {
	for _, rep := range rt.InSync {
		err := a.setReplicaState(tenant, name, rep, volume.ReplicaStale, rt.Epoch)
		a.log.Warn("volume write failed halfway on the primary: replica marked stale", "volume", name, "replica", rep, "err", err)
	}
}

// resendUnderNewEpoch handles the replicas that refused a write because
// the volume's epoch moved while it was sent: the leader replaced a lost
// replica (control/volumes.go), and this node is still the primary. The
// write goes again, with its number, to those that are still in sync under
// the new epoch; the others need no mark (they are no longer in sync, or
// no longer replicas). It returns the replicas that still failed, the
// copies the write is on and the route to mark them stale under. send
// sends the write to a replica under an epoch.
func (a *Agent) resendUnderNewEpoch(tenant, name string, rt volfs.Route, seq uint64, send func(rep string, epoch int64) error, failed []string, copies int) ([]string, int, volfs.Route) {
	hc, err := a.replicationClient()
	if err != nil {
		return failed, copies, rt
	}
	nrt, err := volumeRoute(hc, tenant, name)
	if err != nil || nrt.Epoch <= rt.Epoch || nrt.Primary != a.cfg.Node.Name {
		return failed, copies, rt
	}
	var still []string
	for _, rep := range failed {
		if !slices.Contains(nrt.InSync, rep) {
			continue
		}
		if err := send(rep, nrt.Epoch); err != nil {
			a.log.Warn("volume replica missed a write under the new epoch", "volume", name, "replica", rep, "seq", seq, "epoch", nrt.Epoch, "err", err)
			still = append(still, rep)
			continue
		}
		copies++
	}
	a.log.Info("volume write sent again under a new epoch", "volume", name, "seq", seq, "epoch", nrt.Epoch, "failed", still)
	return still, copies, nrt
}

// spooled is a write's body, kept to be sent again to each replica.
type spooled struct {
	b []byte
	f *os.File
	n int64
}

func (s *spooled) reader() io.Reader {
	if s.f != nil {
		return io.NewSectionReader(s.f, 0, s.n)
	}
	return bytes.NewReader(s.b)
}

func (s *spooled) Close() error {
	if s.f != nil {
		return s.f.Close()
	}
	return nil
}

// isWrite tells whether r changes the volume, and keeps its body (a
// write-back's in an unlinked file in dir).
func isWrite(r *http.Request, dir string) (bool, *spooled, error) {
	switch op := path.Base(r.URL.Path); {
	case op == "data" && r.Method == http.MethodPut,
		op == volfs.OpWrite && r.Method == http.MethodPost: // a ranged write-back (volfs write batch)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return false, nil, err
		}
		f, err := os.CreateTemp(dir, "volrep-")
		if err != nil {
			return false, nil, err
		}
		os.Remove(f.Name())
		n, err := io.Copy(f, r.Body)
		if err != nil {
			f.Close()
			return false, nil, err
		}
		return true, &spooled{f: f, n: n}, nil
	case op == "op" && r.Method == http.MethodPost:
		b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			return false, nil, err
		}
		var q struct{ Op string }
		json.Unmarshal(b, &q)
		switch q.Op {
		case volfs.OpMkdir, volfs.OpCreate, volfs.OpUnlink, volfs.OpRmdir, volfs.OpRename, volfs.OpSymlink, volfs.OpLink, volfs.OpSetattr:
			return true, &spooled{b: b}, nil
		}
		r.Body = io.NopCloser(bytes.NewReader(b))
	}
	return false, nil, nil
}

func withBody(r *http.Request, body io.Reader) *http.Request {
	r2 := r.Clone(r.Context())
	r2.Body = io.NopCloser(body)
	return r2
}

// applied tells whether a recorded volfs answer is a success.
func applied(rec *httptest.ResponseRecorder) bool {
	if rec.Code != http.StatusOK {
		return false
	}
	var rep volfs.Reply
	return json.Unmarshal(rec.Body.Bytes(), &rep) == nil && rep.Errno == 0
}

func copyRecorded(w http.ResponseWriter, rec *httptest.ResponseRecorder) {
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	w.Write(rec.Body.Bytes())
}

// replicationClient carries writes to replicas through the servers.
func (a *Agent) replicationClient() (*http.Client, error) {
	var tr http.RoundTripper
	if a.cfg.VolumeTransport != nil {
		tr = a.cfg.VolumeTransport()
	}
	if tr == nil {
		return nil, errors.New("no way to the servers yet")
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}, nil
}

// sendWrite sends one write to a replica and waits until it applied it.
func (a *Agent) sendWrite(r *http.Request, replica, tenant, name string, epoch int64, seq uint64, body *spooled) error {
	hc, err := a.replicationClient()
	if err != nil {
		return err
	}
	u := "http://volrep/" + url.PathEscape(tenant) + "/" + url.PathEscape(name) + "/" + url.PathEscape(replica) + "/" + path.Base(r.URL.Path)
	if r.URL.RawQuery != "" {
		u += "?" + r.URL.RawQuery
	}
	req, err := http.NewRequest(r.Method, u, body.reader())
	if err != nil {
		return err
	}
	if body.f != nil {
		req.ContentLength = body.n
	}
	req.Header.Set("Content-Type", r.Header.Get("Content-Type"))
	req.Header.Set(volfs.HeaderEpoch, strconv.FormatInt(epoch, 10))
	req.Header.Set(volfs.HeaderSeq, strconv.FormatUint(seq, 10))
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	var rep volfs.Reply
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		return err
	}
	if rep.Errno != 0 {
		return fmt.Errorf("the replica answers %v: its copy differs", rep.Err())
	}
	return nil
}

// setReplicaState records a replica's state through a server.
func (a *Agent) setReplicaState(tenant, name, replica, state string, epoch int64) error {
	hc, err := a.replicationClient()
	if err != nil {
		return err
	}
	u := "http://volrep/" + url.PathEscape(tenant) + "/" + url.PathEscape(name) + "/" + url.PathEscape(replica) + "/state?state=" + url.QueryEscape(state)
	req, err := http.NewRequest(http.MethodPost, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set(volfs.HeaderEpoch, strconv.FormatInt(epoch, 10))
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

// VolumeReplicaFS applies the writes a volume's primary sends to this
// node's replica of it, in order, and answers GET .../seq and GET
// .../direct (DirectWriters) (the node protocol's VolumeReplicas).
func (a *Agent) VolumeReplicaFS(tenant, name string) http.Handler {
	local := volfs.Handler(func(ctx context.Context) (string, error) { return a.networkRoot(ctx, tenant, name) })
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if op := path.Base(r.URL.Path); deltaOps[op] {
			a.receiveCatchUp(w, r, tenant, name, op)
			return
		}
		switch path.Base(r.URL.Path) {
		case "snapshot":
			a.receiveSnapshotOp(w, r, tenant, name)
			return
		case "snapshots":
			a.replicaSnapshots(w, r, tenant, name)
			return
		case "dropsnapshot":
			a.dropReplicaSnapshot(w, r, tenant, name)
			return
		}
		if path.Base(r.URL.Path) == "direct" {
			ws, err := a.DirectWriters(tenant, name)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			if ws == nil {
				ws = []string{}
			}
			json.NewEncoder(w).Encode(ws)
			return
		}
		if path.Base(r.URL.Path) == "seq" {
			seq, err := a.VolumeSeq(tenant, name)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			json.NewEncoder(w).Encode(seq)
			return
		}
		seq, err := strconv.ParseUint(r.Header.Get(volfs.HeaderSeq), 10, 64)
		if err != nil {
			http.Error(w, "volume replication: no sequence number", http.StatusBadRequest)
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
			// A gap (or a write applied twice): this copy is not the
			// primary's; the primary marks it stale.
			http.Error(w, fmt.Sprintf("volume %s: write %d after %d: out of order", name, seq, st.seq), http.StatusConflict)
			return
		}
		rec := httptest.NewRecorder()
		local.ServeHTTP(rec, r)
		if applied(rec) {
			if err := a.storeSeq(st, tenant, name, seq); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
		}
		copyRecorded(w, rec)
	})
}
