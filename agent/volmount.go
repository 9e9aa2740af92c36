package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/macro-cloud/macro/types"
	"github.com/macro-cloud/macro/volume"
	"github.com/macro-cloud/macro/volume/volfs"
)

// Remote volumes. An nfs or gfs volume lives on its primary node; a pod
// on another node mounts it through FUSE (package volume/volfs), one mount
// per pod and volume at DataDir/volfs/mnt/<pod>/<mount index>, outside the
// pod's directory so that removing a pod can never reach the volume's
// files. The mount's operations go to the servers (Config.VolumeTransport)
// and from there to the primary's tunnel. Pods on the primary itself bind
// the volume's directory as before (no FUSE on the data path there).

// volfsMounts are this agent's remote volume mounts: mount processes
// (volshim.go), or FUSE servers in this process where there are none
// (Config.VolumeShim nil).
type volfsMounts struct {
	mu sync.Mutex
	m  map[string]volfsMount // by mount point
	// states are the volumes' replication states (volrep.go), by
	// tenant/name.
	states sync.Map
}

// volfsMount is a mount that can be undone.
type volfsMount interface{ Unmount() error }

var (
	_ volfsMount = (*fuse.Server)(nil)
	_ volfsMount = (*shim)(nil)
)

// networkDriver tells whether a volume of driver d can be mounted from
// another node.
func networkDriver(d string) bool { return d == "nfs" || d == "gfs" }

// holdsVolume tells whether this node keeps the volume: its record (it
// was made here), or the data of a local volume that a pod made here.
func (a *Agent) holdsVolume(tenant, name string) bool {
	vd, err := volume.VolumeDir(a.cfg.DataDir, volume.Ref{Tenant: tenant, Name: name})
	if err != nil {
		return false
	}
	if _, err = os.Stat(filepath.Join(vd, "volume.json")); err == nil {
		return true
	}
	_, err = os.Stat(filepath.Join(vd, "_data"))
	return err == nil
}

// volumeSource is the host directory a pod's volume mount binds: the
// volume's own directory on this node, or a FUSE mount of it from its
// primary. A pod on the primary's node of a volume that has replicas (or
// is getting its first) mounts it through FUSE too, so that its writes
// are replicated; a replica's copy is never bound. A pod that may bind
// the directory is recorded before the route is asked (voldirect.go).
func (w *worker) volumeSource(pod types.Pod, i int, m types.Mount) (dir string, err error) {
	if !networkDriver(m.Driver) {
		if err := w.a.limitLocal(pod.Tenant, m.Source, m.Limit); err != nil {
			return "", fmt.Errorf("volume %s: %w", m.Source, err)
		}
		return w.a.VolumeRoot(context.Background(), pod.Tenant, m.Source)
	}
	forget, err := w.recordDirect(pod.Tenant, m.Source, pod.Name, i)
	if err != nil {
		return "", err
	}
	direct := false
	defer func() {
		if err != nil || !direct {
			forget()
		}
	}()
	hc, err := w.a.replicationClient()
	if err != nil {
		// No servers to ask (a server without an API port): the
		// volume is this node's or nobody's.
		if w.a.holdsVolume(pod.Tenant, m.Source) {
			direct = true
			return w.a.VolumeRoot(context.Background(), pod.Tenant, m.Source)
		}
		return "", fmt.Errorf("volume %s is held by another node, which this node cannot reach yet", m.Source)
	}
	rt, err := volumeRoute(hc, pod.Tenant, m.Source)
	if err != nil {
		return "", fmt.Errorf("mount volume %s: %w", m.Source, err)
	}
	if rt.Primary == w.a.cfg.Node.Name && !rt.Replicated() {
		direct = true
		return w.a.VolumeRoot(context.Background(), pod.Tenant, m.Source)
	}
	return w.mountRemoteVolume(pod.Tenant, i, m)
}

// volumeRoute asks the servers where a volume's operations go.
func volumeRoute(hc *http.Client, tenant, name string) (volfs.Route, error) {
	var rt volfs.Route
	resp, err := hc.Get("http://volfs/" + url.PathEscape(tenant) + "/" + url.PathEscape(name) + "/route")
	if err != nil {
		return rt, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		err := fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(msg))
		if resp.StatusCode == http.StatusNotFound {
			err = fmt.Errorf("%w: %w", errNoBusiness, err)
		}
		return rt, err
	}
	return rt, json.NewDecoder(resp.Body).Decode(&rt)
}

// errNoBusiness is the servers' answer to a volume's route when the volume
// does not exist or the asking node has no business with it: no pod of it
// uses the volume and its record lists no copy here.
var errNoBusiness = errors.New("the servers know no such volume for this node")

