package volume

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// LV2 is the fast node-local volume: its own ext4 filesystem of the
// volume's size in a sparse image file (DIR/volumes/<tenant>/<name>/disk.img),
// mounted through a loop device on _data beside it. Writing past the
// size fails with ENOSPC inside that filesystem and nowhere else. lv2
// volumes have no snapshots.
type LV2 struct {
	Dir string // the node's data dir
	mu  sync.Mutex
}

var _ Driver = (*LV2)(nil)

// Name implements Driver.
func (*LV2) Name() string { return "lv2" }

func (l *LV2) paths(ref Ref) (image, data string, err error) {
	vd, err := VolumeDir(l.Dir, ref)
	if err != nil {
		return "", "", err
	}
	return filepath.Join(vd, "disk.img"), filepath.Join(vd, "_data"), nil
}

// Create implements Driver: the image file, formatted. A crash while
// formatting leaves disk.img.new, which the next Create starts over.
func (l *LV2) Create(ctx context.Context, ref Ref, opts Options) error {
	if opts.Size < MinLV2Size {
		return fmt.Errorf("lv2 volume %s: size %d is below %d bytes", ref, opts.Size, MinLV2Size)
	}
	image, _, err := l.paths(ref)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := os.Stat(image); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(image), 0o700); err != nil {
		return err
	}
	tmp := image + ".new"
	os.Remove(tmp)
	if err := sparseFile(tmp, opts.Size); err != nil {
		return fmt.Errorf("lv2 volume %s: %w", ref, err)
	}
	// No reserved blocks: the tenant gets all of the size.
	if err := run(ctx, "mkfs.ext4", "-q", "-F", "-m", "0", "-E", "nodiscard,root_owner=0:0", "-L", "lv2", tmp); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("lv2 volume %s: %w", ref, err)
	}
	return os.Rename(tmp, image)
}

// Root implements Driver: the mounted filesystem, mounted again after a
// restart of the machine.
func (l *LV2) Root(ctx context.Context, ref Ref, opts Options) (string, error) {
	image, data, err := l.paths(ref)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(image); errors.Is(err, fs.ErrNotExist) {
		if err := l.Create(ctx, ref, opts); err != nil {
			return "", err
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	mounted, err := IsMountPoint(data)
	if err != nil || mounted {
		return data, err
	}
	if err := loopMount(ctx, image, data, "ext4"); err != nil {
		return "", fmt.Errorf("lv2 volume %s: %w", ref, err)
	}
	// The volume is the tenant's: no lost+found in it (e2fsck makes
	// one again when it needs one).
	os.Remove(filepath.Join(data, "lost+found"))
	return data, nil
}

// Remove implements Driver.
func (l *LV2) Remove(ctx context.Context, ref Ref) error {
	_, data, err := l.paths(ref)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := unmount(data); err != nil {
		return err
	}
	return os.RemoveAll(filepath.Dir(data))
}

// Size implements Driver: the blocks the filesystem uses.
func (l *LV2) Size(ctx context.Context, ref Ref) (int64, error) {
	_, data, err := l.paths(ref)
	if err != nil {
		return 0, err
	}
	if ok, err := IsMountPoint(data); err != nil || !ok {
		return 0, err
	}
	var st unix.Statfs_t
	if err := unix.Statfs(data, &st); err != nil {
		return 0, err
	}
	return int64(st.Blocks-st.Bfree) * st.Bsize, nil
}
