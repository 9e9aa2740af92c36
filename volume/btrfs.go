package volume

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/macro-cloud/macro/internal/atomicfile"
	"golang.org/x/sys/unix"
)

// Pool is the node's btrfs filesystem for nfs and gfs volumes: a sparse
// image DIR/btrfs/pool.img, made on first use and loop-mounted on
// DIR/btrfs/pool (again after a restart). Quotas are on, so that a
// volume's size can be a qgroup limit.
type Pool struct {
	Dir  string // the node's data dir
	Size int64  // of a new image; 0: half the free space
	mu   sync.Mutex
}

// Mount makes and mounts the pool if it is not, and returns its mount point.
func (p *Pool) Mount(ctx context.Context) (string, error) {
	base := filepath.Join(p.Dir, "btrfs")
	image, mnt := filepath.Join(base, "pool.img"), filepath.Join(base, "pool")
	p.mu.Lock()
	defer p.mu.Unlock()
	if ok, err := IsMountPoint(mnt); err != nil || ok {
		return mnt, err
	}
	if _, err := os.Stat(image); errors.Is(err, fs.ErrNotExist) {
		if err := p.makeImage(ctx, image); err != nil {
			return "", fmt.Errorf("btrfs pool: %w", err)
		}
	}
	if err := loopMount(ctx, image, mnt, "btrfs"); err != nil {
		return "", fmt.Errorf("btrfs pool: %w", err)
	}
	for _, d := range []string{"v", "s"} {
		if err := os.MkdirAll(filepath.Join(mnt, d), 0o700); err != nil {
			return "", err
		}
	}
	return mnt, nil
}

func (p *Pool) makeImage(ctx context.Context, image string) error {
	if err := os.MkdirAll(filepath.Dir(image), 0o700); err != nil {
		return err
	}
	size := p.Size
	if size == 0 {
		var st unix.Statfs_t
		if err := unix.Statfs(filepath.Dir(image), &st); err != nil {
			return err
		}
		size = int64(st.Bavail) * st.Bsize / 2
	}
	if size < 256<<20 {
		size = 256 << 20
	}
	// What a crash while making the pool left: its mount, its file.
	tmp, mnt := image+".new", image+".new.mnt"
	if err := unmount(mnt); err != nil {
		return err
	}
	os.Remove(tmp)
	if err := sparseFile(tmp, size); err != nil {
		return err
	}
	if err := run(ctx, "mkfs.btrfs", "-q", "-f", "-K", "-L", "macro-pool", tmp); err != nil {
		os.Remove(tmp)
		return err
	}
	// Quotas are enabled on the fresh filesystem before its first use.
	if err := loopMount(ctx, tmp, mnt, "btrfs"); err != nil {
		os.Remove(tmp)
		return err
	}
	qerr := run(ctx, "btrfs", "quota", "enable", mnt)
	if err := unmount(mnt); err != nil {
		return err
	}
	os.Remove(mnt)
	if qerr != nil {
		os.Remove(tmp)
		return qerr
	}
	return os.Rename(tmp, image)
}

// Btrfs is the nfs and gfs driver on one node: each volume a btrfs
// subvolume of the pool (v/<tenant>/<name>), each snapshot a read-only
// snapshot of it (s/<tenant>/<name>/<snap>, with <snap>.json beside it).
// Many pods may mount the same volume at once.
type Btrfs struct {
	Pool *Pool
	Kind string // nfs or gfs
	mu   sync.Mutex
}

var (
	_ Driver      = (*Btrfs)(nil)
	_ Snapshotter = (*Btrfs)(nil)
)

// Name implements Driver.
func (b *Btrfs) Name() string { return b.Kind }

// paths are the volume's subvolume and its snapshots' directory.
func (b *Btrfs) paths(ctx context.Context, ref Ref) (vol, snaps string, err error) {
	if err := ref.check(); err != nil {
		return "", "", err
	}
	mnt, err := b.Pool.Mount(ctx)
	if err != nil {
		return "", "", err
	}
	return filepath.Join(mnt, "v", ref.Tenant, ref.Name), filepath.Join(mnt, "s", ref.Tenant, ref.Name), nil
}

// Create implements Driver.
func (b *Btrfs) Create(ctx context.Context, ref Ref, opts Options) error {
	_, err := b.Root(ctx, ref, opts)
	return err
}

