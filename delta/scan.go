package delta

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sync"
	"syscall"

	"github.com/zeebo/blake3"
	"golang.org/x/sys/unix"
)

// stamp tells whether a file changed since it was chunked: a file with
// the same inode, size, mtime and ctime keeps its chunks (as rsync and
// restic trust size and mtime; ctime catches a changed file whose mtime
// was set back).
type stamp struct {
	Ino, Size    uint64
	MTime, CTime int64
}

func stampOf(st *syscall.Stat_t) stamp {
	return stamp{Ino: st.Ino, Size: uint64(st.Size), MTime: st.Mtim.Nano(), CTime: st.Ctim.Nano()}
}

// index is what a tree knows of itself: its manifest and, per file, the
// stamp of the file it chunked.
type index struct {
	m      *Manifest
	stamps map[string]stamp
	// extents are the btrfs file extent items of large files, taken
	// with their chunks (extents.go); tags are the tags of large files'
	// chunks, under tagKey (tags.go).
	extents map[string][]extent
	tags    map[string][]byte
	tagKey  []byte
	byPath  map[string]int // entries by path, made by find
	// chunked counts the files scan chunked (not taken from prev);
	// partly, those it cut again only where they changed (byTags: known
	// by their tags, not their extents).
	chunked, partly, byTags int
}

// newer says whether x, made by a scan from prev, tells more than prev
// does: a file chunked, or files gone. Otherwise prev is kept as it is
// (its stamps and chunks are x's; only directories' metadata may differ,
// which scans read from the tree anyway).
func (x *index) newer(prev *index) bool {
	return prev == nil || x.chunked > 0 || len(prev.stamps) != len(x.stamps)
}

// indexMagic starts an index; indexMagic1 one from before extents were
// kept (read the same, without them).
var indexMagic, indexMagic1 = []byte("MDI2"), []byte("MDI1")

// appendFiles appends a section of the index: how many files it tells
// of (those holds says), then each one's entry index and what add appends
// for it.
func (x *index) appendFiles(b []byte, holds func(*Entry) bool, add func([]byte, *Entry) []byte) []byte {
	var n uint64
	for i := range x.m.Entries {
		if e := &x.m.Entries[i]; e.Kind == File && holds(e) {
			n++
		}
	}
	b = binary.AppendUvarint(b, n)
	for i := range x.m.Entries {
		if e := &x.m.Entries[i]; e.Kind == File && holds(e) {
			b = binary.AppendUvarint(b, uint64(i))
			b = add(b, e)
		}
	}
	return b
}

func (x *index) encode() []byte {
	mb := x.m.Encode()
	// Made once: stamps, and extents, take about 40 bytes per file.
	n := len(indexMagic) + binary.MaxVarintLen64 + len(mb) + 40*len(x.stamps) + 2*binary.MaxVarintLen64
	for _, l := range x.extents {
		n += 16 + 40*len(l)
	}
	for _, t := range x.tags {
		n += binary.MaxVarintLen64 + len(t)
	}
	n += 1 + len(x.tagKey) + binary.MaxVarintLen64
	b := make([]byte, 0, n)
	b = append(b, indexMagic...)
	b = binary.AppendUvarint(b, uint64(len(mb)))
	b = append(b, mb...)
	b = x.appendFiles(b, func(e *Entry) bool { _, ok := x.stamps[e.Path]; return ok }, func(b []byte, e *Entry) []byte {
		s := x.stamps[e.Path]
		b = binary.AppendUvarint(b, s.Ino)
		b = binary.AppendUvarint(b, s.Size)
		b = binary.AppendVarint(b, s.MTime)
		return binary.AppendVarint(b, s.CTime)
	})
	b = x.appendFiles(b, func(e *Entry) bool { _, ok := x.extents[e.Path]; return ok }, func(b []byte, e *Entry) []byte {
		l := x.extents[e.Path]
		b = binary.AppendUvarint(b, uint64(len(l)))
		for _, x := range l {
			for _, v := range []uint64{x.Off, x.Len, x.Bytenr, x.Disk, x.ExtOff, x.Gen} {
				b = binary.AppendUvarint(b, v)
			}
			b = append(b, x.Type, x.Compr)
		}
		return b
	})
	b = binary.AppendUvarint(b, uint64(len(x.tagKey)))
	b = append(b, x.tagKey...)
	b = x.appendFiles(b, func(e *Entry) bool { return len(x.tags[e.Path]) == tagSize*len(e.Chunks) && x.tags[e.Path] != nil },
		func(b []byte, e *Entry) []byte { return append(b, x.tags[e.Path]...) })
	return b
}

