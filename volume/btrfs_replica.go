package volume

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/macro-cloud/macro/internal/atomicfile"
	"golang.org/x/sys/unix"
)

// A replica of an nfs or gfs volume that missed writes catches up by the
// delta engine (delta.TreeReceiver), which builds a plain directory and
// switches it into place with one rename. A volume must stay a subvolume
// (its size is a qgroup limit; snapshots are of subvolumes), so the tree
// is received in the pool beside the volume (CatchUpDirs) and then made
// the volume's contents (ReplaceContents).

// CatchUpDirs are the directories of a replica's catch-up in the pool:
// tree, the delta engine's Root (first a reflinked copy of the volume's
// files, so that only what changed crosses the wire), and state, its
// State. Both are on the pool's filesystem, outside the volume.
func (b *Btrfs) CatchUpDirs(ctx context.Context, ref Ref) (tree, state string, err error) {
	base, err := b.catchUpBase(ctx, ref)
	if err != nil {
		return "", "", err
	}
	return b.seedDirs(ctx, ref, base)
}

// SnapshotCatchUpDirs are CatchUpDirs for receiving snapshot name, which
// the replica lacks, from the primary (also seeded from the volume's
// files: a snapshot missed while away is mostly what the copy has).
func (b *Btrfs) SnapshotCatchUpDirs(ctx context.Context, ref Ref, name string) (tree, state string, err error) {
	if err := CheckSnapshotName(name); err != nil {
		return "", "", err
	}
	base, err := b.catchUpBase(ctx, ref)
	if err != nil {
		return "", "", err
	}
	return b.seedDirs(ctx, ref, filepath.Join(base, "snap", name))
}

func (b *Btrfs) seedDirs(ctx context.Context, ref Ref, base string) (tree, state string, err error) {
	vol, _, err := b.paths(ctx, ref)
	if err != nil {
		return "", "", err
	}
	tree, state = filepath.Join(base, "tree"), filepath.Join(base, "state")
	if err := os.MkdirAll(state, 0o700); err != nil {
		return "", "", err
	}
	if _, err := os.Lstat(tree); err == nil {
		return tree, state, nil
	}
	seed := tree + ".seed"
	os.RemoveAll(seed)
	if err := os.Mkdir(seed, 0o755); err != nil {
		return "", "", err
	}
	if err := run(ctx, "cp", "-a", "--reflink=always", vol+"/.", seed+"/"); err != nil {
		os.RemoveAll(seed)
		return "", "", fmt.Errorf("catch-up of %s: seed: %w", ref, err)
	}
	if err := os.Rename(seed, tree); err != nil {
		return "", "", err
	}
	return tree, state, nil
}

func (b *Btrfs) catchUpBase(ctx context.Context, ref Ref) (string, error) {
	vol, _, err := b.paths(ctx, ref)
	if err != nil {
		return "", err
	}
	return filepath.Join(filepath.Dir(filepath.Dir(filepath.Dir(vol))), "c", ref.Tenant, ref.Name), nil
}

// EndCatchUp removes what CatchUpDirs made.
func (b *Btrfs) EndCatchUp(ctx context.Context, ref Ref) error {
	base, err := b.catchUpBase(ctx, ref)
	if err != nil {
		return err
	}
	return os.RemoveAll(base)
}

