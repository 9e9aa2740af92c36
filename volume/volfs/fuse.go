package volfs

import (
	"cmp"
	"context"
	"errors"
	"io"
	"math"
	"os"
	"path"
	"slices"
	"sync"
	"sync/atomic"
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
	// Stats, if set, counts the file bytes the mount moves.
	Stats *Stats
	// CacheFor is how long the kernel (and the mount, for the names a
	// listing brought) may answer a lookup or stat of a name that exists
	// without asking the primary, as NFS's actimeo: 0 is DefaultCacheFor,
	// a negative duration caches nothing. A name that does not exist is
	// never cached, and an open always asks the primary.
	CacheFor time.Duration
}

// DefaultCacheFor is a mount's CacheFor unless set.
const DefaultCacheFor = time.Second

// Stats count the bytes of file contents a mount fetched from the primary
// and wrote back to it (metadata not counted).
type Stats struct {
	Fetched, Written atomic.Int64
}

// Mount mounts the volume c reaches on dir. The kernel keeps the entries
// and attributes of names that exist for o.CacheFor (names that do not
// exist are asked for each time); every open asks the primary for the
// file's attributes, tells the kernel to forget the ones it has, and drops
// the page cache: close-to-open consistency across nodes. The caller
// unmounts with the returned server's Unmount.
func Mount(dir string, c *Client, o MountOptions) (*fuse.Server, error) {
	if o.CacheDir == "" {
		o.CacheDir = os.TempDir()
	}
	if o.Name == "" {
		o.Name = "volfs"
	}
	zero := time.Duration(0)
	ttl := cmp.Or(o.CacheFor, DefaultCacheFor)
	if ttl < 0 {
		ttl = 0
	}
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
	if o.Stats == nil {
		o.Stats = &Stats{}
	}
	root := &node{fsys: &fsys{c: c, cacheDir: o.CacheDir, stats: o.Stats, ttl: ttl}}
	return fs.Mount(dir, root, &fs.Options{
		MountOptions:    mo,
		EntryTimeout:    &ttl,
		AttrTimeout:     &ttl,
		NegativeTimeout: &zero,
		NullPermissions: true,
	})
}

type fsys struct {
	c        *Client
	cacheDir string
	ttl      time.Duration // MountOptions.CacheFor

	mu       sync.Mutex
	statfs   Statfs // the last answer, for a second
	statfsAt time.Time

	stats *Stats

	kept      []kept // closed files' copies, oldest first
	keptBytes int64
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
	// listed are the attributes of a directory's entries as its last
	// listing found them (at listedAt): lookups of those names answer
	// from them for fsys.ttl, as a READDIRPLUS would. Any change made
	// here in the directory, or to one of its files, forgets them.
	listed   map[string]Attr
	listedAt time.Time
	changes  uint64 // counts forgetListed: a listing that raced one is not kept
	// toldSize is the size the kernel was last told (told: it was told
	// one), which it reads up to without asking again (splice, mmap);
	// reval: an open answered ESTALE for a size that changed, and no
	// lookup has come since.
	toldSize int64
	told     bool
	reval    bool
	// fresh are the attributes the primary answered a write-back or a
	// setattr from here with, at freshAt: a Getattr of the closed file
	// answers them for fsys.ttl (the kernel forgets its own after a
	// write).
	fresh   Attr
	freshAt time.Time
}

// setFresh records attributes the primary answered at (n.mu held).
func (n *node) setFresh(a *Attr, at time.Time) {
	if n.fsys.ttl > 0 {
		n.fresh, n.freshAt = *a, at
	}
}

// forgetFresh forgets them: a change here the primary did not answer
// with n's attributes (link, unlink, rename).
func (n *node) forgetFresh() {
	n.mu.Lock()
	n.freshAt = time.Time{}
	n.mu.Unlock()
}

// tell records the attributes given to the kernel (n.mu held).
func (n *node) tell(a *Attr) { n.toldSize, n.told = a.Size, true }

// forgetListed forgets the attributes the directory's last listing found
// (a change made here).
func (n *node) forgetListed() {
	n.mu.Lock()
	n.listed = nil
	n.freshAt = time.Time{} // its times and link count changed too
	n.changes++
	n.mu.Unlock()
}