// decodeIndex parses an index file (kept in a tree's state directory, but
// checked like anything received: a volume's state sits beside its data).
func decodeIndex(b []byte) (*index, error) {
	withExtents := bytes.HasPrefix(b, indexMagic)
	if !withExtents && !bytes.HasPrefix(b, indexMagic1) {
		return nil, fmt.Errorf("index: %w: bad magic", ErrCorrupt)
	}
	d := decoder{b: b[len(indexMagic):]}
	n := d.uvarintMax(uint64(len(d.b)))
	mb := d.bytes(int(n))
	if d.err != nil {
		return nil, fmt.Errorf("index: %w", d.err)
	}
	m, err := DecodeManifest(mb)
	if err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	x := &index{m: m, stamps: map[string]stamp{}}
	ns := d.uvarintMax(uint64(len(m.Entries)))
	for i := uint64(0); i < ns && d.err == nil; i++ {
		ei := d.uvarintMax(uint64(len(m.Entries) - 1))
		s := stamp{Ino: d.uvarint(), Size: d.uvarint(), MTime: d.varint(), CTime: d.varint()}
		if d.err == nil && m.Entries[ei].Kind != File {
			d.fail("stamp of %q, which is not a file", m.Entries[ei].Path)
		}
		if d.err == nil {
			x.stamps[m.Entries[ei].Path] = s
		}
	}
	if withExtents {
		x.extents = map[string][]extent{}
		// An item is at least 8 bytes: six varints and two bytes.
		nx := d.uvarintMax(uint64(len(m.Entries)))
		for i := uint64(0); i < nx && d.err == nil; i++ {
			ei := d.uvarintMax(uint64(len(m.Entries) - 1))
			n := d.uvarintMax(uint64(len(d.b) / 8))
			if d.err == nil && m.Entries[ei].Kind != File {
				d.fail("extents of %q, which is not a file", m.Entries[ei].Path)
			}
			l := make([]extent, 0, n)
			var end uint64
			for k := uint64(0); k < n && d.err == nil; k++ {
				e := extent{Off: d.uvarint(), Len: d.uvarint(), Bytenr: d.uvarint(), Disk: d.uvarint(), ExtOff: d.uvarint(), Gen: d.uvarint(), Type: d.byte(), Compr: d.byte()}
				if d.err == nil && (e.Off < end || e.Off+e.Len < e.Off) {
					d.fail("extents of %q overlap or wrap", m.Entries[ei].Path)
				}
				end = e.Off + e.Len
				l = append(l, e)
			}
			if d.err == nil {
				x.extents[m.Entries[ei].Path] = l
			}
		}
		if k := d.uvarintMax(16); k != 0 && k != 16 {
			d.fail("a tag key of %d bytes", k)
		} else if k == 16 {
			x.tagKey = d.bytes(16)
		}
		x.tags = map[string][]byte{}
		nt := d.uvarintMax(uint64(len(m.Entries)))
		for i := uint64(0); i < nt && d.err == nil; i++ {
			ei := d.uvarintMax(uint64(len(m.Entries) - 1))
			if d.err != nil {
				break
			}
			e := &m.Entries[ei]
			if e.Kind != File {
				d.fail("tags of %q, which is not a file", e.Path)
				break
			}
			if uint64(len(d.b)) < uint64(tagSize)*uint64(len(e.Chunks)) {
				d.fail("tags of %q cut short", e.Path)
				break
			}
			x.tags[e.Path] = d.bytes(tagSize * len(e.Chunks))
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d bytes after the last stamp", len(d.b))
	}
	if d.err != nil {
		return nil, fmt.Errorf("index: %w", d.err)
	}
	return x, nil
}

func loadIndex(path string) *index {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	x, err := decodeIndex(b)
	if err != nil {
		return nil // rebuilt by a scan
	}
	return x
}

func saveIndex(path string, x *index) error {
	return writeFileAtomic(path, x.encode(), 0o600)
}

func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// scan makes the manifest of the tree at dir, reusing the chunks of prev
// for files whose stamp did not change. A missing dir is an empty tree.
// Device nodes, FIFOs and sockets are skipped. Files are chunked in
// parallel.
func scan(ctx context.Context, dir string, prev *index) (*index, error) {
	x := &index{m: &Manifest{}, stamps: map[string]stamp{}, extents: map[string][]extent{}, tags: map[string][]byte{}}
	if prev != nil && len(prev.tagKey) == 16 {
		x.tagKey = prev.tagKey
	} else {
		x.tagKey = newTagKey()
	}
	r, err := os.OpenRoot(dir)
	if errors.Is(err, fs.ErrNotExist) {
		x.m.Entries = []Entry{{Path: ".", Kind: Dir, Mode: 0o755}}
		return x, nil
	}
	if err != nil {
		return nil, err
	}
	defer r.Close()
	type job struct {
		i  int
		s  stamp
		pr prior
	}
	var jobs []job
	err = fs.WalkDir(r.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if skipTop(p) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		info, err := r.Lstat(p)
		if err != nil {
			return err
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no stat", p)
		}
		e := Entry{Path: p, Mode: st.Mode & 0o7777, UID: st.Uid, GID: st.Gid, MTime: st.Mtim.Nano()}
		switch {
		case info.IsDir():
			e.Kind = Dir
		case info.Mode().IsRegular():
			e.Kind = File
			e.Size = info.Size()
			s := stampOf(st)
			j := job{i: len(x.m.Entries), s: s}
			var pe *Entry
			if prev != nil {
				pe = prev.find(p)
			}
			if pe != nil && pe.Kind == File {
				// Unchanged: its chunks, extents and tags as they were.
				if ps, ok := prev.stamps[p]; ok && ps == s {
					e.Chunks = pe.Chunks
					x.stamps[p] = s
					if l, ok := prev.extents[p]; ok {
						x.extents[p] = l
					}
					if t, ok := prev.tags[p]; ok {
						x.tags[p] = t
					}
					break
				}
				j.pr = prior{was: pe, ext: prev.extents[p], tags: prev.tags[p]}
			}
			jobs = append(jobs, j)
		case info.Mode()&fs.ModeSymlink != 0:
			e.Kind = Symlink
			if e.Target, err = r.Readlink(p); err != nil {
				return err
			}
		default:
			return nil
		}
		x.m.Entries = append(x.m.Entries, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", dir, err)
	}
	// Chunk the files that changed, one file per worker.
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  = make(chan job)
	)
	for range max(1, runtime.GOMAXPROCS(0)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 4<<20)
			t := newTagger(x.tagKey)
			for j := range next {
				e := &x.m.Entries[j.i]
				c, err := chunkFile(r, e.Path, buf, j.pr, t)
				mu.Lock()
				if err != nil && first == nil {
					first = fmt.Errorf("chunk %s: %w", e.Path, err)
				}
				if err == nil {
					e.Chunks, e.Size = c.chunks, c.size
					x.stamps[e.Path] = c.st
					if c.partly {
						x.partly++
					}
					if c.byTags {
						x.byTags++
					}
					if c.ext != nil {
						x.extents[e.Path] = c.ext
					}
					if c.tags != nil {
						x.tags[e.Path] = c.tags
					}
					x.chunked++
				}
				mu.Unlock()
			}
		}()
	}
	for _, j := range jobs {
		if ctx.Err() != nil {
			break
		}
		next <- j
	}
	close(next)
	wg.Wait()
	if first != nil {
		return nil, first
	}
	return x, ctx.Err()
}

