package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"

	"github.com/macro-cloud/macro/internal/atomicfile"
	"github.com/macro-cloud/macro/volume"
)

// Direct writers. A pod on the primary's node of an nfs or gfs volume
// without replicas binds the volume's directory (volmount.go), and WebDAV
// and S3 on a server of that node use it directly (volaccess.go): their
// writes bypass the primary's write sequence. Before the leader gives such
// a volume its first replica (control/volumes.go) it marks the volume
// (types.Volume.Replicating: its route says Sequenced, so nothing binds it
// directly from then on) and then asks this node which writers that bound
// it before are left (DirectWriters); it adds the replica only when none
// is.
//
// The answer must cover a writer that read the volume's route before the
// mark landed, even if it had not bound anything yet when asked: so a
// writer is recorded before it asks the route, and forgotten only when the
// route sent it through FUSE or it is gone. A pod's record is a file in
// its directory (DataDir/pods/<id>/direct/<mount index>), which outlives
// an agent's restart as the pod's bind does, and an agent that prepares
// a running pod again keeps it; it is dropped when the pod's container
// starts again (its mounts are decided anew) or is removed with its
// directory. A request of WebDAV or S3 is recorded in memory for as long
// as it runs (its context).

// directRecord is a pod's record of a volume it binds directly.
type directRecord struct {
	Tenant string `json:"tenant"`
	Volume string `json:"volume"`
	Pod    string `json:"pod"`
}

// directAccess counts the requests of WebDAV and S3 that use a volume's
// directory, by tenant/name.
type directAccess struct {
	mu sync.Mutex
	n  map[string]int
}

func (w *worker) directDir() string { return filepath.Join(w.dir, "direct") }

// forgetDirect drops the pod's records before its container starts (none
// runs): its mounts are decided anew.
func (w *worker) forgetDirect() error { return os.RemoveAll(w.directDir()) }

// recordDirect records that the pod's mount i may bind volume name of
// tenant directly; undo forgets it.
func (w *worker) recordDirect(tenant, name, pod string, i int) (undo func(), err error) {
	if err := os.MkdirAll(w.directDir(), 0o700); err != nil {
		return nil, err
	}
	b, err := json.Marshal(directRecord{Tenant: tenant, Volume: name, Pod: pod})
	if err != nil {
		return nil, err
	}
	p := filepath.Join(w.directDir(), strconv.Itoa(i))
	if old, err := os.ReadFile(p); err == nil && bytes.Equal(old, b) {
		// Recorded by an earlier run of this container, which may
		// still bind it (an agent that adopts a running pod prepares
		// it again): only forgetDirect drops it.
		return func() {}, nil
	}
	if err := atomicfile.Write(p, b, 0o600); err != nil {
		return nil, fmt.Errorf("volume %s: record a direct mount: %w", name, err)
	}
	return func() { os.Remove(p) }, nil
}

// holdAccess records a request of WebDAV or S3 that may use the volume's
// directory until ctx ends; release forgets it earlier.
func (a *Agent) holdAccess(ctx context.Context, tenant, name string) (release func()) {
	k := tenant + "/" + name
	a.direct.mu.Lock()
	if a.direct.n == nil {
		a.direct.n = map[string]int{}
	}
	a.direct.n[k]++
	a.direct.mu.Unlock()
	var once sync.Once
	rel := func() {
		once.Do(func() {
			a.direct.mu.Lock()
			defer a.direct.mu.Unlock()
			if a.direct.n[k]--; a.direct.n[k] <= 0 {
				delete(a.direct.n, k)
			}
		})
	}
	stop := context.AfterFunc(ctx, rel)
	return func() { stop(); rel() }
}

// DirectWriters are the writers of this node that bind the tenant's volume
// name directly, or may (they asked its route before it was marked): the
// names of pods, and volume.DirectAccess for requests running. Empty: every write
// of the volume here goes through its primary's write sequence.
func (a *Agent) DirectWriters(tenant, name string) ([]string, error) {
	var out []string
	a.direct.mu.Lock()
	if a.direct.n[tenant+"/"+name] > 0 {
		out = append(out, volume.DirectAccess)
	}
	a.direct.mu.Unlock()
	recs, err := filepath.Glob(filepath.Join(a.cfg.DataDir, "pods", "*", "direct", "[0-9]*"))
	if err != nil {
		return nil, err
	}
	for _, p := range recs {
		b, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue // forgotten meanwhile
		}
		if err != nil {
			return nil, err
		}
		var r directRecord
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("direct mount record %s: %w", p, err)
		}
		if r.Tenant == tenant && r.Volume == name && !slices.Contains(out, r.Pod) {
			out = append(out, r.Pod)
		}
	}
	slices.Sort(out)
	return out, nil
}