// forgetFreshOf forgets the fresh attributes of the child name, if the
// tree has it.
func (n *node) forgetFreshOf(name string) {
	if ch := n.GetChild(name); ch != nil {
		if cn, ok := ch.Operations().(*node); ok {
			cn.forgetFresh()
		}
	}
}

// forgetInParent forgets the listing of the directory that holds n (n's
// attributes changed). Called without n.mu.
func (n *node) forgetInParent() {
	if _, p := n.Parent(); p != nil {
		if pn, ok := p.Operations().(*node); ok {
			pn.forgetListed()
		}
	}
}

// cached is an open file's local copy, shared by its handles on this node:
// a sparse file that holds the ranges read (fetched from the primary) or
// written here, at their offsets.
type cached struct {
	attr Attr // as the open, or the last write-back, found it
	f    *os.File
	refs int
	// limit is the size past which a write fails at once with ENOSPC:
	// the file's size and the volume's free space when it was opened
	// for writing. A full volume answers write(2), not only the close.
	limit int64
	size  int64 // the file's size as this node sees it
	// rlim: below it, a range the copy lacks is fetched from the
	// primary; past it (a truncation here cut the primary's bytes off)
	// it reads as zeros.
	rlim       int64
	present    spans       // ranges the copy holds
	dirty      spans       // ranges written here and not yet written back
	dirtyBytes int64       // dirty's total
	trunc      int64       // the smallest size set here since the last write-back; -1: none
	setSize    bool        // the size was set here (truncate): the write-back sets it
	seqEnd     int64       // where the last read ended (read-ahead)
	pfs        []*prefetch // the read-aheads in flight
	// pinned: the file was unlinked here while open; its clean
	// ranges are never dropped (they cannot be fetched again).
	pinned bool
	ra     int64 // read-ahead window
	// misses counts the random reads that had to fetch: past fillAfter
	// the rest of the file comes in the background.
	misses  int
	filling bool // the background fill runs (or ran)
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
	in := n.NewInode(ctx, &node{fsys: n.fsys}, fs.StableAttr{Mode: a.Mode & unix.S_IFMT, Ino: a.Ino})
	if cn, ok := in.Operations().(*node); ok {
		cn.mu.Lock()
		cn.tell(a)
		cn.reval = false
		cn.freshAt = time.Time{} // the kernel has newer ones
		cn.mu.Unlock()
	}
	return in
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
	n.mu.Lock()
	a, ok := n.listed[name]
	age := time.Since(n.listedAt)
	if age >= n.fsys.ttl {
		n.listed = nil // expired: its memory goes
	}
	n.mu.Unlock()
	if ok && age < n.fsys.ttl {
		// The kernel keeps it for what is left of the listing's time.
		out.SetEntryTimeout(n.fsys.ttl - age)
		out.SetAttrTimeout(n.fsys.ttl - age)
		return n.newChild(ctx, &a, out), 0
	}
	rep, e := n.op(ctx, Request{Op: OpStat, Path: p})
	if e != 0 {
		return nil, e
	}
	return n.newChild(ctx, rep.Attr, out), 0
}

