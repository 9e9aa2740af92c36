package volfs

import (
	"context"
	"errors"
	"io"
	"math"
	"os"
	"path"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// MountOptions configure a FUSE mount of a remote volume.
type MountOptions struct {
	// CacheDir holds the open files' local copies (unlinked at once:
	// nothing stays behind). Default: os.TempDir().
	CacheDir string
	// Name is shown as the mount's source in the mount table.
	Name string
	// ReadOnly mounts the volume read-only.
	ReadOnly bool
}

// Mount mounts the volume c reaches on dir. Entries and attributes are
// never cached by the kernel (every lookup and stat asks the primary) and
// page cache is dropped on every open: close-to-open consistency across
// nodes. The caller unmounts with the returned server's Unmount.
func Mount(dir string, c *Client, o MountOptions) (*fuse.Server, error) {
	if o.CacheDir == "" {
		o.CacheDir = os.TempDir()
	}
	if o.Name == "" {
		o.Name = "volfs"
	}
	zero := time.Duration(0)
	mo := fuse.MountOptions{
		AllowOther:  true,
		FsName:      o.Name,
		Name:        "macro-volfs",
		DirectMount: true,
		// The kernel checks modes and owners: the daemon runs as root.
		Options:       []string{"default_permissions"},
		DisableXAttrs: true,
		MaxBackground: 64,
		// No automatic invalidation on attribute changes (it makes every
		// read ask for attributes); the page cache is dropped at each
		// open instead (no FOPEN_KEEP_CACHE), which is close-to-open.
		ExplicitDataCacheControl: true,
	}
	if o.ReadOnly {
		mo.Options = append(mo.Options, "ro")
	}
	root := &node{fsys: &fsys{c: c, cacheDir: o.CacheDir}}
	return fs.Mount(dir, root, &fs.Options{
		MountOptions:    mo,
		EntryTimeout:    &zero,
		AttrTimeout:     &zero,
		NegativeTimeout: &zero,
		NullPermissions: true,
	})
}

type fsys struct {
	c        *Client
	cacheDir string

	mu       sync.Mutex
	statfs   Statfs // the last answer, for a second
	statfsAt time.Time
}

// free is the volume's free space, asked at most once a second (each
// open for writing needs it).
func (f *fsys) free(ctx context.Context) (int64, syscall.Errno) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if time.Since(f.statfsAt) > time.Second {
		rep, err := f.c.Op(detach(ctx), Request{Op: OpStatfs})
		if err != nil {
			return 0, toErrno(err)
		}
		f.statfs, f.statfsAt = *rep.Statfs, time.Now()
	}
	return int64(f.statfs.Bavail) * int64(f.statfs.Bsize), 0
}

// node is a file or directory of the volume, named by its path from the
// root (go-fuse keeps the tree of names).
type node struct {
	fs.Inode
	fsys *fsys

	mu    sync.Mutex
	cache *cached // the local copy while the file is open on this node
}

// cached is an open file's local copy, shared by its handles on this node.
type cached struct {
	attr  Attr // as the open found it
	f     *os.File
	refs  int
	dirty bool
	// limit is the size past which a write fails at once with ENOSPC:
	// the file's size and the volume's free space when it was opened.
	// It bounds the local copy, and a full volume answers write(2), not
	// only the close.
	limit int64
}

var (
	_ fs.NodeLookuper   = (*node)(nil)
	_ fs.NodeGetattrer  = (*node)(nil)
	_ fs.NodeSetattrer  = (*node)(nil)
	_ fs.NodeReaddirer  = (*node)(nil)
	_ fs.NodeMkdirer    = (*node)(nil)
	_ fs.NodeCreater    = (*node)(nil)
	_ fs.NodeUnlinker   = (*node)(nil)
	_ fs.NodeRmdirer    = (*node)(nil)
	_ fs.NodeRenamer    = (*node)(nil)
	_ fs.NodeSymlinker  = (*node)(nil)
	_ fs.NodeReadlinker = (*node)(nil)
	_ fs.NodeLinker     = (*node)(nil)
	_ fs.NodeOpener     = (*node)(nil)
	_ fs.NodeStatfser   = (*node)(nil)
)

func toErrno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	return syscall.EIO
}

// path is the node's path in the volume; ok is false for a node that is
// no longer in the tree (unlinked while open).
func (n *node) path() (string, bool) {
	var segs []string
	cur := &n.Inode
	for !cur.IsRoot() {
		name, parent := cur.Parent()
		if parent == nil {
			return "", false
		}
		segs = append(segs, name)
		cur = parent
	}
	for i, j := 0, len(segs)-1; i < j; i, j = i+1, j-1 {
		segs[i], segs[j] = segs[j], segs[i]
	}
	return path.Join(segs...), true
}

