package delta

import (
	"errors"
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// The fast way Commit builds a file of the new tree. A chunk the old tree
// holds is not read into the process nor hashed again: runs of such
// chunks that lie one after another in an old file are copied with
// copy_file_range, which the kernel turns into a reflink on btrfs and xfs
// (nothing is copied) and into a copy inside the page cache elsewhere.
// They are trusted by the receiver's index: the old file was hashed, chunk
// by chunk, when its stamp (inode, size, mtime, ctime) was taken, and the
// stamp is checked again after the copy, so a file changed meanwhile is
// noticed and the new file is built again the slow way (every chunk read
// and hashed). Chunks from the staging area were hashed when they arrived
// and are hashed again when read (they are few). A new file equal to the
// old one at its path, content and metadata, is a hard link to it.

// oldTree is what Commit knows of the receiver's tree before the sync:
// where each chunk lies, by file, and each file's stamp.
type oldTree struct {
	x      *index
	byPath map[string]*oldFile
}

type oldFile struct {
	e     *Entry
	stamp stamp
	offs  map[ID]int64 // first offset of each chunk, made on first use
}

func newOldTree(x *index) *oldTree {
	t := &oldTree{x: x, byPath: map[string]*oldFile{}}
	for i := range x.m.Entries {
		e := &x.m.Entries[i]
		if s, ok := x.stamps[e.Path]; ok && e.Kind == File {
			t.byPath[e.Path] = &oldFile{e: e, stamp: s}
		}
	}
	return t
}

func (f *oldFile) offsets() map[ID]int64 {
	if f.offs == nil {
		f.offs = make(map[ID]int64, len(f.e.Chunks))
		var off int64
		for _, c := range f.e.Chunks {
			if _, ok := f.offs[c.ID]; !ok {
				f.offs[c.ID] = off
			}
			off += int64(c.Size)
		}
	}
	return f.offs
}

// sameFile says the new entry is the old file as it is: content and
// metadata.
func sameFile(o *Entry, e *Entry) bool {
	if o.Size != e.Size || o.Mode != e.Mode || o.UID != e.UID || o.GID != e.GID || o.MTime != e.MTime || len(o.Chunks) != len(e.Chunks) {
		return false
	}
	for i := range o.Chunks {
		if o.Chunks[i] != e.Chunks[i] {
			return false
		}
	}
	return true
}

// errLinked refuses to link or patch an old file that has other names.
var errLinked = errors.New("the old file has other hard links")

// testHookCopied runs after a file's copy, before its old files' stamps
// are checked (tests change an old file there).
var testHookCopied func(path string)

// errStale is the fast build's word that an old file it copied from
// changed: the file is built again the slow way.
var errStale = errors.New("an old file changed during the build")

// fastFile builds e in the new tree (nr) from the old tree
// (oldRoot, described by ot) and the staging area (b). linked says the
// file is a hard link to the old one: its metadata is already right.
func fastFile(nr, oldRoot *os.Root, ot *oldTree, e *Entry, b *builder, missing *[]ID) (linked bool, err error) {
	of := ot.byPath[e.Path]
	if of != nil && oldRoot != nil && sameFile(of.e, e) {
		if err := linkOld(oldRoot, nr, e.Path, of.stamp); err == nil {
			return true, nil
		}
		// Not linkable (another filesystem, a changed file): copy.
	}
	f, err := nr.OpenFile(e.Path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return false, err
	}
	defer f.Close()
	// used are the old files copied from, checked after the copy.
	used := map[string]*os.File{}
	var (
		off int64 // in the new file
		run struct {
			src      *os.File
			from, to int64
			n        int64
		}
		miss bool
	)
	// Received chunks gather in wbuf (for the bytes at wOff) and go out
	// in one write per run of them.
	wbuf := b.wbuf[:0]
	var wOff int64
	flushW := func() error {
		if len(wbuf) == 0 {
			return nil
		}
		_, err := f.WriteAt(wbuf, wOff)
		wbuf = wbuf[:0]
		return err
	}
	flush := func() error {
		if err := flushW(); err != nil {
			return err
		}
		if run.n == 0 {
			return nil
		}
		err := copyRange(run.src, run.from, f, run.to, run.n)
		run.n = 0
		return err
	}
	for _, c := range e.Chunks {
		var src *os.File
		var from int64 = -1
		if oldRoot != nil {
			// The old file at the same path first: runs are long there.
			if of != nil {
				if o, ok := of.offsets()[c.ID]; ok {
					if src, err = b.old.open(e.Path); err == nil {
						from = o
						used[e.Path] = src
					}
				}
			}
			if from < 0 {
				if l, ok := b.locs[c.ID]; ok && l.size == c.Size {
					if src, err = b.old.open(l.path); err == nil {
						from = l.off
						used[l.path] = src
					}
				}
			}
		}
		if from >= 0 {
			if run.n > 0 && run.src == src && run.from+run.n == from && run.to+run.n == off {
				run.n += int64(c.Size)
			} else {
				if err := flushW(); err != nil {
					return false, err
				}
				if err := flush(); err != nil {
					return false, err
				}
				run.src, run.from, run.to, run.n = src, from, off, int64(c.Size)
			}
			off += int64(c.Size)
			continue
		}
		data := b.staged1(c)
		if data == nil {
			*missing = append(*missing, c.ID)
			miss = true
			off += int64(c.Size)
			continue
		}
		if miss {
			off += int64(c.Size)
			continue
		}
		if run.n > 0 {
			if err := flush(); err != nil {
				return false, err
			}
		}
		if len(wbuf) > 0 && (wOff+int64(len(wbuf)) != off || len(wbuf)+len(data) > cap(wbuf)) {
			if err := flushW(); err != nil {
				return false, err
			}
		}
		if len(wbuf) == 0 {
			wOff = off
		}
		wbuf = append(wbuf, data...)
		off += int64(c.Size)
	}
	b.wbuf = wbuf[:0]
	if miss {
		return false, nil
	}
	if err := flush(); err != nil {
		return false, err
	}
	if testHookCopied != nil {
		testHookCopied(e.Path)
	}
	// The old files must be as they were when indexed.
	for p, src := range used {
		info, err := src.Stat()
		if err != nil {
			return false, err
		}
		if o := ot.byPath[p]; o == nil || stampOf(info.Sys().(*syscall.Stat_t)) != o.stamp {
			return false, errStale
		}
	}
	return false, f.Close()
}

// linkOld makes p in the new tree a hard link to p of the old one when the
// old file still has its stamp.
func linkOld(oldRoot, nr *os.Root, p string, s stamp) error {
	info, err := oldRoot.Lstat(p)
	if err != nil {
		return err
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok || !info.Mode().IsRegular() || stampOf(st) != s {
		return errStale
	}
	if st.Nlink != 1 {
		// Hard-linked in the old tree: a patch would change the other
		// names too, and a link would tie them to the new file.
		return errLinked
	}
	// os.Root has no Link: link through the two roots' directory fds is
	// not offered either, so open the parent directories under the roots.
	od, err := openParent(oldRoot, p)
	if err != nil {
		return err
	}
	defer od.Close()
	nd, err := openParent(nr, p)
	if err != nil {
		return err
	}
	defer nd.Close()
	base := baseName(p)
	return unix.Linkat(int(od.Fd()), base, int(nd.Fd()), base, 0)
}

func openParent(r *os.Root, p string) (*os.File, error) {
	return r.OpenFile(parent(p), unix.O_DIRECTORY|unix.O_NOFOLLOW|os.O_RDONLY, 0)
}

func baseName(p string) string {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return p[i+1:]
		}
	}
	return p
}