func (n *node) Getattr(ctx context.Context, _ fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.mu.Lock()
	if c := n.cache; c != nil && c.refs > 0 {
		// While open here, the file this node sees is its local copy
		// with the attributes the open found (close-to-open).
		a := c.attr
		fi, err := c.f.Stat()
		n.mu.Unlock()
		if err != nil {
			return toErrno(err)
		}
		a.Size, a.Blocks = c.size, (c.size+511)/512
		if len(c.dirty) > 0 || c.setSize {
			a.Mtime = fi.ModTime().UnixNano()
		}
		n.mu.Lock()
		n.tell(&a)
		n.mu.Unlock()
		fillAttr(&a, &out.Attr)
		return 0
	}
	if age := time.Since(n.freshAt); !n.freshAt.IsZero() && age < n.fsys.ttl {
		a := n.fresh
		n.tell(&a)
		n.mu.Unlock()
		fillAttr(&a, &out.Attr)
		out.SetTimeout(n.fsys.ttl - age)
		return 0
	}
	n.mu.Unlock()
	p, ok := n.path()
	if !ok {
		return syscall.ENOENT
	}
	rep, e := n.op(ctx, Request{Op: OpStat, Path: p})
	if e == syscall.ENOENT {
		// Gone since the kernel cached the name: ESTALE makes it
		// look the path up again (from the primary, not a listing)
		// rather than fail a stat, or an open's permission check,
		// with ENOENT (an O_CREAT open then makes the file).
		n.forgetInParent()
		return syscall.ESTALE
	}
	if e != 0 {
		return e
	}
	n.mu.Lock()
	n.tell(rep.Attr)
	n.mu.Unlock()
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
		if c != nil && c.refs > 0 {
			// Open here: the size changes in the local copy and goes
			// to the primary with the contents at close.
			if int64(sz) > c.limit {
				n.mu.Unlock()
				return syscall.ENOSPC
			}
			err := c.truncate(int64(sz))
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
		defer n.forgetInParent()
		at := time.Now()
		rep, e := n.op(ctx, Request{Op: OpSetattr, Path: p, Set: set})
		if e != 0 {
			return e
		}
		n.mu.Lock()
		if c := n.cache; (c == nil || c.refs == 0) && rep.Attr != nil {
			// Not open here: the primary's answer is the file.
			n.setFresh(rep.Attr, at)
			n.tell(rep.Attr)
			n.mu.Unlock()
			fillAttr(rep.Attr, &out.Attr)
			return 0
		}
		n.mu.Unlock()
	}
	return n.Getattr(ctx, nil, out)
}

func (n *node) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	p, ok := n.path()
	if !ok {
		return nil, syscall.ENOENT
	}
	n.mu.Lock()
	changes := n.changes
	n.mu.Unlock()
	at := time.Now()
	rep, e := n.op(ctx, Request{Op: OpReaddir, Path: p, Attrs: n.fsys.ttl > 0})
	if e != 0 {
		return nil, e
	}
	list := make([]fuse.DirEntry, 0, len(rep.Entries))
	var listed map[string]Attr
	if n.fsys.ttl > 0 {
		listed = make(map[string]Attr, len(rep.Entries))
	}
	for _, en := range rep.Entries {
		list = append(list, fuse.DirEntry{Name: en.Name, Mode: en.Mode, Ino: en.Ino})
		if listed != nil && en.Attr != nil {
			listed[en.Name] = *en.Attr
		}
	}
	n.mu.Lock()
	if n.changes == changes {
		n.listed, n.listedAt = listed, at
	}
	n.mu.Unlock()
	return fs.NewListDirStream(list), 0
}

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	p, e := n.child(name)
	if e != 0 {
		return nil, e
	}
	uid, gid := caller(ctx)
	defer n.forgetListed()
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
	defer n.forgetListed()
	rep, e := n.op(ctx, Request{Op: OpCreate, Path: p, Mode: mode, UID: uid, GID: gid, Excl: flags&unix.O_EXCL != 0})
	if e != 0 {
		return nil, nil, 0, e
	}
	in := n.newChild(ctx, rep.Attr, out)
	child := in.Operations().(*node)
	// The file may have existed (no O_EXCL): open it as open(2) would.
	// It is not in the tree yet: go-fuse adds it when Create returns.
	fh, fl, e := child.openPath(ctx, p, flags, rep.Attr)
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
	if ch := n.GetChild(name); ch != nil {
		if cn, ok := ch.Operations().(*node); ok {
			if e := cn.fetchAllIfOpen(ctx); e != 0 {
				return e
			}
		}
	}
	defer n.forgetListed()
	defer n.forgetFreshOf(name) // its link count
	_, e = n.op(ctx, Request{Op: OpUnlink, Path: p})
	return e
}

// fetchAllIfOpen fetches what the local copy of a file open here lacks
// before the file is unlinked: its handles keep reading it afterwards, as
// on a local filesystem, when the primary no longer has it by name. (A
// file unlinked by another node while open here is gone for the ranges
// not read yet: ESTALE, as NFS's.)
func (n *node) fetchAllIfOpen(ctx context.Context) syscall.Errno {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := n.cache
	if c == nil || c.refs == 0 || n.Inode.StableAttr().Mode&unix.S_IFMT != unix.S_IFREG {
		return 0
	}
	// Its clean ranges can no longer be fetched again: keep them.
	c.pinned = true
	return n.fetchAll(ctx, c)
}

