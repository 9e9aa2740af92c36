package agent

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/macro-cloud/macro/delta"
	"github.com/macro-cloud/macro/runtime/ocispec"
	"github.com/macro-cloud/macro/types"
	"github.com/macro-cloud/macro/volume"
)

// Volumes: each volume of this node is kept by its driver (package
// volume): local (a directory), lv2 (a loop-mounted ext4 image), nfs and
// gfs (btrfs subvolumes of the node's pool). What a volume was made with
// is recorded in DataDir/volumes/<tenant>/<name>/volume.json when the
// API creates it here; a volume without that record is local, made when
// a pod first mounts it. A tenant's volumes are under its own name, so a
// name never reaches another tenant's data.

// volumeRecord is what the node keeps of a volume besides its data.
type volumeRecord struct {
	Driver  string            `json:"driver"`
	Options map[string]string `json:"options,omitempty"`
	// Limit is a local volume's size (types.Volume.Limit).
	Limit int64 `json:"limit,omitempty"`
}

func (a *Agent) volumes() volume.Registry {
	a.volOnce.Do(func() { a.vols = volume.NewRegistry(a.cfg.DataDir, a.cfg.Volumes) })
	return a.vols
}

// volumeDriver is the driver a volume of this node was made with, and its
// parsed options.
func (a *Agent) volumeDriver(tenant, name string) (volume.Driver, volume.Ref, volume.Options, error) {
	ref := volume.Ref{Tenant: tenant, Name: name}
	vd, err := volume.VolumeDir(a.cfg.DataDir, ref)
	if err != nil {
		return nil, ref, volume.Options{}, err
	}
	var rec volumeRecord
	b, err := os.ReadFile(filepath.Join(vd, "volume.json"))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		rec.Driver = "local"
	case err != nil:
		return nil, ref, volume.Options{}, err
	default:
		if err := json.Unmarshal(b, &rec); err != nil {
			return nil, ref, volume.Options{}, fmt.Errorf("volume %s: record: %w", name, err)
		}
	}
	opts, err := volume.ParseOptions(rec.Driver, rec.Options)
	if err != nil {
		return nil, ref, opts, fmt.Errorf("volume %s: %w", name, err)
	}
	if rec.Driver == "local" {
		opts.Size = rec.Limit
	}
	d, err := a.volumes().Driver(rec.Driver)
	return d, ref, opts, err
}

// limitLocal records the size of a local volume that is not on this node
// yet, before a pod or an access makes it (volume.Local holds it to that
// size); a volume that is here already stays as it is.
func (a *Agent) limitLocal(tenant, name string, limit int64) error {
	if limit <= 0 {
		return nil
	}
	vd, err := volume.VolumeDir(a.cfg.DataDir, volume.Ref{Tenant: tenant, Name: name})
	if err != nil {
		return err
	}
	if _, err := os.Stat(vd); err == nil {
		return nil
	}
	return writeVolumeRecord(vd, volumeRecord{Driver: "local", Limit: limit})
}

