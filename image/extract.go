package image

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// OCI whiteouts in layer tarballs.
const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh."
	whiteoutOpaque = ".wh..wh..opq"
	opaqueXattr    = "trusted.overlay.opaque"
)

// extractOptions say how a tar stream is applied.
type extractOptions struct {
	// layer: the target is a layer directory used as an overlayfs lower:
	// whiteouts become overlay whiteouts (char 0:0) and opaque markers the
	// trusted.overlay.opaque xattr; the root entry sets the root's metadata.
	// Otherwise (docker cp) whiteout names are ordinary files.
	layer bool
	// noChown keeps the extracting user's ownership (tests as non-root).
	noChown bool
}

// extractTar applies the tar stream r under base inside dir. Paths are
// resolved inside dir whatever the entries say: ".." stops at dir, absolute
// names and symlinks are relative to dir, hardlinks must point inside it.
// Device nodes are skipped. It returns the bytes of regular files written.
func extractTar(dir, base string, r io.Reader, opts extractOptions) (int64, error) {
	rt, err := openRoot(dir)
	if err != nil {
		return 0, err
	}
	defer rt.Close()
	x := &extractor{root: rt, base: cleanRel(base), opts: opts}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return x.size, fmt.Errorf("read tar: %w", err)
		}
		if err := x.entry(hdr, tr); err != nil {
			return x.size, fmt.Errorf("extract %s: %w", hdr.Name, err)
		}
	}
	x.restoreDirTimes()
	return x.size, nil
}

type extractor struct {
	root *root
	base string
	opts extractOptions
	size int64
	dirs []dirTime
}

type dirTime struct {
	rel   string
	mtime time.Time
}

func (x *extractor) rel(name string) string {
	return cleanRel(x.base + "/" + cleanRel(name))
}