// Root implements Driver: the subvolume, made when missing, after
// finishing or undoing a rollback that a crash interrupted.
func (b *Btrfs) Root(ctx context.Context, ref Ref, opts Options) (string, error) {
	vol, _, err := b.paths(ctx, ref)
	if err != nil {
		return "", err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.recover(ctx, vol); err != nil {
		return "", err
	}
	if _, err := os.Stat(vol); err == nil {
		return vol, nil
	}
	if err := os.MkdirAll(filepath.Dir(vol), 0o700); err != nil {
		return "", err
	}
	if err := run(ctx, "btrfs", "subvolume", "create", vol); err != nil {
		return "", fmt.Errorf("%s volume %s: %w", b.Kind, ref, err)
	}
	if err := os.Chmod(vol, 0o755); err != nil {
		return "", err
	}
	if err := b.limit(ctx, vol, opts); err != nil {
		return "", err
	}
	return vol, nil
}

// limit sets the volume's size as the qgroup limit of its subvolume.
func (b *Btrfs) limit(ctx context.Context, vol string, opts Options) error {
	if opts.Size == 0 {
		return nil
	}
	if err := run(ctx, "btrfs", "qgroup", "limit", strconv.FormatInt(opts.Size, 10), vol); err != nil {
		return fmt.Errorf("%s volume size: %w", b.Kind, err)
	}
	return nil
}

// recover finishes what a crash interrupted: a rollback swaps <vol>.new
// and <vol> in one rename, so a <vol>.new left over is either the
// snapshot's copy that never went in or the old state that came out;
// both go.
func (b *Btrfs) recover(ctx context.Context, vol string) error {
	left := vol + ".new"
	if _, err := os.Stat(left); err != nil {
		return nil
	}
	return deleteSubvolume(ctx, left)
}

func deleteSubvolume(ctx context.Context, p string) error {
	if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return run(ctx, "btrfs", "subvolume", "delete", p)
}

// Remove implements Driver: the snapshots, then the volume.
func (b *Btrfs) Remove(ctx context.Context, ref Ref) error {
	vol, snaps, err := b.paths(ctx, ref)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	list, err := b.list(snaps)
	if err != nil {
		return err
	}
	for _, s := range list {
		if err := b.deleteSnapshot(ctx, snaps, s.Name); err != nil {
			return err
		}
	}
	os.Remove(snaps)
	if err := b.recover(ctx, vol); err != nil {
		return err
	}
	if base, err := b.catchUpBase(ctx, ref); err == nil {
		os.RemoveAll(base) // a replica's catch-up cut short (btrfs_replica.go)
	}
	return deleteSubvolume(ctx, vol)
}

// Size implements Driver: the apparent size of the volume's files.
func (b *Btrfs) Size(ctx context.Context, ref Ref) (int64, error) {
	vol, _, err := b.paths(ctx, ref)
	if err != nil {
		return 0, err
	}
	return DirSize(ctx, vol)
}

// snapshotName is a snapshot's name: as Docker's volume names, and never
// one that ends like the files beside the snapshots.
var snapshotName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$`)

// CheckSnapshotName checks a snapshot's name as a tenant gave it.
func CheckSnapshotName(name string) error {
	if !snapshotName.MatchString(name) || strings.HasSuffix(name, ".json") || strings.HasSuffix(name, ".new") {
		return fmt.Errorf("invalid snapshot name %q: use letters, digits, '_', '.', '-', starting with a letter or digit", name)
	}
	return nil
}

// Snapshot implements Snapshotter: a read-only btrfs snapshot, instant
// and atomic (what a crash leaves is either no snapshot or a whole one;
// a snapshot without its .json record counts, dated by its directory).
func (b *Btrfs) Snapshot(ctx context.Context, ref Ref, s Snapshot) error {
	if err := CheckSnapshotName(s.Name); err != nil {
		return err
	}
	vol, snaps, err := b.paths(ctx, ref)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.recover(ctx, vol); err != nil {
		return err
	}
	if _, err := os.Stat(vol); err != nil {
		return fmt.Errorf("snapshot %s: the volume has no data on this node yet: %w", ref, err)
	}
	dst := filepath.Join(snaps, s.Name)
	if _, err := os.Lstat(dst); err == nil {
		return fmt.Errorf("%w: %s", ErrSnapshotExists, s.Name)
	}
	if err := os.MkdirAll(snaps, 0o700); err != nil {
		return err
	}
	// The record first (a record without a snapshot is ignored), so that
	// a snapshot never lacks its time and kind once taken.
	rec, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(dst+".json", rec, 0o600); err != nil {
		return err
	}
	if err := run(ctx, "btrfs", "subvolume", "snapshot", "-r", vol, dst); err != nil {
		os.Remove(dst + ".json")
		return fmt.Errorf("snapshot %s: %w", ref, err)
	}
	return nil
}

// Snapshots implements Snapshotter.
func (b *Btrfs) Snapshots(ctx context.Context, ref Ref) ([]Snapshot, error) {
	_, snaps, err := b.paths(ctx, ref)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.list(snaps)
}

func (b *Btrfs) list(snaps string) ([]Snapshot, error) {
	entries, err := os.ReadDir(snaps)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	out := []Snapshot{}
	for _, e := range entries {
		if !e.IsDir() || CheckSnapshotName(e.Name()) != nil {
			continue
		}
		s := Snapshot{Name: e.Name()}
		if rec, err := os.ReadFile(filepath.Join(snaps, e.Name()+".json")); err == nil {
			json.Unmarshal(rec, &s)
			s.Name = e.Name()
		} else if info, err := e.Info(); err == nil {
			s.Created = info.ModTime().UTC()
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// DeleteSnapshot implements Snapshotter.
func (b *Btrfs) DeleteSnapshot(ctx context.Context, ref Ref, name string) error {
	if CheckSnapshotName(name) != nil {
		return fmt.Errorf("%w: %s", ErrSnapshotNotFound, name)
	}
	_, snaps, err := b.paths(ctx, ref)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.deleteSnapshot(ctx, snaps, name)
}

func (b *Btrfs) deleteSnapshot(ctx context.Context, snaps, name string) error {
	p := filepath.Join(snaps, name)
	if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s", ErrSnapshotNotFound, name)
	}
	if err := deleteSubvolume(ctx, p); err != nil {
		return err
	}
	os.Remove(p + ".json")
	return nil
}

// Rollback implements Snapshotter: first a snapshot of the current state
// (rollback-<time>, so that a rollback can be undone), then a writable
// copy of the snapshot at <vol>.new, swapped with the volume in one
// rename (RENAME_EXCHANGE), then the old state deleted. A crash before
// the swap leaves the old state, after it the new one (recover removes
// what is left of the other).
func (b *Btrfs) Rollback(ctx context.Context, ref Ref, name string, opts Options) error {
	now := time.Now().UTC()
	return b.RollbackKeeping(ctx, ref, name, RollbackKeep(now), opts)
}

// RollbackKeep is the snapshot a rollback at now keeps of the state it
// replaces.
func RollbackKeep(now time.Time) Snapshot {
	return Snapshot{Name: "rollback-" + now.UTC().Format("20060102T150405.000Z"), Created: now.UTC()}
}

// RollbackKeeping is Rollback with the snapshot of the replaced state
// given (keep): a replicated volume's primary chooses it, so that every
// copy keeps the same one.
func (b *Btrfs) RollbackKeeping(ctx context.Context, ref Ref, name string, keep Snapshot, opts Options) error {
	if CheckSnapshotName(name) != nil {
		return fmt.Errorf("%w: %s", ErrSnapshotNotFound, name)
	}
	vol, snaps, err := b.paths(ctx, ref)
	if err != nil {
		return err
	}
	src := filepath.Join(snaps, name)
	if _, err := os.Lstat(src); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s", ErrSnapshotNotFound, name)
	}
	if err := b.Snapshot(ctx, ref, keep); err != nil {
		return fmt.Errorf("rollback %s: keep the current state: %w", ref, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	next := vol + ".new"
	if err := deleteSubvolume(ctx, next); err != nil {
		return err
	}
	if err := run(ctx, "btrfs", "subvolume", "snapshot", src, next); err != nil {
		return fmt.Errorf("rollback %s: %w", ref, err)
	}
	if err := b.limit(ctx, next, opts); err != nil {
		deleteSubvolume(ctx, next)
		return err
	}
	if err := unix.Renameat2(unix.AT_FDCWD, next, unix.AT_FDCWD, vol, unix.RENAME_EXCHANGE); err != nil {
		deleteSubvolume(ctx, next)
		return fmt.Errorf("rollback %s: swap: %w", ref, err)
	}
	return deleteSubvolume(ctx, next) // now the old state
}