func writeVolumeRecord(vd string, rec volumeRecord) error {
	if err := os.MkdirAll(vd, 0o700); err != nil {
		return err
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	tmp := filepath.Join(vd, "volume.json.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(vd, "volume.json"))
}

// CreateVolume makes a volume's storage on this node with its driver and
// options (the API checked both and that the tenant owns the name). It is
// no error if the volume is there already.
func (a *Agent) CreateVolume(ctx context.Context, v types.Volume) error {
	opts, err := volume.ParseOptions(v.Driver, v.Options)
	if err != nil {
		return err
	}
	d, err := a.volumes().Driver(v.Driver)
	if err != nil {
		return err
	}
	ref := volume.Ref{Tenant: v.Tenant, Name: v.Name}
	vd, err := volume.VolumeDir(a.cfg.DataDir, ref)
	if err != nil {
		return err
	}
	if err := writeVolumeRecord(vd, volumeRecord{Driver: d.Name(), Options: v.Options, Limit: v.Limit}); err != nil {
		return err
	}
	if err := d.Create(ctx, ref, opts); err != nil {
		return fmt.Errorf("create volume %s: %w", v.Name, err)
	}
	return nil
}

// VolumeRoot is the directory that holds a volume's files on this node,
// mounted if its driver needs a mount, made (empty) when the node does
// not hold it yet: what pods mount and what access without a pod (WebDAV,
// S3, export and import) reads and writes. The API checked that the
// volume exists and belongs to tenant.
func (a *Agent) VolumeRoot(ctx context.Context, tenant, name string) (string, error) {
	d, ref, opts, err := a.volumeDriver(tenant, name)
	if err != nil {
		return "", err
	}
	root, err := d.Root(ctx, ref, opts)
	if err != nil {
		return "", err
	}
	// A copy or import cut by a crash is finished or undone before
	// anything reads the files (agent/volumedata.go).
	if err := delta.Recover(root, VolumeDeltaState(root)); err != nil {
		return "", fmt.Errorf("volume %s: repair after an interrupted import: %w", name, err)
	}
	return root, nil
}

// RemoveVolume removes a volume's data and snapshots from this node; a
// volume this node never held is no error. The API checked that no pod
// mounts it.
func (a *Agent) RemoveVolume(ctx context.Context, tenant, name string) error {
	d, ref, _, err := a.volumeDriver(tenant, name)
	if err != nil {
		return err
	}
	if err := d.Remove(ctx, ref); err != nil {
		return fmt.Errorf("remove volume %s: %w", name, err)
	}
	vd, err := volume.VolumeDir(a.cfg.DataDir, ref)
	if err != nil {
		return err
	}
	os.RemoveAll(filepath.Join(a.cfg.DataDir, "volfs", "catchup", tenant, name)) // volcatchup.go
	return os.RemoveAll(vd)
}

// VolumeSize is the size of a volume's files on this node; 0 for a volume
// this node does not hold.
func (a *Agent) VolumeSize(ctx context.Context, tenant, name string) (int64, error) {
	d, ref, _, err := a.volumeDriver(tenant, name)
	if err != nil {
		return 0, err
	}
	if d.Name() != "local" {
		if vd, err := volume.VolumeDir(a.cfg.DataDir, ref); err != nil {
			return 0, err
		} else if _, err := os.Stat(vd); errors.Is(err, fs.ErrNotExist) {
			return 0, nil
		}
	}
	return d.Size(ctx, ref)
}

// snapshotter is the volume's driver if it takes snapshots.
func (a *Agent) snapshotter(tenant, name string) (volume.Snapshotter, volume.Ref, volume.Options, error) {
	d, ref, opts, err := a.volumeDriver(tenant, name)
	if err != nil {
		return nil, ref, opts, err
	}
	s, ok := d.(volume.Snapshotter)
	if !ok {
		return nil, ref, opts, fmt.Errorf("%w: %s volumes cannot be snapshotted (use an nfs or gfs volume)", volume.ErrNoSnapshots, d.Name())
	}
	return s, ref, opts, nil
}

// VolumeSnapshots lists a volume's snapshots, oldest first.
func (a *Agent) VolumeSnapshots(ctx context.Context, tenant, name string) ([]volume.Snapshot, error) {
	s, ref, _, err := a.snapshotter(tenant, name)
	if err != nil {
		return nil, err
	}
	list, err := s.Snapshots(ctx, ref)
	if err != nil {
		return nil, err
	}
	if sp, ok := s.(volume.SnapshotSpacer); ok && len(list) > 0 {
		// Not measured (the pool's quotas off or being rescanned):
		// the listing still answers, with no space.
		space, err := sp.SnapshotSpace(ctx, ref)
		if err != nil {
			a.log.Warn("snapshot space not measured", "volume", name, "err", err)
		}
		for i := range list {
			list[i].Space = space[list[i].Name]
		}
	}
	return list, nil
}

// SnapshotVolume takes a snapshot of a volume (the API chose its name and
// time); on every copy of a replicated volume (volsnap.go).
func (a *Agent) SnapshotVolume(ctx context.Context, tenant, name string, snap volume.Snapshot) error {
	return a.snapshotOp(ctx, tenant, name, snapOp{Op: snapCreate, Snap: snap})
}

// DeleteVolumeSnapshot deletes one snapshot of a volume, on every copy of
// a replicated one.
func (a *Agent) DeleteVolumeSnapshot(ctx context.Context, tenant, name, snap string) error {
	if volume.CheckSnapshotName(snap) != nil {
		return fmt.Errorf("%w: %s", volume.ErrSnapshotNotFound, snap)
	}
	return a.snapshotOp(ctx, tenant, name, snapOp{Op: snapDelete, Snap: volume.Snapshot{Name: snap}})
}

// RollbackVolume makes a volume's files those of one of its snapshots,
// on every copy of a replicated one; the API checked that no running pod
// mounts it.
func (a *Agent) RollbackVolume(ctx context.Context, tenant, name, snap string) error {
	if volume.CheckSnapshotName(snap) != nil {
		return fmt.Errorf("%w: %s", volume.ErrSnapshotNotFound, snap)
	}
	return a.snapshotOp(ctx, tenant, name, snapOp{Op: snapRollback, Snap: volume.Snapshot{Name: snap}, Keep: volume.RollbackKeep(time.Now())})
}

// snapshotSchedules runs the snapshot schedules of this node's volumes
// every interval until ctx ends.
func (a *Agent) snapshotSchedules(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := a.snapshotTick(ctx, time.Now()); err != nil && ctx.Err() == nil {
			a.log.Warn("volume snapshot schedules", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// snapshotTick takes the snapshots that are due at now and prunes the
// automatic ones beyond each volume's keep: one pass over the volumes
// this node holds. The clock is the caller's.
func (a *Agent) snapshotTick(ctx context.Context, now time.Time) error {
	recs, _ := filepath.Glob(filepath.Join(a.cfg.DataDir, "volumes", "*", "*", "volume.json"))
	var errs []error
	for _, p := range recs {
		vd := filepath.Dir(p)
		tenant, name := filepath.Base(filepath.Dir(vd)), filepath.Base(vd)
		d, ref, opts, err := a.volumeDriver(tenant, name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s, ok := d.(volume.Snapshotter)
		if !ok || opts.Every == 0 {
			continue
		}
		// A replicated volume's schedule runs on its primary, whose
		// snapshots reach every copy in the write sequence.
		rt, replicated, err := a.snapshotRoute(d, tenant, name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if replicated {
			if rt.Primary != a.cfg.Node.Name {
				continue
			}
			s = replicatedSnapshotter{Snapshotter: s, a: a, tenant: tenant, name: name}
		}
		if err := volume.RunSchedule(ctx, s, ref, opts, now); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// volumeMounts resolves the pod's volume and bind mounts to host paths for
// its OCI spec: it makes missing volumes, fills a fresh one with the
// image's files at its target the first time the pod starts (as Docker
// copies at create), and binds sub-paths through a staging mount so that
// no symlink inside the volume leads outside it.
func (w *worker) volumeMounts(pod types.Pod, rootfs string) ([]ocispec.VolumeMount, error) {
	// Remote mounts that a previous agent's mount processes still serve
	// stay, to be adopted (volshim.go).
	if err := w.unmountVolumesKeep(true); err != nil {
		return nil, err
	}
	copied := filepath.Join(w.dir, "volumes-copied")
	_, err := os.Stat(copied)
	firstStart := errors.Is(err, fs.ErrNotExist)
	var out []ocispec.VolumeMount
	for i, m := range pod.Spec.Mounts {
		switch m.Type {
		case "tmpfs":
			continue // mounted from Spec.Tmpfs
		case "bind":
			// Only the machine's own callers may ask (the API checks);
			// like `docker run -v`, a missing host directory is made.
			if err := os.MkdirAll(m.Source, 0o755); err != nil {
				return nil, fmt.Errorf("bind mount %s: %w", m.Source, err)
			}
			out = append(out, ocispec.VolumeMount{Source: m.Source, Destination: m.Target, ReadOnly: m.ReadOnly})
			continue
		case "volume":
		default:
			return nil, fmt.Errorf("unknown mount type %q", m.Type)
		}
		dir, err := w.volumeSource(pod, i, m)
		if err != nil {
			return nil, err
		}
		if firstStart && !m.NoCopy && m.Subpath == "" {
			if empty, err := isEmptyDir(dir); err != nil {
				return nil, err
			} else if empty {
				if err := copyUp(rootfs, m.Target, dir); err != nil {
					return nil, fmt.Errorf("copy %s into volume %s: %w", m.Target, m.Source, err)
				}
			}
		}
		src := dir
		if m.Subpath != "" {
			if src, err = w.stageSubpath(i, dir, m.Subpath); err != nil {
				return nil, fmt.Errorf("volume %s: %w", m.Source, err)
			}
		}
		out = append(out, ocispec.VolumeMount{Source: src, Destination: m.Target, ReadOnly: m.ReadOnly})
	}
	if firstStart {
		if err := os.WriteFile(copied, nil, 0o644); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// stageSubpath opens sub inside the volume as if the volume were "/"
// (openat2 RESOLVE_IN_ROOT: no symlink or ".." leaves it, whatever other
// pods do to the tree meanwhile) and bind-mounts exactly that inode at
// a staging path in the pod's directory, which the spec then binds.
func (w *worker) stageSubpath(i int, volume, sub string) (string, error) {
	root, err := unix.Open(volume, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	defer unix.Close(root)
	fd, err := unix.Openat2(root, sub, &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS})
	if err != nil {
		return "", fmt.Errorf("sub-path %s: %w", sub, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return "", err
	}
	stage := filepath.Join(w.dir, "volumes", strconv.Itoa(i))
	if err := os.MkdirAll(filepath.Dir(stage), 0o700); err != nil {
		return "", err
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		err = os.Mkdir(stage, 0o700)
	case unix.S_IFREG:
		err = os.WriteFile(stage, nil, 0o600)
	default:
		return "", fmt.Errorf("sub-path %s is neither a directory nor a file", sub)
	}
	if err != nil && !errors.Is(err, fs.ErrExist) {
		return "", err
	}
	if err := unix.Mount(fmt.Sprintf("/proc/self/fd/%d", fd), stage, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return "", fmt.Errorf("stage sub-path %s: %w", sub, err)
	}
	return stage, nil
}

// unmountVolumes undoes the staging mounts of sub-paths. The pod directory
// may only be removed after it succeeded: removing it through a staging
// mount would delete the volume's files.
func (w *worker) unmountVolumes() error { return w.unmountVolumesKeep(false) }

// unmountVolumesKeep is unmountVolumes; with keepLive it leaves the remote
// mounts of live mount processes that this agent did not start.
func (w *worker) unmountVolumesKeep(keepLive bool) error {
	if err := w.unmountRemoteVolumes(keepLive); err != nil {
		return err
	}
	dir := filepath.Join(w.dir, "volumes")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		for {
			err := unix.Unmount(p, unix.MNT_DETACH)
			if err == unix.EINVAL || err == unix.ENOENT {
				break // not (or no longer) a mount point
			}
			if err != nil {
				return fmt.Errorf("unmount %s: %w", p, err)
			}
		}
		// Remove, not RemoveAll: it fails on anything with contents.
		if err := os.Remove(p); err != nil {
			return fmt.Errorf("remove staging %s: %w", p, err)
		}
	}
	return nil
}

func isEmptyDir(dir string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if errors.Is(err, io.EOF) {
		return true, nil
	}
	return len(names) == 0, err
}

// copyUp copies the directory target of the image's rootfs into an empty
// volume, with owners, modes and symlinks, as Docker fills a new volume.
// Both trees are opened as os.Root: no symlink of the image or of the
// volume leads outside them. Device nodes and FIFOs are not copied.
func copyUp(rootfs, target, volume string) error {
	src, err := ocispec.SecureJoin(rootfs, target)
	if err != nil {
		return err
	}
	st, err := os.Lstat(src)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	if !st.IsDir() {
		return nil
	}
	sr, err := os.OpenRoot(src)
	if err != nil {
		return err
	}
	defer sr.Close()
	dr, err := os.OpenRoot(volume)
	if err != nil {
		return err
	}
	defer dr.Close()
	return fs.WalkDir(sr.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := sr.Lstat(p)
		if err != nil {
			return err
		}
		mode := info.Mode()
		switch {
		case p == ".":
		case mode.IsDir():
			if err := dr.Mkdir(p, 0o700); err != nil {
				return err
			}
		case mode.IsRegular():
			if err := copyFile(sr, dr, p); err != nil {
				return err
			}
		case mode&fs.ModeSymlink != 0:
			link, err := sr.Readlink(p)
			if err != nil {
				return err
			}
			if err := dr.Symlink(link, p); err != nil {
				return err
			}
		default:
			return nil
		}
		if sys, ok := info.Sys().(*syscall.Stat_t); ok {
			if err := dr.Lchown(p, int(sys.Uid), int(sys.Gid)); err != nil {
				return err
			}
		}
		if mode&fs.ModeSymlink == 0 {
			if err := dr.Chmod(p, mode.Perm()|mode&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
				return err
			}
		}
		return nil
	})
}

func copyFile(sr, dr *os.Root, p string) error {
	in, err := sr.Open(p)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := dr.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// pathRoot is the directory that holds path of the pod's filesystem, and
// path relative to it: the volume (or bind) mounted over it, else the
// rootfs. docker cp of a volume's files goes to the volume.
func (a *Agent) pathRoot(ctx context.Context, id, p string) (root, rel string, err error) {
	rootfs, err := a.ensureRootfs(ctx, id)
	if err != nil {
		return "", "", err
	}
	w, err := a.worker(id)
	if err != nil {
		return "", "", err
	}
	pod, _ := w.snapshot()
	clean := filepath.Clean("/" + p)
	best := ""
	root, rel = rootfs, p
	for i, m := range pod.Spec.Mounts {
		t := filepath.Clean(m.Target)
		if clean != t && !strings.HasPrefix(clean, t+"/") || len(t) <= len(best) {
			continue
		}
		var dir string
		switch m.Type {
		case "volume":
			if networkDriver(m.Driver) && a.remoteVolumeMounted(id, i) {
				dir, err = a.remoteVolumeDir(id, i)
			} else if networkDriver(m.Driver) && !a.holdsVolume(pod.Tenant, m.Source) {
				dir, err = a.remoteVolumeDir(id, i)
			} else {
				dir, err = a.VolumeRoot(ctx, pod.Tenant, m.Source)
			}
			if err != nil {
				return "", "", err
			}
			if m.Subpath != "" {
				if dir, err = ocispec.SecureJoin(dir, m.Subpath); err != nil {
					return "", "", err
				}
			}
		case "bind":
			dir = m.Source
		default:
			continue
		}
		best, root, rel = t, dir, "/"+strings.TrimPrefix(clean, t)
	}
	return root, rel, nil
}

// mountName is the name docker cp shows for orig, a path that pathRoot
// resolved to rel inside a mount: a mount's own target is named by its
// base name in the container, not by the volume's root "/".
func mountName(name, orig, rel string) string {
	if rel != "/" || filepath.Clean("/"+orig) == "/" {
		return name
	}
	if t := strings.TrimRight(orig, "/"); strings.HasSuffix(t, "/.") {
		return "." // docker cp CONTAINER:/dir/. copies the contents
	}
	return filepath.Base(filepath.Clean("/" + orig))
}

// renameArchive rewrites a tar whose entries start with from (the root
// of a volume, "/") to start with to instead.
func renameArchive(rc io.ReadCloser, from, to string) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		defer rc.Close()
		tr, tw := tar.NewReader(rc), tar.NewWriter(pw)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				pw.CloseWithError(tw.Close())
				return
			}
			if err != nil {
				pw.CloseWithError(err)
				return
			}
			rest := strings.TrimPrefix(strings.TrimPrefix(h.Name, from), "/")
			h.Name = to
			if rest != "" {
				h.Name = to + "/" + rest
			}
			if err := tw.WriteHeader(h); err != nil {
				pw.CloseWithError(err)
				return
			}
			if _, err := io.Copy(tw, tr); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
	}()
	return pr
}