func (n *node) child(name string) (string, syscall.Errno) {
	p, ok := n.path()
	if !ok {
		return "", syscall.ENOENT
	}
	return path.Join(p, name), 0
}

// detach keeps a remote call going when the caller is interrupted by a
// signal (go-fuse cancels the context on the kernel's INTERRUPT; Go
// programs get SIGURG all the time): an operation cut halfway would leave
// the caller unsure whether it happened, and retried (os retries EINTR)
// it would fail (mkdir: EEXIST).
func detach(ctx context.Context) context.Context { return context.WithoutCancel(ctx) }

func (n *node) op(ctx context.Context, q Request) (Reply, syscall.Errno) {
	rep, err := n.fsys.c.Op(detach(ctx), q)
	return rep, toErrno(err)
}

func fillAttr(a *Attr, out *fuse.Attr) {
	out.Ino = a.Ino
	out.Mode = a.Mode
	out.Nlink = a.Nlink
	out.Owner = fuse.Owner{Uid: a.UID, Gid: a.GID}
	out.Size = uint64(a.Size)
	out.Blocks = uint64(a.Blocks)
	out.Rdev = uint32(a.Rdev)
	out.Blksize = 4096
	set := func(ns int64, s *uint64, nsec *uint32) {
		*s, *nsec = uint64(ns/1e9), uint32(ns%1e9)
	}
	set(a.Atime, &out.Atime, &out.Atimensec)
	set(a.Mtime, &out.Mtime, &out.Mtimensec)
	set(a.Ctime, &out.Ctime, &out.Ctimensec)
}

// newChild makes (or finds, by inode number) the Inode of a child.
func (n *node) newChild(ctx context.Context, a *Attr, out *fuse.EntryOut) *fs.Inode {
	fillAttr(a, &out.Attr)
	return n.NewInode(ctx, &node{fsys: n.fsys}, fs.StableAttr{Mode: a.Mode & unix.S_IFMT, Ino: a.Ino})
}

func caller(ctx context.Context) (uid, gid uint32) {
	if c, ok := fuse.FromContext(ctx); ok {
		return c.Uid, c.Gid
	}
	return 0, 0
}

func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	p, e := n.child(name)
	if e != 0 {
		return nil, e
	}
	rep, e := n.op(ctx, Request{Op: OpStat, Path: p})
	if e != 0 {
		return nil, e
	}
	return n.newChild(ctx, rep.Attr, out), 0
}

func (n *node) Getattr(ctx context.Context, _ fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.mu.Lock()
	if c := n.cache; c != nil {
		// While open here, the file this node sees is its local copy
		// with the attributes the open found (close-to-open).
		a := c.attr
		fi, err := c.f.Stat()
		n.mu.Unlock()
		if err != nil {
			return toErrno(err)
		}
		a.Size, a.Blocks = fi.Size(), (fi.Size()+511)/512
		if c.dirty {
			a.Mtime = fi.ModTime().UnixNano()
		}
		fillAttr(&a, &out.Attr)
		return 0
	}
	n.mu.Unlock()
	p, ok := n.path()
	if !ok {
		return syscall.ENOENT
	}
	rep, e := n.op(ctx, Request{Op: OpStat, Path: p})
	if e != 0 {
		return e
	}
	fillAttr(rep.Attr, &out.Attr)
	return 0
}

func (n *node) Setattr(ctx context.Context, _ fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	p, ok := n.path()
	if !ok {
		return syscall.ENOENT
	}
	set := &SetAttr{}
	any := false
	if m, ok := in.GetMode(); ok {
		set.Mode, any = &m, true
	}
	if u, ok := in.GetUID(); ok {
		set.UID, any = &u, true
	}
	if g, ok := in.GetGID(); ok {
		set.GID, any = &g, true
	}
	if t, ok := in.GetATime(); ok {
		ns := t.UnixNano()
		set.Atime, any = &ns, true
	}
	if t, ok := in.GetMTime(); ok {
		ns := t.UnixNano()
		set.Mtime, any = &ns, true
	}
	if sz, ok := in.GetSize(); ok {
		n.mu.Lock()
		c := n.cache
		if c != nil {
			// Open here: the size changes in the local copy and goes
			// to the primary with the contents at close.
			if int64(sz) > c.limit {
				n.mu.Unlock()
				return syscall.ENOSPC
			}
			err := c.f.Truncate(int64(sz))
			c.dirty = true
			n.mu.Unlock()
			if err != nil {
				return toErrno(err)
			}
		} else {
			n.mu.Unlock()
			s := int64(sz)
			set.Size, any = &s, true
		}
	}
	if any {
		if _, e := n.op(ctx, Request{Op: OpSetattr, Path: p, Set: set}); e != 0 {
			return e
		}
	}
	return n.Getattr(ctx, nil, out)
}