func (x *index) find(p string) *Entry {
	if x.byPath == nil {
		x.byPath = make(map[string]int, len(x.m.Entries))
		for i, e := range x.m.Entries {
			x.byPath[e.Path] = i
		}
	}
	if i, ok := x.byPath[p]; ok {
		return &x.m.Entries[i]
	}
	return nil
}

// prior is what the last index knew of a file: its entry, and the
// extent items and tags kept with its chunks (nil if none).
type prior struct {
	was  *Entry
	ext  []extent
	tags []byte
}

// chunked is a file cut into chunks: its stamp (taken before it was
// read), and the extent items and tags to keep with its chunks (nil if
// none). partly: only its changed places were cut again.
type chunked struct {
	chunks []Chunk
	size   int64
	st     stamp
	ext    []extent
	tags   []byte
	partly bool
	byTags bool
}

// chunkFile cuts the file at p into chunks. The stamp is taken from the
// open file before reading, so a change while reading shows at the next
// scan. A large file also gets its chunks' tags (with a tagger; tags.go)
// and, on btrfs, its extent items (extents.go); with those of its last
// chunking (pr), only its changed places are cut again.
func chunkFile(r *os.Root, p string, buf []byte, pr prior, t *tagger) (chunked, error) {
	f, err := r.Open(p)
	if err != nil {
		return chunked{}, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return chunked{}, err
	}
	if !info.Mode().IsRegular() {
		return chunked{}, fmt.Errorf("no longer a regular file")
	}
	c := chunked{st: stampOf(info.Sys().(*syscall.Stat_t)), size: info.Size()}
	if c.size < mapMin {
		c.chunks, c.size, err = chunkReaderSized(f, buf, c.size)
		return c, err
	}
	now, trusted := syncedExtents(f)
	var ok bool
	if pr.was != nil {
		byExtents := trusted && pr.ext != nil
		var dirty []span
		if byExtents {
			dirty = changedSpans(pr.ext, now, pr.was.Size, c.size)
		}
		c.chunks, c.tags, ok = chunkChanged(f, c.size, pr, dirty, byExtents, t)
		c.partly, c.byTags = ok, ok && !byExtents
	}
	if !ok {
		if c.chunks, c.tags, c.size, ok = chunkMapped(f, c.size, t); !ok {
			c.chunks, c.size, err = chunkReaderSized(f, buf, info.Size())
			return chunked{chunks: c.chunks, size: c.size, st: c.st}, err
		}
	}
	if trusted {
		c.ext = now
	}
	// A write while f was read (after its items were taken) may not have
	// its item yet, and the chunks may hold its bytes, which a crash could
	// lose while the items stay as they were; the tags, taken in a second
	// pass over the bytes, may be of other bytes than the chunks' IDs.
	// Neither is kept then: the next change reads the file whole.
	if info, err := f.Stat(); err != nil || stampOf(info.Sys().(*syscall.Stat_t)) != c.st {
		c.ext, c.tags = nil, nil
	}
	return c, nil
}

