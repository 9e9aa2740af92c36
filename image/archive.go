package image

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// PathStat describes a path inside a container, as the X-Docker-Container-
// Path-Stat header carries it.
type PathStat struct {
	Name       string
	Size       int64
	Mode       os.FileMode
	Mtime      time.Time
	LinkTarget string // for a symlink: what it resolves to, inside the rootfs
}

// followFinal tells whether docker cp resolves the last component of p: it
// does when p ends with "/" or "/.".
func followFinal(p string) bool {
	return strings.HasSuffix(p, "/") || strings.HasSuffix(p, "/.") || p == "."
}

// openPath opens p inside the root as an O_PATH descriptor: parents are
// resolved inside the root, the last component only when follow is set.
func (r *root) openPath(p string, follow bool) (int, error) {
	rel := cleanRel(p)
	if rel == "" || follow {
		return r.open(rel, unix.O_PATH)
	}
	pfd, name, err := r.parent(rel, false)
	if err != nil {
		return -1, err
	}
	defer unix.Close(pfd)
	fd, err := unix.Openat(pfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: "/" + rel, Err: err}
	}
	return fd, nil
}

// inRoot is the path inside the root of an open descriptor.
func (r *root) inRoot(fd int) (string, error) {
	target, err := os.Readlink(fdPath(fd))
	if err != nil {
		return "", err
	}
	base, err := os.Readlink(fdPath(r.fd))
	if err != nil {
		return "", err
	}
	if target == base {
		return "/", nil
	}
	rel, ok := strings.CutPrefix(target, strings.TrimSuffix(base, "/")+"/")
	if !ok {
		return "", fmt.Errorf("%s is outside the root", target)
	}
	return "/" + rel, nil
}

// StatPath describes path inside rootfs with docker cp's rules: symlinks in
// the parents are followed (inside rootfs), the last one only with a
// trailing "/" or "/.".
func StatPath(rootfs, p string) (PathStat, error) {
	rt, err := openRoot(rootfs)
	if err != nil {
		return PathStat{}, err
	}
	defer rt.Close()
	fd, err := rt.openPath(p, followFinal(p))
	if err != nil {
		return PathStat{}, err
	}
	defer unix.Close(fd)
	return rt.statFD(fd, p)
}

func (r *root) statFD(fd int, p string) (PathStat, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return PathStat{}, err
	}
	name := path.Base(path.Clean("/" + p))
	if strings.HasSuffix(p, "/.") || p == "." {
		name = "."
	}
	ps := PathStat{Name: name, Size: st.Size, Mode: fileMode(st.Mode), Mtime: time.Unix(st.Mtim.Unix())}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		// What it points to, resolved inside the root.
		tfd, err := r.open(p, unix.O_PATH)
		if err == nil {
			ps.LinkTarget, _ = r.inRoot(tfd)
			unix.Close(tfd)
		} else {
			target, _ := os.Readlink(fdPath(fd))
			ps.LinkTarget = target
		}
	}
	return ps, nil
}

// ArchivePath returns a tar of path inside rootfs as docker cp from a
// container wants it: entries named after the path's last component ("."
// for "dir/."), symlinks inside stored as symlinks, never followed.
func ArchivePath(rootfs, p string) (io.ReadCloser, PathStat, error) {
	rt, err := openRoot(rootfs)
	if err != nil {
		return nil, PathStat{}, err
	}
	fd, err := rt.openPath(p, followFinal(p))
	if err != nil {
		rt.Close()
		return nil, PathStat{}, err
	}
	st, err := rt.statFD(fd, p)
	if err != nil {
		unix.Close(fd)
		rt.Close()
		return nil, PathStat{}, err
	}
	pr, pw := io.Pipe()
	go func() {
		defer rt.Close()
		defer unix.Close(fd)
		tw := tar.NewWriter(pw)
		w := &tarWalker{tw: tw, links: map[[2]uint64]string{}}
		err := w.walkFD(fd, st.Name)
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	return pr, st, nil
}

// Export returns a tar of the whole filesystem at rootfs (docker export).
func Export(rootfs string) (io.ReadCloser, error) {
	rt, err := openRoot(rootfs)
	if err != nil {
		return nil, err
	}
	fd, err := rt.open("", unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		rt.Close()
		return nil, err
	}
	pr, pw := io.Pipe()
	go func() {
		defer rt.Close()
		tw := tar.NewWriter(pw)
		w := &tarWalker{tw: tw, links: map[[2]uint64]string{}}
		err := w.children(fd, "")
		unix.Close(fd)
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	return pr, nil
}

// ExtractInto unpacks the tar r into directory p of rootfs (docker cp into
// a container) with the layer extractor's guarantees: nothing is written
// outside rootfs, symlinks resolve inside it, device nodes are skipped.
func ExtractInto(rootfs, p string, r io.Reader) error {
	rt, err := openRoot(rootfs)
	if err != nil {
		return err
	}
	fd, err := rt.open(p, unix.O_PATH)
	if err != nil {
		rt.Close()
		return err
	}
	var st unix.Stat_t
	err = unix.Fstat(fd, &st)
	var base string
	if err == nil {
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			err = &os.PathError{Op: "extract", Path: p, Err: unix.ENOTDIR}
		} else {
			base, err = rt.inRoot(fd)
		}
	}
	unix.Close(fd)
	rt.Close()
	if err != nil {
		return err
	}
	_, err = extractTar(rootfs, base, r, extractOptions{noChown: os.Geteuid() != 0})
	return err
}

// tarWalker writes a tree to a tar, descending through descriptors opened
// with O_NOFOLLOW relative to their parent: a symlink swapped in while we
// walk is archived as a symlink, never followed.
type tarWalker struct {
	tw    *tar.Writer
	links map[[2]uint64]string // (dev, ino) of files with several links → first name
}

// walkFD archives the object fd (an O_PATH descriptor) under name.
func (w *tarWalker) walkFD(fd int, name string) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		dfd, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		if err := w.header(name, &st, "", ""); err != nil {
			unix.Close(dfd)
			return err
		}
		err = w.children(dfd, name)
		unix.Close(dfd)
		return err
	case unix.S_IFREG:
		rfd, err := unix.Open(fdPath(fd), unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		f := os.NewFile(uintptr(rfd), name)
		defer f.Close()
		return w.file(f, name, &st)
	case unix.S_IFLNK:
		target, err := readlinkFD(fd)
		if err != nil {
			return err
		}
		return w.header(name, &st, target, "")
	default:
		return w.header(name, &st, "", "")
	}
}