func (a *Agent) volfsDir(pod string, i int) string {
	return filepath.Join(a.cfg.DataDir, "volfs", "mnt", pod, strconv.Itoa(i))
}

func (w *worker) mountRemoteVolume(tenant string, i int, m types.Mount) (string, error) {
	return w.a.mountVolfs(tenant, m.Source, w.a.volfsDir(w.id, i), w.log.With("volume", m.Source))
}

// mountVolfs mounts the volume from its primary through FUSE at dir and
// keeps the mount in a.volfs: a mount process that a previous agent
// started and that still serves dir is adopted; else a new one is started
// (or, without Config.VolumeShim, a FUSE server in this process).
func (a *Agent) mountVolfs(tenant, name, dir string, log *slog.Logger) (string, error) {
	cache := filepath.Join(a.cfg.DataDir, "volfs", "cache")
	for _, d := range []string{dir, cache} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return "", err
		}
	}
	var mnt volfsMount
	if s, ok := a.adoptShim(dir, log); ok {
		mnt = s
	} else {
		// A mount whose process is gone no longer answers.
		if err := a.stopShimAt(dir); err != nil {
			return "", fmt.Errorf("volume %s: clear the old mount: %w", name, err)
		}
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
			return "", fmt.Errorf("volume %s: clear the old mount: %w", name, err)
		}
		if a.cfg.VolumeShim != nil {
			s, err := a.startShim(tenant, name, dir, cache, log)
			if err != nil {
				return "", fmt.Errorf("mount volume %s: %w", name, err)
			}
			mnt = s
		} else {
			hc, err := a.replicationClient()
			if err != nil {
				return "", fmt.Errorf("volume %s: %w", name, err)
			}
			srv, err := mountChecked(volfsClient(hc.Transport, tenant, name, log), name, dir, cache)
			if err != nil {
				return "", err
			}
			mnt = srv
		}
	}
	a.volfs.mu.Lock()
	if a.volfs.m == nil {
		a.volfs.m = map[string]volfsMount{}
	}
	a.volfs.m[dir] = mnt
	a.volfs.mu.Unlock()
	return dir, nil
}

// volfsBase is the URL of a volume's operations (Config.VolumeTransport).
func volfsBase(tenant, name string) string {
	return "http://volfs/" + url.PathEscape(tenant) + "/" + url.PathEscape(name)
}

// remoteVolumeMounted tells whether the pod's mount i is a FUSE mount.
func (a *Agent) remoteVolumeMounted(pod string, i int) bool {
	a.volfs.mu.Lock()
	defer a.volfs.mu.Unlock()
	_, ok := a.volfs.m[a.volfsDir(pod, i)]
	return ok
}

// remoteVolumeDir is the FUSE mount of a pod's remote volume, for docker
// cp: it exists while the pod's volumes are mounted.
func (a *Agent) remoteVolumeDir(pod string, i int) (string, error) {
	dir := a.volfsDir(pod, i)
	a.volfs.mu.Lock()
	_, ok := a.volfs.m[dir]
	a.volfs.mu.Unlock()
	if !ok {
		return "", errors.New("the volume lives on another node and is mounted here only while the container runs: start it first")
	}
	return dir, nil
}

// unmountRemoteVolumes unmounts the pod's FUSE mounts (also those a
// previous agent process left, which no longer answer).
func (w *worker) unmountRemoteVolumes(keepLive bool) error {
	base := filepath.Join(w.a.cfg.DataDir, "volfs", "mnt", w.id)
	entries, err := os.ReadDir(base)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	for _, e := range entries {
		p := filepath.Join(base, e.Name())
		w.a.volfs.mu.Lock()
		mnt, ours := w.a.volfs.m[p]
		if keepLive && !ours && shimAlive(w.a.shimState(p)) {
			w.a.volfs.mu.Unlock()
			continue
		}
		delete(w.a.volfs.m, p)
		w.a.volfs.mu.Unlock()
		if mnt == nil {
			// Left by a previous agent: its process, if any, goes.
			if err := w.a.stopShimAt(p); err != nil {
				return err
			}
		}
		if mnt == nil || mnt.Unmount() != nil {
			for {
				err := unix.Unmount(p, unix.MNT_DETACH)
				if err == unix.EINVAL || err == unix.ENOENT {
					break
				}
				if err != nil {
					return fmt.Errorf("unmount %s: %w", p, err)
				}
			}
		}
		if err := os.Remove(p); err != nil {
			return fmt.Errorf("remove mount point %s: %w", p, err)
		}
	}
	os.Remove(filepath.Join(w.a.cfg.DataDir, "volfs", "shim", "mnt", w.id))
	if err := os.Remove(base); err != nil && !(keepLive && errors.Is(err, unix.ENOTEMPTY)) {
		return err
	}
	return nil
}
