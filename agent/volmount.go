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

// volfsMounts are the FUSE servers of this agent's remote volume mounts.
type volfsMounts struct {
	mu sync.Mutex
	m  map[string]*fuse.Server // by mount point
	// states are the volumes' replication states (volrep.go), by
	// tenant/name.
	states sync.Map
}

// networkDriver tells whether a volume of driver d can be mounted from
// another node.
func networkDriver(d string) bool { return d == "nfs" || d == "gfs" }

// holdsVolume tells whether this node keeps the volume's record (it was
// made here).
func (a *Agent) holdsVolume(tenant, name string) bool {
	vd, err := volume.VolumeDir(a.cfg.DataDir, volume.Ref{Tenant: tenant, Name: name})
	if err != nil {
		return false
	}
	_, err = os.Stat(filepath.Join(vd, "volume.json"))
	return err == nil
}

// volumeSource is the host directory a pod's volume mount binds: the
// volume's own directory on this node, or a FUSE mount of it from its
// primary. A pod on the primary's node of a volume that has replicas
// mounts it through FUSE too, so that its writes are replicated; a
// replica's copy is never bound.
func (w *worker) volumeSource(pod types.Pod, i int, m types.Mount) (string, error) {
	if !networkDriver(m.Driver) {
		return w.a.VolumeRoot(context.Background(), pod.Tenant, m.Source)
	}
	hc, err := w.a.replicationClient()
	if err != nil {
		// No servers to ask (a server without an API port): the
		// volume is this node's or nobody's.
		if w.a.holdsVolume(pod.Tenant, m.Source) {
			return w.a.VolumeRoot(context.Background(), pod.Tenant, m.Source)
		}
		return "", fmt.Errorf("volume %s is held by another node, which this node cannot reach yet", m.Source)
	}
	rt, err := volumeRoute(hc, pod.Tenant, m.Source)
	if err != nil {
		return "", fmt.Errorf("mount volume %s: %w", m.Source, err)
	}
	if rt.Primary == w.a.cfg.Node.Name && !rt.Replicated() {
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
		return rt, fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	return rt, json.NewDecoder(resp.Body).Decode(&rt)
}

func (a *Agent) volfsDir(pod string, i int) string {
	return filepath.Join(a.cfg.DataDir, "volfs", "mnt", pod, strconv.Itoa(i))
}

func (w *worker) mountRemoteVolume(tenant string, i int, m types.Mount) (string, error) {
	return w.a.mountVolfs(tenant, m.Source, w.a.volfsDir(w.id, i), w.log.With("volume", m.Source))
}

// mountVolfs mounts the volume from its primary through FUSE at dir and
// keeps the mount's server in a.volfs.
func (a *Agent) mountVolfs(tenant, name, dir string, log *slog.Logger) (string, error) {
	hc, err := a.replicationClient()
	if err != nil {
		return "", fmt.Errorf("volume %s: %w", name, err)
	}
	cache := filepath.Join(a.cfg.DataDir, "volfs", "cache")
	for _, d := range []string{dir, cache} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return "", err
		}
	}
	c := &volfs.Client{
		HC:      &http.Client{Transport: hc.Transport},
		Base:    "http://volfs/" + url.PathEscape(tenant) + "/" + url.PathEscape(name),
		OnError: func(err error) { log.Warn("remote volume", "err", err) },
	}
	// One call first, so that a volume that cannot be reached fails the
	// start with the reason rather than with EIO inside the pod.
	probe := *c
	var reason error
	probe.OnError = func(err error) { reason = err }
	if _, err := probe.Op(context.Background(), volfs.Request{Op: volfs.OpStat}); err != nil {
		if reason != nil {
			err = reason
		}
		return "", fmt.Errorf("mount volume %s from its node: %w", name, err)
	}
	srv, err := volfs.Mount(dir, c, volfs.MountOptions{CacheDir: cache, Name: "volfs:" + name})
	if err != nil {
		return "", fmt.Errorf("mount volume %s: %w", name, err)
	}
	a.volfs.mu.Lock()
	if a.volfs.m == nil {
		a.volfs.m = map[string]*fuse.Server{}
	}
	a.volfs.m[dir] = srv
	a.volfs.mu.Unlock()
	return dir, nil
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
func (w *worker) unmountRemoteVolumes() error {
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
		srv := w.a.volfs.m[p]
		delete(w.a.volfs.m, p)
		w.a.volfs.mu.Unlock()
		if srv == nil || srv.Unmount() != nil {
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
	return os.Remove(base)
}
