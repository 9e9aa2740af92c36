package volume

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

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
	vol, _, err := b.paths(ctx, ref)
	if err != nil {
		return "", "", err
	}
	base, err := b.catchUpBase(ctx, ref)
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
