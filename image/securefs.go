package image

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// A root is a directory that untrusted paths are resolved in: every lookup
// goes through openat2(RESOLVE_IN_ROOT), so ".." and absolute symlinks stop at
// the root and nothing outside it is ever reached, even while a container
// changes its filesystem under us.
type root struct {
	fd   int
	path string
}

func openRoot(dir string) (*root, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	return &root{fd: fd, path: dir}, nil
}

func (r *root) Close() error { return unix.Close(r.fd) }

// cleanRel turns any path (absolute, with ".." or "." components) into a
// clean path relative to the root: "" for the root itself.
func cleanRel(p string) string {
	return strings.TrimPrefix(path.Clean("/"+p), "/")
}

const resolveFlags = unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS

// open resolves rel inside the root, following symlinks scoped to it.
func (r *root) open(rel string, flags int) (int, error) {
	rel = cleanRel(rel)
	if rel == "" {
		rel = "."
	}
	for {
		fd, err := unix.Openat2(r.fd, rel, &unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Resolve: resolveFlags})
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		if err != nil {
			return -1, &os.PathError{Op: "openat2", Path: "/" + strings.TrimPrefix(rel, "."), Err: err}
		}
		return fd, nil
	}
}

// openDir opens the directory rel (O_PATH), following symlinks inside the root.
func (r *root) openDir(rel string) (int, error) {
	return r.open(rel, unix.O_PATH|unix.O_DIRECTORY)
}

// mkdirAll opens directory rel, creating missing components (mode 0755) inside
// the root, and returns an O_PATH descriptor of it.
func (r *root) mkdirAll(rel string) (int, error) {
	rel = cleanRel(rel)
	fd, err := r.openDir(rel)
	if err == nil || rel == "" || !errors.Is(err, unix.ENOENT) {
		return fd, err
	}
	parent, name := path.Split(rel)
	pfd, err := r.mkdirAll(parent)
	if err != nil {
		return -1, err
	}
	err = unix.Mkdirat(pfd, name, 0o755)
	unix.Close(pfd)
	if err != nil && err != unix.EEXIST {
		return -1, &os.PathError{Op: "mkdir", Path: "/" + rel, Err: err}
	}
	return r.openDir(rel)
}

// parent opens the directory that holds rel (creating it when create is
// set) and returns it with rel's last component. rel must not be the root.
func (r *root) parent(rel string, create bool) (int, string, error) {
	rel = cleanRel(rel)
	if rel == "" {
		return -1, "", errors.New("the root has no parent")
	}
	dir, name := path.Split(rel)
	var fd int
	var err error
	if create {
		fd, err = r.mkdirAll(dir)
	} else {
		fd, err = r.openDir(dir)
	}
	return fd, name, err
}

// fdPath names an open descriptor for the syscalls that only take paths
// (chmod of an O_PATH descriptor, xattrs).
func fdPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// removeAllAt removes name in dirfd and, when it is a directory, all that it
// holds; symlinks are removed, never followed. A missing name is no error.
func removeAllAt(dirfd int, name string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || err == unix.ENOENT {
		return nil
	}
	if err != unix.EISDIR {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	for {
		names, err := f.Readdirnames(256)
		for _, n := range names {
			if err := removeAllAt(fd, n); err != nil {
				f.Close()
				return err
			}
		}
		if err != nil || len(names) == 0 {
			break
		}
	}
	f.Close()
	if err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); err != nil && err != unix.ENOENT {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	return nil
}

// lstatAt is fstatat without following a final symlink.
func lstatAt(dirfd int, name string) (unix.Stat_t, error) {
	var st unix.Stat_t
	err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	return st, err
}