// syncedExtents reads the extent items of f after syncing it: every
// write made before has its item then.
func syncedExtents(f *os.File) ([]extent, bool) {
	var fs unix.Statfs_t
	if unix.Fstatfs(int(f.Fd()), &fs) != nil || fs.Type != unix.BTRFS_SUPER_MAGIC {
		return nil, false
	}
	if f.Sync() != nil {
		return nil, false
	}
	now, ok := extentsOf(f)
	if ok && now == nil {
		now = []extent{} // an empty file, or all of it a hole
	}
	return now, ok
}

// chunkChanged cuts the file f (size bytes) again at the places that
// changed since pr: the spans dirty where extents say (byExtents), else
// those where pr's tags differ. Not ok when neither can say, when most
// of the file would be read anyway, or when f cannot be mapped.
func chunkChanged(f *os.File, size int64, pr prior, dirty []span, byExtents bool, t *tagger) (chunks []Chunk, tags []byte, ok bool) {
	var wasSize int64
	for _, c := range pr.was.Chunks {
		wasSize += int64(c.Size)
	}
	byTags := !byExtents && t != nil && len(pr.tags) == tagSize*len(pr.was.Chunks)
	if wasSize != pr.was.Size || !byExtents && !byTags {
		return nil, nil, false
	}
	much := func(dirty []span) bool {
		var n int64
		for _, d := range dirty {
			n += d.End - d.Off
		}
		return n > size/2
	}
	if byExtents && much(dirty) {
		return nil, nil, false // read it through instead
	}
	mapped, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, nil, false
	}
	defer unix.Munmap(mapped)
	ok = faultless(func() {
		if byTags {
			if dirty = tagsDiffer(mapped, pr.was.Chunks, pr.tags, pr.was.Size, t); much(dirty) {
				return
			}
		}
		chunks, tags, _ = rechunk(mapped, pr.was.Chunks, pr.tags, dirty, t)
	})
	if !ok || chunks == nil {
		return nil, nil, false
	}
	return chunks, tags, true
}