// copyRange copies n bytes of src at from to dst at to, in the kernel
// where it can, by read and write where it cannot (another filesystem).
func copyRange(src *os.File, from int64, dst *os.File, to, n int64) error {
	for n > 0 {
		k, err := unix.CopyFileRange(int(src.Fd()), &from, int(dst.Fd()), &to, int(min(n, 1<<30)), 0)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if errors.Is(err, unix.EXDEV) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP) {
				return copySlow(src, from, dst, to, n)
			}
			return err
		}
		if k == 0 {
			return io.ErrUnexpectedEOF // the old file is shorter than indexed
		}
		n -= int64(k)
	}
	return nil
}

func copySlow(src *os.File, from int64, dst *os.File, to, n int64) error {
	buf := make([]byte, min(n, 1<<20))
	for n > 0 {
		k, err := src.ReadAt(buf[:min(n, int64(len(buf)))], from)
		if k > 0 {
			if _, werr := dst.WriteAt(buf[:k], to); werr != nil {
				return werr
			}
			from, to, n = from+int64(k), to+int64(k), n-int64(k)
		}
		if n > 0 && err != nil {
			if errors.Is(err, io.EOF) {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// staged1 returns a chunk of the staging area, hashed again; nil when it
// holds none (or a damaged one).
func (b *builder) staged1(c Chunk) []byte {
	l, ok := b.staged[c.ID]
	if !ok || l.size != c.Size {
		return nil
	}
	f := b.packs[l.pack]
	if f == nil {
		f, _ = os.Open(l.pack)
		b.packs[l.pack] = f
	}
	if f == nil {
		return nil
	}
	if data, err := b.packReader(l.pack).read(f, l.pack, l.off, int(c.Size)); err == nil && Sum(data) == c.ID {
		return data
	}
	return nil
}