// ReplaceContents makes the volume's files those of dir (a directory of
// the same pool, as CatchUpDirs' tree): a new subvolume gets reflinked
// copies of them (no data is copied) and the volume's size limit, and is
// swapped with the volume in one rename, as Rollback does; the old state
// is deleted. Snapshots stay. A crash before the swap leaves the old
// state, after it the new one (Root's recover removes the other).
func (b *Btrfs) ReplaceContents(ctx context.Context, ref Ref, opts Options, dir string) error {
	vol, _, err := b.paths(ctx, ref)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	next := vol + ".new"
	if err := deleteSubvolume(ctx, next); err != nil {
		return err
	}
	if err := run(ctx, "btrfs", "subvolume", "create", next); err != nil {
		return fmt.Errorf("replace %s: %w", ref, err)
	}
	if err := run(ctx, "cp", "-a", "--reflink=always", dir+"/.", next+"/"); err != nil {
		deleteSubvolume(ctx, next)
		return fmt.Errorf("replace %s: %w", ref, err)
	}
	if err := b.limit(ctx, next, opts); err != nil {
		deleteSubvolume(ctx, next)
		return err
	}
	if err := unix.Renameat2(unix.AT_FDCWD, next, unix.AT_FDCWD, vol, unix.RENAME_EXCHANGE); err != nil {
		deleteSubvolume(ctx, next)
		return fmt.Errorf("replace %s: swap: %w", ref, err)
	}
	return deleteSubvolume(ctx, next) // now the old state
}

// SnapshotDir is the directory of one of the volume's snapshots (read
// only): what a primary sends a replica that lacks it.
func (b *Btrfs) SnapshotDir(ctx context.Context, ref Ref, name string) (string, error) {
	if CheckSnapshotName(name) != nil {
		return "", fmt.Errorf("%w: %s", ErrSnapshotNotFound, name)
	}
	_, snaps, err := b.paths(ctx, ref)
	if err != nil {
		return "", err
	}
	p := filepath.Join(snaps, name)
	if _, err := os.Lstat(p); err != nil {
		return "", fmt.Errorf("%w: %s", ErrSnapshotNotFound, name)
	}
	return p, nil
}

// ReceiveSnapshot makes snapshot s of the volume from the files of dir
// (SnapshotCatchUpDirs' tree, filled by the delta engine): a subvolume
// gets reflinked copies of them and is snapshotted read-only under s's
// name, with s's record, as Snapshot does; the volume's own files are
// not touched. ErrSnapshotExists if it is there.
func (b *Btrfs) ReceiveSnapshot(ctx context.Context, ref Ref, s Snapshot, dir string) error {
	if err := CheckSnapshotName(s.Name); err != nil {
		return err
	}
	_, snaps, err := b.paths(ctx, ref)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	dst := filepath.Join(snaps, s.Name)
	if _, err := os.Lstat(dst); err == nil {
		return fmt.Errorf("%w: %s", ErrSnapshotExists, s.Name)
	}
	if err := os.MkdirAll(snaps, 0o700); err != nil {
		return err
	}
	tmp := dst + ".new" // never a snapshot's name (CheckSnapshotName)
	if err := deleteSubvolume(ctx, tmp); err != nil {
		return err
	}
	if err := run(ctx, "btrfs", "subvolume", "create", tmp); err != nil {
		return fmt.Errorf("receive snapshot %s of %s: %w", s.Name, ref, err)
	}
	defer deleteSubvolume(ctx, tmp)
	if err := run(ctx, "cp", "-a", "--reflink=always", dir+"/.", tmp+"/"); err != nil {
		return fmt.Errorf("receive snapshot %s of %s: %w", s.Name, ref, err)
	}
	rec, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(dst+".json", rec, 0o600); err != nil {
		return err
	}
	if err := run(ctx, "btrfs", "subvolume", "snapshot", "-r", tmp, dst); err != nil {
		os.Remove(dst + ".json")
		return fmt.Errorf("receive snapshot %s of %s: %w", s.Name, ref, err)
	}
	return nil
}

// EndSnapshotCatchUp removes what SnapshotCatchUpDirs made.
func (b *Btrfs) EndSnapshotCatchUp(ctx context.Context, ref Ref, name string) error {
	if err := CheckSnapshotName(name); err != nil {
		return err
	}
	base, err := b.catchUpBase(ctx, ref)
	if err != nil {
		return err
	}
	return os.RemoveAll(filepath.Join(base, "snap", name))
}
