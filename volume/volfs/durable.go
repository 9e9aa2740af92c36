package volfs

import (
	"io/fs"
	"os"
	"path"
	"syscall"
)

// durable makes a metadata operation that succeeded durable before it is
// answered: the entries it made, removed or renamed are fsynced with their
// parent directories, and a changed inode (mkdir, link, setattr: mode,
// owner, times, size) is fsynced itself, so that an acknowledged create,
// mkdir, rename, unlink, chmod, symlink or truncate survives a power cut of
// the node, as a file's write-back does (putData). Replicas apply writes
// through the same handler: the primary acknowledges only once every copy
// has them on disk. A failed fsync turns the answer into EIO.
func durable(root *os.Root, q Request, rep Reply) Reply {
	if rep.Errno != 0 {
		return rep
	}
	var err error
	switch q.Op {
	case OpMkdir, OpCreate, OpSetattr:
		err = syncEntry(root, q.Path)
		if err == nil && q.Op != OpSetattr {
			err = syncDir(root, parent(q.Path))
		}
	case OpSymlink, OpUnlink, OpRmdir:
		err = syncDir(root, parent(q.Path))
	case OpLink:
		err = syncEntry(root, q.To)
		if err == nil {
			err = syncDir(root, parent(q.To))
		}
	case OpRename:
		err = syncDir(root, parent(q.Path))
		if err == nil && parent(q.To) != parent(q.Path) {
			err = syncDir(root, parent(q.To))
		}
	}
	if err != nil {
		return Reply{Errno: int(syscall.EIO)}
	}
	return rep
}

func parent(p string) string { return rootPath(path.Dir(rootPath(p))) }

// syncEntry fsyncs the inode at p: a regular file or a directory; another
// kind (a symlink, a device, a FIFO, which opening could follow or block
// on) through its parent directory, which carries it on the filesystems
// pools use.
func syncEntry(root *os.Root, p string) error {
	fi, err := root.Lstat(rootPath(p))
	if err != nil {
		return err
	}
	if t := fi.Mode().Type(); t != 0 && t != fs.ModeDir {
		return syncDir(root, parent(p))
	}
	f, err := root.Open(rootPath(p))
	if err != nil {
		return err
	}
	defer f.Close()
	return fsync(f)
}

func syncDir(root *os.Root, dir string) error {
	d, err := root.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return fsync(d)
}

// fsync is (*os.File).Sync; tests see through it what is synced.
var fsync = (*os.File).Sync