func (n *node) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	p, ok := n.path()
	if !ok {
		return nil, syscall.ENOENT
	}
	rep, e := n.op(ctx, Request{Op: OpReaddir, Path: p})
	if e != 0 {
		return nil, e
	}
	list := make([]fuse.DirEntry, 0, len(rep.Entries))
	for _, en := range rep.Entries {
		list = append(list, fuse.DirEntry{Name: en.Name, Mode: en.Mode, Ino: en.Ino})
	}
	return fs.NewListDirStream(list), 0
}

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	p, e := n.child(name)
	if e != 0 {
		return nil, e
	}
	uid, gid := caller(ctx)
	rep, e := n.op(ctx, Request{Op: OpMkdir, Path: p, Mode: mode, UID: uid, GID: gid})
	if e != 0 {
		return nil, e
	}
	return n.newChild(ctx, rep.Attr, out), 0
}

func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	p, e := n.child(name)
	if e != 0 {
		return nil, nil, 0, e
	}
	uid, gid := caller(ctx)
	rep, e := n.op(ctx, Request{Op: OpCreate, Path: p, Mode: mode, UID: uid, GID: gid, Excl: flags&unix.O_EXCL != 0})
	if e != 0 {
		return nil, nil, 0, e
	}
	in := n.newChild(ctx, rep.Attr, out)
	child := in.Operations().(*node)
	// The file may have existed (no O_EXCL): open it as open(2) would.
	// It is not in the tree yet: go-fuse adds it when Create returns.
	fh, fl, e := child.openPath(ctx, p, flags)
	if e != 0 {
		return nil, nil, 0, e
	}
	return in, fh, fl, 0
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	p, e := n.child(name)
	if e != 0 {
		return e
	}
	_, e = n.op(ctx, Request{Op: OpUnlink, Path: p})
	return e
}

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	p, e := n.child(name)
	if e != 0 {
		return e
	}
	_, e = n.op(ctx, Request{Op: OpRmdir, Path: p})
	return e
}

func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if flags&^unix.RENAME_NOREPLACE != 0 {
		return syscall.EINVAL // RENAME_EXCHANGE and WHITEOUT are not carried
	}
	p, e := n.child(name)
	if e != 0 {
		return e
	}
	np, ok := newParent.(*node)
	if !ok {
		return syscall.EXDEV
	}
	to, e := np.child(newName)
	if e != 0 {
		return e
	}
	_, e = n.op(ctx, Request{Op: OpRename, Path: p, To: to, NoReplace: flags&unix.RENAME_NOREPLACE != 0})
	return e
}

func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	p, e := n.child(name)
	if e != 0 {
		return nil, e
	}
	uid, gid := caller(ctx)
	rep, e := n.op(ctx, Request{Op: OpSymlink, Path: p, Target: target, UID: uid, GID: gid})
	if e != 0 {
		return nil, e
	}
	return n.newChild(ctx, rep.Attr, out), 0
}

func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	p, ok := n.path()
	if !ok {
		return nil, syscall.ENOENT
	}
	rep, e := n.op(ctx, Request{Op: OpReadlink, Path: p})
	if e != 0 {
		return nil, e
	}
	return []byte(rep.Target), 0
}

func (n *node) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	t, ok := target.(*node)
	if !ok {
		return nil, syscall.EXDEV
	}
	from, ok := t.path()
	if !ok {
		return nil, syscall.ENOENT
	}
	p, e := n.child(name)
	if e != 0 {
		return nil, e
	}
	rep, e := n.op(ctx, Request{Op: OpLink, Path: from, To: p})
	if e != 0 {
		return nil, e
	}
	return n.newChild(ctx, rep.Attr, out), 0
}

func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	rep, e := n.op(ctx, Request{Op: OpStatfs})
	if e != 0 {
		return e
	}
	s := rep.Statfs
	out.Blocks, out.Bfree, out.Bavail, out.Files, out.Ffree = s.Blocks, s.Bfree, s.Bavail, s.Files, s.Ffree
	out.Bsize, out.NameLen, out.Frsize = s.Bsize, s.NameLen, s.Frsize
	return 0
}

