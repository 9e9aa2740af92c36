package image

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Files of a container directory (besides what the agent keeps there).
const (
	upperDir   = "upper"
	workDir    = "work"
	rootfsDir  = "rootfs"
	initDir    = "init"       // Docker's -init layer: mountpoints the runtime needs
	lowersFile = "lower.json" // the lower directories, top first
)

// initLayer is what Docker's init layer holds: mountpoints created by the
// runtime would otherwise show up in docker diff.
var initLayer = []struct {
	path string
	dir  bool
	link string
}{
	{"dev", true, ""},
	{"dev/pts", true, ""},
	{"dev/shm", true, ""},
	{"dev/mqueue", true, ""},
	{"proc", true, ""},
	{"sys", true, ""},
	{"etc", true, ""},
	{".dockerenv", false, ""},
	{"dev/console", false, ""},
	{"etc/resolv.conf", false, ""},
	{"etc/hosts", false, ""},
	{"etc/hostname", false, ""},
	{"etc/mtab", false, "/proc/mounts"},
}

// Prepare builds the rootfs of a container in dir: dir/upper and dir/work
// for its changes, dir/init for the runtime's mountpoints, and an overlayfs
// at dir/rootfs over the image's layers. It is idempotent: an already mounted
// rootfs (after a restart of macro) is reused. imageID is a full image ID,
// resolved in the pod's tenant when the pod was created.
func (s *Store) Prepare(ctx context.Context, imageID, dir string) (string, error) {
	rootfs := filepath.Join(dir, rootfsDir)
	s.mu.RLock()
	rec, err := s.recordByIDLocked(imageID)
	var lowers []string
	if err == nil {
		for i := len(rec.Layers) - 1; i >= 0; i-- {
			lowers = append(lowers, s.LayerPath(rec.Layers[i].DiffID))
		}
	}
	s.mu.RUnlock()
	if err != nil {
		return "", err
	}
	if mounted, err := isMountpoint(rootfs); err != nil {
		return "", err
	} else if mounted {
		return rootfs, nil
	}
	for _, d := range []string{upperDir, workDir, rootfsDir} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return "", err
		}
	}
	if err := makeInitLayer(filepath.Join(dir, initDir)); err != nil {
		return "", fmt.Errorf("init layer: %w", err)
	}
	lowers = append([]string{filepath.Join(dir, initDir)}, lowers...)
	b, err := json.Marshal(lowers)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, lowersFile), b, 0o644); err != nil {
		return "", err
	}
	if err := mountOverlay(rootfs, lowers, filepath.Join(dir, upperDir), filepath.Join(dir, workDir)); err != nil {
		return "", err
	}
	return rootfs, nil
}

func makeInitLayer(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, ".done")); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, e := range initLayer {
		p := filepath.Join(dir, e.path)
		switch {
		case e.dir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		case e.link != "":
			os.Remove(p)
			if err := os.Symlink(e.link, p); err != nil {
				return err
			}
		default:
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o755)
			if err != nil {
				return err
			}
			f.Close()
		}
	}
	return os.WriteFile(filepath.Join(dir, ".done"), nil, 0o644)
}

// mountOverlay mounts the overlay with mount(2), or, when the options do
// not fit in a page (many layers), with the new mount API one lower
// directory at a time.
func mountOverlay(target string, lowers []string, upper, work string) error {
	data := "lowerdir=" + strings.Join(lowers, ":") + ",upperdir=" + upper + ",workdir=" + work
	for _, p := range append(append([]string{}, lowers...), upper, work) {
		if strings.ContainsAny(p, ":,") {
			return fmt.Errorf("overlay: path %q contains ':' or ','", p)
		}
	}
	if len(data) < 4000 {
		if err := unix.Mount("overlay", target, "overlay", 0, data); err != nil {
			return fmt.Errorf("mount overlay on %s: %w", target, err)
		}
		return nil
	}
	fsfd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("fsopen overlay: %w", err)
	}
	defer unix.Close(fsfd)
	set := func(k, v string) error {
		if err := unix.FsconfigSetString(fsfd, k, v); err != nil {
			return fmt.Errorf("overlay %s=%s: %w", k, v, err)
		}
		return nil
	}
	for _, l := range lowers {
		if err := set("lowerdir+", l); err != nil {
			return err
		}
	}
	if err := set("upperdir", upper); err != nil {
		return err
	}
	if err := set("workdir", work); err != nil {
		return err
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return fmt.Errorf("overlay create: %w", err)
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("fsmount: %w", err)
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("move_mount to %s: %w", target, err)
	}
	return nil
}

