package volume

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// Local is Docker's local driver: a directory on the node's filesystem,
// with no size limit and no snapshots. A local volume made with a size
// (Options.Size: the limit its tenant's volume quota counts it for,
// types.Volume.Limit) is held to it: its own ext4 filesystem of that size
// in a sparse image, as an lv2 volume's (disk.img beside _data), so that
// writing past the size fails with ENOSPC there and nowhere else. A
// volume that is already a plain directory stays one.
type Local struct {
	Dir  string // the node's data dir
	once sync.Once
	disk *LV2
}

// bounded is the image driver of a volume that is held to a size: one
// that has an image, or a new one made with a size.
func (l *Local) bounded(ref Ref, opts Options) (*LV2, error) {
	l.once.Do(func() { l.disk = &LV2{Dir: l.Dir} })
	vd, err := VolumeDir(l.Dir, ref)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(vd, "disk.img")); err == nil {
		return l.disk, nil
	}
	if opts.Size <= 0 {
		return nil, nil
	}
	if _, err := os.Stat(filepath.Join(vd, "_data")); err == nil {
		return nil, nil // a plain directory already
	}
	return l.disk, nil
}

var _ Driver = (*Local)(nil)

// Name implements Driver.
func (*Local) Name() string { return "local" }

// VolumeDir is DIR/volumes/<tenant>/<name>: a volume's directory on the
// node, whatever its driver (its metadata lives there).
func VolumeDir(dir string, ref Ref) (string, error) {
	if err := ref.check(); err != nil {
		return "", err
	}
	return filepath.Join(dir, "volumes", ref.Tenant, ref.Name), nil
}

// Create implements Driver.
func (l *Local) Create(ctx context.Context, ref Ref, opts Options) error {
	_, err := l.Root(ctx, ref, opts)
	return err
}

// Root implements Driver: DIR/volumes/<tenant>/<name>/_data.
func (l *Local) Root(ctx context.Context, ref Ref, opts Options) (string, error) {
	disk, err := l.bounded(ref, opts)
	if err != nil {
		return "", err
	}
	if disk != nil {
		return disk.Root(ctx, ref, Options{Size: max(opts.Size, MinLV2Size)})
	}
	vd, err := VolumeDir(l.Dir, ref)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(vd), 0o700); err != nil {
		return "", err
	}
	data := filepath.Join(vd, "_data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return "", err
	}
	return data, nil
}

// Remove implements Driver.
func (l *Local) Remove(ctx context.Context, ref Ref) error {
	if disk, err := l.bounded(ref, Options{}); err != nil {
		return err
	} else if disk != nil {
		return disk.Remove(ctx, ref)
	}
	vd, err := VolumeDir(l.Dir, ref)
	if err != nil {
		return err
	}
	return os.RemoveAll(vd)
}

// Size implements Driver.
func (l *Local) Size(ctx context.Context, ref Ref) (int64, error) {
	if disk, err := l.bounded(ref, Options{}); err != nil {
		return 0, err
	} else if disk != nil {
		return disk.Size(ctx, ref)
	}
	vd, err := VolumeDir(l.Dir, ref)
	if err != nil {
		return 0, err
	}
	return DirSize(ctx, filepath.Join(vd, "_data"))
}

// DirSize is the size of the files under dir (regular files and symlinks,
// each inode once, as du counts apparent sizes); 0 when dir is missing.
func DirSize(ctx context.Context, dir string) (int64, error) {
	var size int64
	seen := map[uint64]bool{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil // removed meanwhile
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			if seen[st.Ino] {
				return nil
			}
			seen[st.Ino] = true
		}
		size += info.Size()
		return nil
	})
	return size, err
}