// Open fetches the file's contents from the primary into a local copy,
// unless the file is open on this node already (the handles share the
// copy) or the open truncates it.
func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	p, ok := n.path()
	if !ok {
		return nil, 0, syscall.ENOENT
	}
	return n.openPath(ctx, p, flags)
}

func (n *node) openPath(ctx context.Context, p string, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cache == nil {
		f, err := os.CreateTemp(n.fsys.cacheDir, "volfs-")
		if err != nil {
			return nil, 0, toErrno(err)
		}
		os.Remove(f.Name())
		c := &cached{f: f, limit: math.MaxInt64}
		if flags&unix.O_TRUNC != 0 {
			rep, e := n.op(ctx, Request{Op: OpStat, Path: p})
			if e != 0 {
				f.Close()
				return nil, 0, e
			}
			c.attr, c.dirty = *rep.Attr, true
		} else if a, err := n.fsys.c.Get(detach(ctx), p, f); err != nil {
			f.Close()
			return nil, 0, toErrno(err)
		} else {
			c.attr = a
		}
		if flags&unix.O_ACCMODE != unix.O_RDONLY {
			free, e := n.fsys.free(ctx)
			if e != 0 {
				f.Close()
				return nil, 0, e
			}
			c.limit = max(c.attr.Size, 0) + free
		}
		n.cache = c
	} else if flags&unix.O_TRUNC != 0 {
		if err := n.cache.f.Truncate(0); err != nil {
			return nil, 0, toErrno(err)
		}
		n.cache.dirty = true
	}
	n.cache.refs++
	return &handle{n: n, c: n.cache, append: flags&unix.O_APPEND != 0}, 0, 0
}

// handle is one open of a file on this node.
type handle struct {
	n      *node
	c      *cached
	append bool
}

var (
	_ fs.FileReader   = (*handle)(nil)
	_ fs.FileWriter   = (*handle)(nil)
	_ fs.FileFlusher  = (*handle)(nil)
	_ fs.FileFsyncer  = (*handle)(nil)
	_ fs.FileReleaser = (*handle)(nil)
)

func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n, err := h.c.f.ReadAt(dest, off)
	if err != nil && err != io.EOF {
		return nil, toErrno(err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

func (h *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	h.n.mu.Lock()
	defer h.n.mu.Unlock()
	if h.append {
		fi, err := h.c.f.Stat()
		if err != nil {
			return 0, toErrno(err)
		}
		off = fi.Size()
	}
	if off+int64(len(data)) > h.c.limit {
		return 0, syscall.ENOSPC
	}
	n, err := h.c.f.WriteAt(data, off)
	if n > 0 {
		h.c.dirty = true
	}
	if err != nil {
		return uint32(n), toErrno(err)
	}
	return uint32(n), 0
}

// writeBack sends a dirty local copy to the primary and returns once it is
// stored there.
func (h *handle) writeBack(ctx context.Context) syscall.Errno {
	h.n.mu.Lock()
	defer h.n.mu.Unlock()
	if !h.c.dirty {
		return 0
	}
	p, ok := h.n.path()
	if !ok {
		// Unlinked while open: its contents go with it, as on a
		// local filesystem.
		h.c.dirty = false
		return 0
	}
	fi, err := h.c.f.Stat()
	if err != nil {
		return toErrno(err)
	}
	uid, gid := caller(ctx)
	mode := h.n.StableAttr().Mode | 0o644
	a, err := h.n.fsys.c.Put(detach(ctx), p, h.c.f, fi.Size(), mode, uid, gid)
	if err != nil {
		return toErrno(err)
	}
	h.c.attr, h.c.dirty = a, false
	return 0
}

func (h *handle) Flush(ctx context.Context) syscall.Errno { return h.writeBack(ctx) }

func (h *handle) Fsync(ctx context.Context, flags uint32) syscall.Errno { return h.writeBack(ctx) }

func (h *handle) Release(ctx context.Context) syscall.Errno {
	// A last try for what no flush sent (a failed close): the kernel
	// ignores Release's result, so a failure here is lost, as the
	// failed close already told the writer.
	e := h.writeBack(context.Background())
	h.n.mu.Lock()
	defer h.n.mu.Unlock()
	h.c.refs--
	if h.c.refs == 0 {
		h.c.f.Close()
		if h.n.cache == h.c {
			h.n.cache = nil
		}
	}
	return e
}