// faultless runs fn, which reads mappings of a file, and says whether it
// ran through: a read past the end of a file that shrank meanwhile
// faults, which SetPanicOnFault makes a panic, recovered here (any other
// panic goes on).
func faultless(fn func()) (ok bool) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if _, fault := r.(interface{ Addr() uintptr }); !fault {
				panic(r)
			}
			ok = false
		}
	}()
	fn()
	return true
}

// Files of mapMin bytes or more are chunked through a mapping of
// mapWindow bytes at a time: the page cache's pages are read where they
// are, not copied into the process first (the copy was a sixth of the
// sender's time).
const mapMin = 1 << 20

var mapWindow int64 = 64 << 20 // a variable for the tests

// chunkMapped cuts the first size bytes of f into chunks, reading them
// through mappings. It is not ok when f cannot be mapped, or shrank while
// it was read (a read past the end of a mapped file faults: with
// SetPanicOnFault that is a panic, recovered here); the caller reads it
// instead. A file that changed while mapped gives chunks of a mix of old
// and new bytes, as reading it would: its stamp, taken before, tells the
// next scan.
func chunkMapped(f *os.File, size int64, t *tagger) (chunks []Chunk, tags []byte, n int64, ok bool) {
	var mapped []byte
	defer func() {
		if mapped != nil {
			unix.Munmap(mapped)
		}
	}()
	chunks = make([]Chunk, 0, min(size/AvgChunk+16, 1<<20))
	if t != nil {
		tags = make([]byte, 0, tagSize*cap(chunks))
	}
	page := int64(os.Getpagesize())
	for n < size {
		// A window from the page that holds n; the chunks that end in
		// it are cut, the last one only at the end of the file.
		base := n &^ (page - 1)
		end := min(size, base+mapWindow)
		var err error
		if mapped, err = unix.Mmap(int(f.Fd()), base, int(end-base), unix.PROT_READ, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
			return nil, nil, 0, false
		}
		if !faultless(func() {
			for n < end && (end == size || end-n >= MaxChunk) {
				data := mapped[n-base : min(end-base, n-base+MaxChunk)]
				k := cut(data)
				chunks = append(chunks, Chunk{ID: blake3.Sum256(data[:k]), Size: uint32(k)})
				if t != nil {
					tags = t.appendTag(tags, data[:k])
				}
				n += int64(k)
			}
		}) {
			return nil, nil, 0, false
		}
		unix.Munmap(mapped)
		mapped = nil
	}
	return chunks, tags, n, true
}

// chunkReader cuts what r holds into chunks, with buf (larger than
// MaxChunk) as its buffer.
func chunkReader(r io.Reader, buf []byte) ([]Chunk, int64, error) {
	return chunkReaderSized(r, buf, 0)
}

// chunkReaderSized is chunkReader for about sizeHint bytes (the list of
// chunks is made once).
func chunkReaderSized(r io.Reader, buf []byte, sizeHint int64) ([]Chunk, int64, error) {
	var (
		chunks     = make([]Chunk, 0, min(sizeHint/AvgChunk+16, 1<<20))
		size       int64
		start, end int
		eof        bool
	)
	for {
		for !eof && end-start < MaxChunk {
			if start > 0 {
				end = copy(buf, buf[start:end])
				start = 0
			}
			n, err := r.Read(buf[end:])
			end += n
			if errors.Is(err, io.EOF) {
				eof = true
			} else if err != nil {
				return nil, 0, err
			}
		}
		if start == end {
			return chunks, size, nil
		}
		n := cut(buf[start:end])
		chunks = append(chunks, Chunk{ID: blake3.Sum256(buf[start : start+n]), Size: uint32(n)})
		size += int64(n)
		start += n
	}
}

// stateFile is a file of a tree's state directory.
func stateFile(state, name string) string { return filepath.Join(state, name) }