// fetchAll fetches every range of the file the local copy lacks (n.mu
// held), in MaxRead pieces.
func (n *node) fetchAll(ctx context.Context, c *cached) syscall.Errno {
	for _, m := range c.present.missing(0, c.size) {
		for o := m.off; o < m.end; o += MaxRead {
			if e := n.fetch(ctx, c, o, min(o+MaxRead, m.end)); e != 0 {
				return e
			}
		}
	}
	return 0
}

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	p, e := n.child(name)
	if e != 0 {
		return e
	}
	defer n.forgetListed()
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
	defer n.forgetListed()
	defer np.forgetListed()
	defer n.forgetFreshOf(name)     // its ctime
	defer np.forgetFreshOf(newName) // the file it replaces
	_, e = n.op(ctx, Request{Op: OpRename, Path: p, To: to, NoReplace: flags&unix.RENAME_NOREPLACE != 0})
	return e
}

func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	p, e := n.child(name)
	if e != 0 {
		return nil, e
	}
	uid, gid := caller(ctx)
	defer n.forgetListed()
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
	defer n.forgetListed()
	defer t.forgetInParent() // its link count
	defer t.forgetFresh()
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

// Open revalidates the file with the primary (one stat), unless it is
// open on this node with writes not sent yet (the handles share its local
// copy), and opens a local copy: the one kept or open here if the
// primary's file is as it was, else a new one, which holds only the
// ranges read or written here.
func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	p, ok := n.path()
	if !ok {
		return nil, 0, syscall.ENOENT
	}
	return n.openPath(ctx, p, flags, nil)
}

// openPath opens the file at p; known are its attributes if the caller
// just got them from the primary (create).
func (n *node) openPath(ctx context.Context, p string, flags uint32, known *Attr) (fs.FileHandle, uint32, syscall.Errno) {
	revalidated := false
	defer func() {
		if revalidated {
			n.forgetInParent()
		}
	}()
	n.mu.Lock()
	defer n.mu.Unlock()
	c := n.cache
	// Open here already with writes not sent yet: this open shares
	// the copy (a node sees its own writes). Otherwise it asks the
	// primary (close-to-open), even when other handles have the file
	// open here: one closed a moment ago may not be released yet.
	shared := c != nil && c.refs > 0 && (len(c.dirty) > 0 || c.setSize)
	if !shared && known == nil {
		rep, e := n.op(ctx, Request{Op: OpStat, Path: p})
		if e == syscall.ENOENT {
			// Gone since the kernel cached the name: ESTALE makes
			// it look the name up again (and an O_CREAT open
			// create it), as for NFS; that lookup asks the
			// primary, not the listing.
			e, revalidated = syscall.ESTALE, true
		}
		if e != 0 {
			return nil, 0, e
		}
		known, revalidated = rep.Attr, true
		n.freshAt = time.Time{}
		if revalidate {
			if n.told && n.toldSize != known.Size && !n.reval {
				// The kernel holds an older size, which
				// splice and mmap read up to without asking:
				// ESTALE makes it look the path up again
				// (the lookup tells it the size) and open
				// again, once.
				n.reval = true
				return nil, 0, syscall.ESTALE
			}
			n.reval = false
			// It may hold other attributes older than these:
			// it forgets them and asks Getattr, which answers
			// from the copy.
			n.NotifyContent(-1, 0)
		}
	}
	switch {
	case c == nil || shared:
	case c.refs > 0 && known != nil && !sameFile(c.attr, *known):
		// Changed on the primary since the open handles' copy was
		// made: they keep it, this open starts another.
		n.cache = nil
	case c.refs > 0:
	case sameFile(c.attr, *known):
		// Kept from an earlier open, and the primary's file is
		// as this node left it: its ranges are still valid.
		c.limit, c.seqEnd, c.ra = math.MaxInt64, 0, 0
	default:
		n.dropIfUnused()
	}
	if n.cache == nil {
		if known.Mode&unix.S_IFMT == unix.S_IFDIR {
			return nil, 0, syscall.EISDIR
		}
		f, err := os.CreateTemp(n.fsys.cacheDir, "volfs-")
		if err != nil {
			return nil, 0, toErrno(err)
		}
		os.Remove(f.Name())
		size := max(known.Size, 0)
		// Sparse: the ranges not fetched are holes.
		if err := f.Truncate(size); err != nil {
			f.Close()
			return nil, 0, toErrno(err)
		}
		n.cache = &cached{f: f, attr: *known, limit: math.MaxInt64, size: size, rlim: size, trunc: -1}
	}
	c = n.cache
	if flags&unix.O_ACCMODE != unix.O_RDONLY && c.limit == math.MaxInt64 {
		free, e := n.fsys.free(ctx)
		if e != 0 {
			n.dropIfUnused()
			return nil, 0, e
		}
		c.limit = max(c.attr.Size, c.size) + free
	}
	if flags&unix.O_TRUNC != 0 {
		if err := c.truncate(0); err != nil {
			n.dropIfUnused()
			return nil, 0, toErrno(err)
		}
	}
	c.refs++
	return &handle{n: n, c: c, append: flags&unix.O_APPEND != 0}, 0, 0
}