// Release unmounts the rootfs of dir (lazily when busy). It is idempotent.
func (s *Store) Release(dir string) error {
	return Release(dir)
}

// Release unmounts the rootfs of a container directory prepared by
// Prepare; the directory itself stays.
func Release(dir string) error {
	rootfs := filepath.Join(dir, rootfsDir)
	for range 8 {
		mounted, err := isMountpoint(rootfs)
		if err != nil || !mounted {
			return err
		}
		err = unix.Unmount(rootfs, 0)
		if err == unix.EBUSY {
			err = unix.Unmount(rootfs, unix.MNT_DETACH)
		}
		if err != nil && err != unix.EINVAL && err != unix.ENOENT {
			return fmt.Errorf("unmount %s: %w", rootfs, err)
		}
	}
	return nil
}

// isMountpoint reads /proc/self/mountinfo: is p a mount point?
func isMountpoint(p string) (bool, error) {
	p, err := filepath.Abs(p)
	if err != nil {
		return false, err
	}
	if real, err := filepath.EvalSymlinks(p); err == nil {
		p = real
	} else if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && unescapeMount(fields[4]) == p {
			return true, nil
		}
	}
	return false, sc.Err()
}

// unescapeMount decodes the octal escapes of mountinfo (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			ok := true
			for _, c := range s[i+1 : i+4] {
				if c < '0' || c > '7' {
					ok = false
				}
				v = v*8 + byte(c-'0')
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Change kinds, as Docker numbers them.
const (
	ChangeModify = 0
	ChangeAdd    = 1
	ChangeDelete = 2
)

// Change is one line of docker diff.
type Change struct {
	Path string
	Kind int
}

// Changes lists what a container changed in its filesystem, from the upper
// directory of dir: overlay whiteouts are deletions, entries that exist in
// a lower layer are modifications (directories that hold changes included),
// others additions.
func Changes(dir string) ([]Change, error) {
	var lowers []string
	b, err := os.ReadFile(filepath.Join(dir, lowersFile))
	if err != nil {
		return nil, fmt.Errorf("changes: %w", err)
	}
	if err := json.Unmarshal(b, &lowers); err != nil {
		return nil, fmt.Errorf("changes: %w", err)
	}
	upper := filepath.Join(dir, upperDir)
	var out []Change
	err = filepath.Walk(upper, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if p == upper {
			return nil
		}
		rel := p[len(upper):]
		if isWhiteout(fi) {
			out = append(out, Change{Path: rel, Kind: ChangeDelete})
			return nil
		}
		kind := ChangeAdd
		if existsBelow(lowers, rel) {
			kind = ChangeModify
		}
		out = append(out, Change{Path: rel, Kind: kind})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("changes: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

func isWhiteout(fi os.FileInfo) bool {
	if fi.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return false
	}
	return st.Rdev == 0
}

// existsBelow: does rel exist in the merged lower layers (top first)?
func existsBelow(lowers []string, rel string) bool {
	for _, l := range lowers {
		// A whiteout or an opaque parent in a higher layer hides it.
		fi, err := os.Lstat(filepath.Join(l, rel))
		if err == nil {
			return !isWhiteout(fi)
		}
		if hiddenByParent(l, rel) {
			return false
		}
	}
	return false
}

func hiddenByParent(layer, rel string) bool {
	for d := filepath.Dir(rel); d != "/" && d != "."; d = filepath.Dir(d) {
		fi, err := os.Lstat(filepath.Join(layer, d))
		if err != nil {
			continue
		}
		if isWhiteout(fi) {
			return true
		}
		if fi.IsDir() {
			v := make([]byte, 1)
			if n, err := unix.Lgetxattr(filepath.Join(layer, d), opaqueXattr, v); err == nil && n == 1 && v[0] == 'y' {
				return true
			}
		}
	}
	return false
}
