package access

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path"
	"strings"

	"golang.org/x/net/webdav"
)

// rootFS is a webdav.FileSystem over a volume's directory. Every call
// resolves its name through os.Root: "..", absolute symlinks and symlinks
// that climb out of the directory fail instead of leaving it.
type rootFS struct {
	dir string
}

var _ webdav.FileSystem = rootFS{}

// rel maps a WebDAV name ("/a/b") to a path relative to the root ("a/b",
// "." for the root itself).
func rel(name string) string {
	p := strings.TrimPrefix(path.Clean("/"+name), "/")
	if p == "" {
		return "."
	}
	return p
}

// do runs fn on the volume's root. A path that would leave the volume (a
// symlink out of it) is reported as one that does not exist: 404, the
// same as for a name that is not there.
func (f rootFS) do(fn func(r *os.Root) error) error {
	r, err := os.OpenRoot(f.dir)
	if err != nil {
		return err
	}
	defer r.Close()
	return hideEscape(fn(r))
}

// isEscape reports whether err is os.Root's refusal of a path that leads
// outside it (the error has no exported value to compare with).
func isEscape(err error) bool {
	return err != nil && strings.Contains(err.Error(), "path escapes from parent")
}

func hideEscape(err error) error {
	if !isEscape(err) {
		return err
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return &fs.PathError{Op: pe.Op, Path: pe.Path, Err: fs.ErrNotExist}
	}
	return &fs.PathError{Op: "open", Path: "", Err: fs.ErrNotExist}
}

func (f rootFS) Mkdir(ctx context.Context, name string, perm os.FileMode) error {
	return f.do(func(r *os.Root) error { return r.Mkdir(rel(name), perm) })
}

func (f rootFS) OpenFile(ctx context.Context, name string, flag int, perm os.FileMode) (webdav.File, error) {
	var file *os.File
	err := f.do(func(r *os.Root) error {
		var err error
		file, err = r.OpenFile(rel(name), flag, perm)
		return err
	})
	if err != nil {
		return nil, err
	}
	return file, nil
}

func (f rootFS) RemoveAll(ctx context.Context, name string) error {
	p := rel(name)
	if p == "." {
		return &fs.PathError{Op: "remove", Path: name, Err: fs.ErrPermission}
	}
	return f.do(func(r *os.Root) error { return r.RemoveAll(p) })
}

func (f rootFS) Rename(ctx context.Context, oldName, newName string) error {
	o, n := rel(oldName), rel(newName)
	if o == "." || n == "." {
		return &fs.PathError{Op: "rename", Path: oldName, Err: fs.ErrPermission}
	}
	return f.do(func(r *os.Root) error { return r.Rename(o, n) })
}

// Stat follows symlinks inside the volume; a symlink that leads outside
// it is a path error (PROPFIND leaves it out, GET answers 404).
func (f rootFS) Stat(ctx context.Context, name string) (os.FileInfo, error) {
	var fi os.FileInfo
	err := f.do(func(r *os.Root) error {
		var err error
		fi, err = r.Stat(rel(name))
		return err
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		var pe *fs.PathError
		if !errors.As(err, &pe) {
			err = &fs.PathError{Op: "stat", Path: name, Err: err}
		}
	}
	return fi, err
}