// dropIfUnused closes a local copy no handle uses (n.mu held).
func (n *node) dropIfUnused() {
	if c := n.cache; c != nil && c.refs == 0 {
		c.f.Close()
		n.cache = nil
	}
}

// revalidate, for tests: an open tells the kernel to forget the file's
// attributes.
var revalidate = true

// Sizes of the ranged I/O of a mount.
const (
	// fetchBlock aligns the ranges fetched: a random reader's next
	// reads nearby come from the local copy, at the price of more
	// transfer for each miss (a round trip through a server and a
	// tunnel costs more than 256 KiB of transfer).
	fetchBlock = 256 << 10
	// raMin and raMax bound the read-ahead of a sequential reader: the
	// window starts at raMin and doubles with each read that continues
	// the last one.
	raMin = 256 << 10
	raMax = 8 << 20
	// pipeline is how many batches of a write-back are in flight at once;
	// readAheads how many read-ahead windows.
	pipeline   = 4
	readAheads = 2
	// fillAfter is how many fetching random reads of one open file
	// start the background fill of the rest of it.
	fillAfter = 8
)

// Variables for tests.
var (
	// flushAt is the size of a dirty set that is written back at once
	// (without fsync), not at close: it bounds what a close still sends.
	flushAt int64 = 64 << 20
	// keepClean is how many clean bytes of a file the local copy keeps;
	// past it they are dropped (holes punched), to be fetched again if
	// read: a file larger than the node's disk can be read and written.
	keepClean int64 = 256 << 20
	// keepClosed bounds the bytes of the copies of closed files kept
	// for their next open (one file's copy is kept if it holds at most
	// a quarter of it); maxClosed their number.
	keepClosed int64 = 256 << 20
	maxClosed        = 64
)

