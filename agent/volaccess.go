package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/macro-cloud/macro/types"
	"github.com/macro-cloud/macro/volume"
)

// Volumes reached without a pod (WebDAV and S3, package access) on a
// server whose node does not hold them: an nfs or gfs volume whose primary
// is another node, or that has replicas (its writes must go through the
// primary to be replicated), is mounted here through FUSE once, at
// DataDir/volfs/access/<tenant>/<name>, and the mount is kept for later
// requests until the server stops (CloseAccess). An lv2 or local volume
// that another node holds is mounted the same way, from that node (which
// serves it without replication). A mount of a volume removed since is
// harmless: access finds no volume of that name before it looks at the
// mount, and a new volume of the name is reached through it as the old
// one was.

// AccessRoot is the directory through which a request without a pod
// reaches the files of the tenant's volume of that driver.
// v.Node is the node that holds an lv2 or local volume ("": none yet, or
// not known: this node's, or nobody's).
func (a *Agent) AccessRoot(ctx context.Context, v types.Volume) (string, error) {
	tenant, name := v.Tenant, v.Name
	if !networkDriver(v.Driver) && (v.Node == "" || v.Node == a.cfg.Node.Name) {
		if err := a.limitLocal(tenant, name, v.Limit); err != nil {
			return "", fmt.Errorf("volume %s: %w", name, err)
		}
		return a.VolumeRoot(ctx, tenant, name)
	}
	// A request that may use the directory is recorded (until it ends)
	// before the route is asked (voldirect.go).
	release := a.holdAccess(ctx, tenant, name)
	hc, err := a.replicationClient()
	if err != nil {
		return a.VolumeRoot(ctx, tenant, name) // no servers to ask: here or nowhere
	}
	rt, err := volumeRoute(hc, tenant, name)
	if err != nil {
		release()
		return "", fmt.Errorf("volume %s: %w", name, err)
	}
	if rt.Primary == a.cfg.Node.Name && !rt.Replicated() {
		return a.VolumeRoot(ctx, tenant, name)
	}
	release()
	if _, err := volume.VolumeDir(a.cfg.DataDir, volume.Ref{Tenant: tenant, Name: name}); err != nil {
		return "", err // names that are no path element
	}
	dir := filepath.Join(a.cfg.DataDir, "volfs", "access", tenant, name)
	a.accessMu.Lock()
	defer a.accessMu.Unlock()
	a.volfs.mu.Lock()
	_, mounted := a.volfs.m[dir]
	a.volfs.mu.Unlock()
	if mounted {
		return dir, nil
	}
	return a.mountVolfs(tenant, name, dir, a.log.With("volume", name, "for", "access"))
}

// CloseAccess unmounts the volumes mounted for access (also those a
// previous process left), when the server stops.
func (a *Agent) CloseAccess() {
	base := filepath.Join(a.cfg.DataDir, "volfs", "access")
	tenants, err := os.ReadDir(base)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	for _, t := range tenants {
		vols, _ := os.ReadDir(filepath.Join(base, t.Name()))
		for _, v := range vols {
			dir := filepath.Join(base, t.Name(), v.Name())
			a.volfs.mu.Lock()
			mnt := a.volfs.m[dir]
			delete(a.volfs.m, dir)
			a.volfs.mu.Unlock()
			if mnt == nil {
				a.stopShimAt(dir)
			}
			if mnt == nil || mnt.Unmount() != nil {
				unix.Unmount(dir, unix.MNT_DETACH)
			}
		}
	}
}