// children archives the entries of the directory dfd (opened O_RDONLY).
func (w *tarWalker) children(dfd int, prefix string) error {
	dup, err := unix.Dup(dfd)
	if err != nil {
		return err
	}
	d := os.NewFile(uintptr(dup), prefix)
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return err
	}
	sort.Strings(names) // deterministic archives
	for _, n := range names {
		name := n
		if prefix != "" {
			name = prefix + "/" + n
		}
		cfd, err := unix.Openat(dfd, n, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) {
			continue // gone meanwhile
		}
		if err != nil {
			return err
		}
		err = w.walkFD(cfd, name)
		unix.Close(cfd)
		if err != nil {
			return err
		}
	}
	return nil
}

func (w *tarWalker) file(f *os.File, name string, st *unix.Stat_t) error {
	if st.Nlink > 1 {
		key := [2]uint64{uint64(st.Dev), st.Ino}
		if first, ok := w.links[key]; ok {
			return w.header(name, st, "", first)
		}
		w.links[key] = name
	}
	var fst unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &fst); err != nil {
		return err
	}
	hdr := tarHeader(name, &fst, "")
	if err := w.tw.WriteHeader(hdr); err != nil {
		return err
	}
	// The file may shrink or grow while we copy: write exactly Size bytes.
	n, err := io.Copy(w.tw, io.LimitReader(f, hdr.Size))
	if err != nil {
		return err
	}
	if n < hdr.Size {
		_, err = io.CopyN(w.tw, zeroReader{}, hdr.Size-n)
	}
	return err
}

func (w *tarWalker) header(name string, st *unix.Stat_t, link, hardlink string) error {
	hdr := tarHeader(name, st, link)
	if hardlink != "" {
		hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, hardlink, 0
	}
	return w.tw.WriteHeader(hdr)
}

func tarHeader(name string, st *unix.Stat_t, link string) *tar.Header {
	hdr := &tar.Header{
		Name:    name,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: time.Unix(st.Mtim.Unix()),
		Format:  tar.FormatPAX,
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		hdr.Typeflag = tar.TypeDir
		hdr.Name += "/"
	case unix.S_IFREG:
		hdr.Typeflag = tar.TypeReg
		hdr.Size = st.Size
	case unix.S_IFLNK:
		hdr.Typeflag = tar.TypeSymlink
		hdr.Linkname = link
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
	case unix.S_IFCHR:
		hdr.Typeflag = tar.TypeChar
		hdr.Devmajor, hdr.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	case unix.S_IFBLK:
		hdr.Typeflag = tar.TypeBlock
		hdr.Devmajor, hdr.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	}
	if hdr.Name == "./" || hdr.Name == "/" {
		hdr.Name = "./"
	}
	return hdr
}

func readlinkFD(fd int) (string, error) {
	buf := make([]byte, 4096)
	n, err := unix.Readlinkat(fd, "", buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// fileMode converts a Unix st_mode to an os.FileMode.
func fileMode(m uint32) os.FileMode {
	mode := os.FileMode(m&0o777) | unixModeBits(m)
	switch m & unix.S_IFMT {
	case unix.S_IFDIR:
		mode |= os.ModeDir
	case unix.S_IFLNK:
		mode |= os.ModeSymlink
	case unix.S_IFIFO:
		mode |= os.ModeNamedPipe
	case unix.S_IFCHR:
		mode |= os.ModeDevice | os.ModeCharDevice
	case unix.S_IFBLK:
		mode |= os.ModeDevice
	case unix.S_IFSOCK:
		mode |= os.ModeSocket
	}
	return mode
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