// truncate sets the local copy's size (n.mu held): the write-back first
// truncates the primary's file to the smallest size set since the last
// one, then writes the dirty ranges, then sets the size.
func (c *cached) truncate(sz int64) error {
	if err := c.f.Truncate(sz); err != nil {
		return err
	}
	if sz < c.size {
		c.dirty = c.dirty.remove(sz, math.MaxInt64)
		c.dirtyBytes = c.dirty.total()
		c.present = c.present.remove(sz, math.MaxInt64)
		c.rlim = min(c.rlim, sz)
		if c.trunc < 0 || sz < c.trunc {
			c.trunc = sz
		}
	}
	c.size = sz
	c.setSize = true
	return nil
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
	h.n.mu.Lock()
	defer h.n.mu.Unlock()
	c := h.c
	if off >= c.size || len(dest) == 0 {
		return fuse.ReadResultData(nil), 0
	}
	end := min(off+int64(len(dest)), c.size)
	if off == c.seqEnd {
		c.ra = min(max(2*c.ra, raMin), raMax)
	} else {
		c.ra = 0
	}
	c.seqEnd = end
	for first := true; ; first = false {
		miss := c.present.missing(off, end)
		if len(miss) == 0 {
			break
		}
		if first && c.ra == 0 {
			c.misses++
		}
		if i := slices.IndexFunc(c.pfs, func(pf *prefetch) bool { return pf.off <= miss[0].off && miss[0].off < pf.end }); i >= 0 {
			// Being fetched ahead: wait for it.
			done := c.pfs[i].done
			h.n.mu.Unlock()
			<-done
			h.n.mu.Lock()
			continue
		}
		from := off &^ (fetchBlock - 1)
		to := min((max(end, off+c.ra)+fetchBlock-1)&^(fetchBlock-1), c.size)
		if e := h.n.fetch(ctx, c, from, to); e != 0 {
			return nil, e
		}
		break
	}
	// A sequential reader: the next windows come while it reads this
	// one, readAheads of them in flight.
	for c.ra > 0 && len(c.pfs) < readAheads {
		from := end
		if k := len(c.pfs); k > 0 {
			from = max(from, c.pfs[k-1].end)
		}
		ahead := c.present.missing(from, min(end+readAheads*c.ra, c.size, c.rlim))
		if len(ahead) == 0 {
			break
		}
		s := ahead[0].off &^ (fetchBlock - 1)
		if k := len(c.pfs); k > 0 {
			s = max(s, c.pfs[k-1].end)
		}
		e := min(s+c.ra, c.size, c.rlim)
		if s >= e || !h.n.readAhead(c, s, e) {
			break
		}
	}
	// A random reader that keeps missing (a database, fio's randread):
	// the rest of a file the copy may keep whole comes in the
	// background, MaxRead at a time, as a whole-file fetch at open did,
	// while it reads what is here. One that reads a header or a few
	// records never gets there.
	if c.ra == 0 && c.misses >= fillAfter && c.size <= keepClean && !c.filling {
		c.filling = true
		go h.n.fill(c)
	}
	n, err := c.f.ReadAt(dest[:end-off], off)
	if err != nil && err != io.EOF {
		return nil, toErrno(err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

// prefetch is a range being fetched in the background.
type prefetch struct {
	off, end int64
	done     chan struct{}
}

// readAhead fetches [off, end) in the background (n.mu held); what
// arrives fills only the ranges the local copy still lacks then (a write
// meanwhile wins).
func (n *node) readAhead(c *cached, off, end int64) bool {
	p, ok := n.path()
	if !ok || off >= end || end-off > MaxRead {
		return false
	}
	pf := &prefetch{off: off, end: end, done: make(chan struct{})}
	c.pfs = append(c.pfs, pf)
	go func() {
		defer close(pf.done)
		buf := make([]byte, end-off)
		got, _, err := n.fsys.c.ReadAt(context.Background(), p, buf, off)
		n.mu.Lock()
		defer n.mu.Unlock()
		c.pfs = slices.DeleteFunc(c.pfs, func(x *prefetch) bool { return x == pf })
		if err != nil || n.cache != c {
			return
		}
		clear(buf[got:])
		for _, m := range c.present.missing(off, min(end, c.size, c.rlim)) {
			if _, err := c.f.WriteAt(buf[m.off-off:m.end-off], m.off); err != nil {
				return
			}
			c.present = c.present.add(m.off, m.end)
			n.fsys.stats.Fetched.Add(m.end - m.off)
		}
		c.dropClean(c.seqEnd&^(fetchBlock-1), end)
	}()
	return true
}

// fill fetches what the local copy c lacks, MaxRead at a time, one
// request after the other, until it has the whole file, the node has
// another copy, or a range does not arrive (an error: reads fetch it
// themselves).
func (n *node) fill(c *cached) {
	for {
		n.mu.Lock()
		if n.cache != c {
			n.mu.Unlock()
			return
		}
		m := c.present.missing(0, min(c.size, c.rlim))
		if len(m) == 0 {
			n.mu.Unlock()
			return
		}
		s, e := m[0].off, min(m[0].end, m[0].off+MaxRead)
		if !n.readAhead(c, s, e) {
			n.mu.Unlock()
			return
		}
		pf := c.pfs[len(c.pfs)-1]
		n.mu.Unlock()
		<-pf.done
		n.mu.Lock()
		arrived := len(c.present.missing(s, min(e, c.size, c.rlim))) == 0
		n.mu.Unlock()
		if !arrived {
			return
		}
	}
}

// fetch brings the ranges of [off, end) that the local copy lacks from the
// primary (n.mu held). Bytes past the primary's size as the copy knows it
// (rlim) are zeros: holes of the local copy.
func (n *node) fetch(ctx context.Context, c *cached, off, end int64) syscall.Errno {
	miss := c.present.missing(off, end)
	p, ok := n.path()
	if !ok {
		// Unlinked while open: what was not read before is gone.
		return syscall.ESTALE
	}
	var buf []byte
	for _, m := range miss {
		for o := m.off; o < min(m.end, c.rlim); o += MaxRead {
			want := min(min(m.end, c.rlim)-o, MaxRead)
			if int64(cap(buf)) < want {
				buf = make([]byte, want)
			}
			b := buf[:want]
			got, _, err := n.fsys.c.ReadAt(detach(ctx), p, b, o)
			if err != nil {
				return toErrno(err)
			}
			// Shorter: the file shrank on the primary since the
			// open; the rest reads as zeros.
			clear(b[got:])
			if _, err := c.f.WriteAt(b, o); err != nil {
				return toErrno(err)
			}
			n.fsys.stats.Fetched.Add(want)
		}
		c.present = c.present.add(m.off, m.end)
	}
	c.dropClean(off, end)
	return 0
}

// dropClean punches out the clean ranges of the local copy, but for
// [keepOff, keepEnd), once they exceed keepClean (n.mu held).
func (c *cached) dropClean(keepOff, keepEnd int64) {
	if c.pinned || c.present.total()-c.dirty.total() <= keepClean {
		return
	}
	keep := slices.Clone(c.dirty)
	for _, s := range c.present {
		lo, hi := max(s.off, keepOff), min(s.end, keepEnd)
		if lo < hi {
			keep = keep.add(lo, hi)
		}
	}
	for _, s := range c.present {
		for _, cl := range keep.missing(s.off, s.end) {
			if err := unix.Fallocate(int(c.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, cl.off, cl.end-cl.off); err != nil {
				return // kept: the filesystem cannot punch holes
			}
		}
	}
	c.present = keep
}

func (h *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	h.n.mu.Lock()
	defer h.n.mu.Unlock()
	c := h.c
	if h.append {
		off = c.size
	}
	if off+int64(len(data)) > c.limit {
		return 0, syscall.ENOSPC
	}
	n, err := c.f.WriteAt(data, off)
	if n > 0 {
		c.dirtyBytes += c.dirty.missing(off, off+int64(n)).total()
		c.dirty = c.dirty.add(off, off+int64(n))
		c.present = c.present.add(off, off+int64(n))
		c.size = max(c.size, off+int64(n))
	}
	if err != nil {
		return uint32(n), toErrno(err)
	}
	if c.dirtyBytes >= flushAt {
		if e := h.n.writeBack(ctx, c, 0); e != 0 {
			return uint32(n), e
		}
	}
	return uint32(n), 0
}

// writeBack sends the local copy's dirty ranges (and its truncation) to
// the primary in batches: the one that truncates first, alone; then the
// others, several in flight at once (their ranges are disjoint); the last
// (with flags: BatchSync for a flush or fsync) once those are applied, so
// its answer means every batch is applied (and on disk). n.mu held.
func (n *node) writeBack(ctx context.Context, c *cached, flags uint32) syscall.Errno {
	if len(c.dirty) == 0 && !c.setSize {
		return 0
	}
	p, ok := n.path()
	if !ok {
		// Unlinked while open: its contents go with it, as on a
		// local filesystem.
		c.dirty, c.dirtyBytes, c.trunc, c.setSize = nil, 0, -1, false
		return 0
	}
	var batches [][]span
	var cur []span
	var bytes int64
	for _, f := range c.dirty.chunks(MaxFrame) {
		if len(cur) > 0 && (bytes+f.end-f.off > MaxBatch || len(cur) == MaxFrames) {
			batches, cur, bytes = append(batches, cur), nil, 0
		}
		cur = append(cur, f)
		bytes += f.end - f.off
	}
	batches = append(batches, cur)
	size := int64(-1)
	if c.setSize {
		size = c.size
	}
	send := func(fr []span, fl uint32, trunc, size int64) (Attr, error) {
		var sent int64
		for _, f := range fr {
			sent += f.end - f.off
		}
		a, err := n.fsys.c.Write(detach(ctx), p, batchLen(fr), func() io.Reader { return newBatchReader(c.f, fl, trunc, size, fr) })
		if err == nil {
			n.fsys.stats.Written.Add(sent)
		}
		return a, err
	}
	trunc := c.trunc
	last := len(batches) - 1
	first := 0
	if trunc >= 0 && last > 0 {
		if _, err := send(batches[0], 0, trunc, -1); err != nil {
			return toErrno(err)
		}
		first, trunc = 1, -1
	}
	if first < last {
		sem := make(chan struct{}, pipeline)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var failed error
		for _, b := range batches[first:last] {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				if _, err := send(b, 0, -1, -1); err != nil {
					mu.Lock()
					failed = cmp.Or(failed, err)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if failed != nil {
			return toErrno(failed)
		}
		trunc = -1
	}
	at := time.Now()
	a, err := send(batches[last], flags, trunc, size)
	if err != nil {
		return toErrno(err)
	}
	c.attr = a
	n.tell(&a) // the kernel's size is the copy's
	n.setFresh(&a, at)
	// Its size and times changed: the listing's are old (n.mu held,
	// then the parent's: never the other way round).
	n.forgetInParent()
	c.dirty, c.dirtyBytes, c.trunc, c.setSize = nil, 0, -1, false
	c.rlim = c.size
	c.dropClean(0, 0)
	return 0
}

func (h *handle) flush(ctx context.Context) syscall.Errno {
	h.n.mu.Lock()
	defer h.n.mu.Unlock()
	return h.n.writeBack(ctx, h.c, BatchSync)
}

func (h *handle) Flush(ctx context.Context) syscall.Errno { return h.flush(ctx) }

func (h *handle) Fsync(ctx context.Context, flags uint32) syscall.Errno { return h.flush(ctx) }

func (h *handle) Release(ctx context.Context) syscall.Errno {
	// A last try for what no flush sent (a failed close): the kernel
	// ignores Release's result, so a failure here is lost, as the
	// failed close already told the writer.
	e := h.flush(context.Background())
	h.n.mu.Lock()
	h.c.refs--
	keep := false
	if h.c.refs == 0 {
		if h.n.cache == h.c && len(h.c.dirty) == 0 && !h.c.setSize && h.c.present.total() <= keepClosed/4 {
			keep = true
		} else {
			h.c.f.Close()
			if h.n.cache == h.c {
				h.n.cache = nil
			}
		}
	}
	var bytes int64
	if keep {
		bytes = h.c.present.total()
	}
	h.n.mu.Unlock()
	if keep {
		h.n.fsys.keep(h.n, h.c, bytes)
	}
	return e
}

// sameFile tells whether a file's attributes are those it had: the cache
// of a closed file stays valid while they are (close-to-open: each open
// asks the primary).
func sameFile(was, now Attr) bool {
	settled := was.At != 0 && was.Ctime < was.At-int64(settle) && was.Mtime < was.At-int64(settle)
	return settled && was.Ino == now.Ino && was.Size == now.Size && was.Mtime == now.Mtime && was.Ctime == now.Ctime
}

// settle is more than a kernel's clock tick: a change after the
// primary read a file's attributes gives it a later timestamp than one
// that old.
const settle = 50 * time.Millisecond

// kept is the local copy of a closed file, kept for its next open.
type kept struct {
	n     *node
	c     *cached
	bytes int64
}

// keep keeps the local copy c of a closed file for its next open; the
// oldest kept copies go when they hold more than keepClosed bytes or are
// more than maxClosed. Called without n.mu.
func (f *fsys) keep(n *node, c *cached, bytes int64) {
	f.mu.Lock()
	f.kept = slices.DeleteFunc(f.kept, func(k kept) bool { return k.c == c })
	f.kept = append(f.kept, kept{n, c, bytes})
	f.keptBytes += bytes
	var evict []kept
	for len(f.kept) > maxClosed || f.keptBytes > keepClosed {
		evict = append(evict, f.kept[0])
		f.keptBytes -= f.kept[0].bytes
		f.kept = f.kept[1:]
	}
	f.mu.Unlock()
	for _, k := range evict {
		k.n.mu.Lock()
		if k.n.cache == k.c && k.c.refs == 0 {
			k.n.dropIfUnused()
		}
		k.n.mu.Unlock()
	}
}