func (x *extractor) entry(hdr *tar.Header, r io.Reader) error {
	name := cleanRel(hdr.Name)
	rel := x.rel(name)
	if name == "" {
		// The archive's root: in a layer it carries the root's metadata.
		if x.opts.layer && hdr.Typeflag == tar.TypeDir {
			fd, err := x.root.openDir(rel)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			return x.setMeta(fd, "", hdr, true)
		}
		return nil
	}
	dir, file := path.Split(rel)
	if x.opts.layer && strings.HasPrefix(file, whiteoutPrefix) {
		return x.whiteout(dir, file)
	}
	switch hdr.Typeflag {
	case tar.TypeChar, tar.TypeBlock:
		return nil // never from tenants
	case tar.TypeXGlobalHeader, tar.TypeXHeader, tar.TypeGNULongName, tar.TypeGNULongLink:
		return nil
	}
	pfd, err := x.root.mkdirAll(dir)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)

	// Whatever is there is replaced, unless both are directories.
	if st, err := lstatAt(pfd, file); err == nil {
		if !(hdr.Typeflag == tar.TypeDir && st.Mode&unix.S_IFMT == unix.S_IFDIR) {
			if err := removeAllAt(pfd, file); err != nil {
				return err
			}
		}
	}

	mode := uint32(hdr.Mode) & 0o7777
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := unix.Mkdirat(pfd, file, 0o700); err != nil && err != unix.EEXIST {
			return err
		}
		fd, err := unix.Openat(pfd, file, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := x.setMeta(fd, "", hdr, false); err != nil {
			return err
		}
		x.dirs = append(x.dirs, dirTime{rel, hdr.ModTime})
		return nil
	case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
		fd, err := unix.Openat(pfd, file, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return err
		}
		f := os.NewFile(uintptr(fd), file)
		n, err := io.Copy(f, r)
		x.size += n
		if err == nil && !x.opts.noChown {
			err = f.Chown(hdr.Uid, hdr.Gid)
		}
		if err == nil {
			// After chown, which clears setuid.
			err = f.Chmod(os.FileMode(mode&0o777) | unixModeBits(mode))
		}
		if err == nil {
			x.setXattrs(fdPath(fd), hdr)
			err = unix.UtimesNanoAt(pfd, file, times(hdr), unix.AT_SYMLINK_NOFOLLOW)
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	case tar.TypeSymlink:
		if err := unix.Symlinkat(hdr.Linkname, pfd, file); err != nil {
			return err
		}
		// Counted as dockerd's layer size counts it: the link's own size,
		// the length of its target.
		x.size += int64(len(hdr.Linkname))
		if !x.opts.noChown {
			if err := unix.Fchownat(pfd, file, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return err
			}
		}
		return unix.UtimesNanoAt(pfd, file, times(hdr), unix.AT_SYMLINK_NOFOLLOW)
	case tar.TypeLink:
		target := x.rel(hdr.Linkname)
		if target == "" {
			return errors.New("hardlink to the root")
		}
		tfd, tname, err := x.root.parent(target, false)
		if err != nil {
			return fmt.Errorf("hardlink target %s: %w", hdr.Linkname, err)
		}
		defer unix.Close(tfd)
		// linkat without AT_SYMLINK_FOLLOW links the entry itself, never
		// what a symlink points to.
		if err := unix.Linkat(tfd, tname, pfd, file, 0); err != nil {
			return fmt.Errorf("hardlink to %s: %w", hdr.Linkname, err)
		}
		return nil
	case tar.TypeFifo:
		if err := unix.Mknodat(pfd, file, unix.S_IFIFO|0o600, 0); err != nil {
			return err
		}
		fd, err := unix.Openat(pfd, file, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := x.setMeta(fd, "", hdr, false); err != nil {
			return err
		}
		return unix.UtimesNanoAt(pfd, file, times(hdr), unix.AT_SYMLINK_NOFOLLOW)
	default:
		return nil // unknown types are ignored, as Docker does
	}
}

// whiteout applies ".wh.<name>" (delete <name> below) or ".wh..wh..opq"
// (hide everything below the directory) in a layer directory.
func (x *extractor) whiteout(dir, file string) error {
	pfd, err := x.root.mkdirAll(dir)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if file == whiteoutOpaque {
		fd, err := unix.Openat(pfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Fsetxattr(fd, opaqueXattr, []byte("y"), 0)
	}
	if strings.HasPrefix(file, whiteoutMeta) {
		return nil // aufs metadata (.wh..wh.plnk, ...)
	}
	target := strings.TrimPrefix(file, whiteoutPrefix)
	if target == "" || target == "." || target == ".." || strings.Contains(target, "/") {
		return nil
	}
	if err := removeAllAt(pfd, target); err != nil {
		return err
	}
	// The overlayfs whiteout: a character device 0:0, made by us, not
	// taken from the tarball.
	return unix.Mknodat(pfd, target, unix.S_IFCHR|0o000, 0)
}

// setMeta sets owner, mode and xattrs of fd (an O_PATH descriptor of a
// directory, fifo or the root: never a symlink).
func (x *extractor) setMeta(fd int, _ string, hdr *tar.Header, isRoot bool) error {
	if !x.opts.noChown {
		if err := unix.Fchownat(fd, "", hdr.Uid, hdr.Gid, unix.AT_EMPTY_PATH); err != nil {
			return err
		}
	}
	mode := uint32(hdr.Mode) & 0o7777
	if err := os.Chmod(fdPath(fd), os.FileMode(mode&0o777)|unixModeBits(mode)); err != nil {
		return err
	}
	x.setXattrs(fdPath(fd), hdr)
	if isRoot {
		x.dirs = append(x.dirs, dirTime{x.base, hdr.ModTime})
	}
	return nil
}

// setXattrs applies the extended attributes of the entry that a tenant may
// set: user.* and file capabilities. trusted.* (overlayfs' own) never.
func (x *extractor) setXattrs(p string, hdr *tar.Header) {
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, "SCHILY.xattr.")
		if !ok {
			continue
		}
		if strings.HasPrefix(name, "user.") || name == "security.capability" {
			unix.Setxattr(p, name, []byte(v), 0) // best effort, as Docker
		}
	}
}

// restoreDirTimes sets directory mtimes last, after their children were
// written.
func (x *extractor) restoreDirTimes() {
	for i := len(x.dirs) - 1; i >= 0; i-- {
		d := x.dirs[i]
		ts := []unix.Timespec{unix.NsecToTimespec(d.mtime.UnixNano()), unix.NsecToTimespec(d.mtime.UnixNano())}
		if d.rel == "" {
			fd, err := x.root.openDir("")
			if err == nil {
				unix.UtimesNanoAt(fd, ".", ts, 0)
				unix.Close(fd)
			}
			continue
		}
		pfd, name, err := x.root.parent(d.rel, false)
		if err != nil {
			continue
		}
		unix.UtimesNanoAt(pfd, name, ts, unix.AT_SYMLINK_NOFOLLOW)
		unix.Close(pfd)
	}
}

func times(hdr *tar.Header) []unix.Timespec {
	at := hdr.AccessTime
	if at.IsZero() {
		at = hdr.ModTime
	}
	return []unix.Timespec{unix.NsecToTimespec(at.UnixNano()), unix.NsecToTimespec(hdr.ModTime.UnixNano())}
}

// unixModeBits converts setuid, setgid and sticky from their Unix values to
// os.FileMode's.
func unixModeBits(mode uint32) os.FileMode {
	var m os.FileMode
	if mode&unix.S_ISUID != 0 {
		m |= os.ModeSetuid
	}
	if mode&unix.S_ISGID != 0 {
		m |= os.ModeSetgid
	}
	if mode&unix.S_ISVTX != 0 {
		m |= os.ModeSticky
	}
	return m
}
