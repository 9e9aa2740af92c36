package delta

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// TreeSource reads a directory's tree. With State (a directory outside
// Root) it keeps an index there, so that unchanged files are not chunked
// again by the next sync.
type TreeSource struct {
	Root  string
	State string

	mu     sync.Mutex
	last   *index // of the last Manifest: the stamps Chunks trusts
	before *index // the index the last Manifest started from
}

var _ Source = (*TreeSource)(nil)

// Manifest scans the tree.
func (s *TreeSource) Manifest(ctx context.Context) (*Manifest, error) {
	x, before, err := scanWithStateFrom(ctx, s.Root, s.State)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.last, s.before = x, before
	s.mu.Unlock()
	return x.m, nil
}

// groupsBefore are the groups of the tree as the last Manifest found it
// in State's index, before it scanned: a receiver that synced from this
// source last time holds them (EncodeCompactFrom).
func (s *TreeSource) groupsBefore() map[ID][]Chunk {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.before == nil {
		return nil
	}
	return s.before.m.Groups()
}

// stamps are those of the files of the last manifest: this source's own,
// or the index in State (a source made for one request of the transport).
func (s *TreeSource) stamps() map[string]stamp {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last != nil {
		return s.last.stamps
	}
	if s.State != "" {
		if x := loadIndex(stateFile(s.State, "index")); x != nil {
			return x.stamps
		}
	}
	return nil
}

func scanWithState(ctx context.Context, root, state string) (*index, error) {
	x, _, err := scanWithStateFrom(ctx, root, state)
	return x, err
}

// scanWithStateFrom is scanWithState that also returns the index it
// started from (nil without one).
func scanWithStateFrom(ctx context.Context, root, state string) (*index, *index, error) {
	var prev *index
	if state != "" {
		if err := os.MkdirAll(state, 0o700); err != nil {
			return nil, nil, err
		}
		unlock, err := lockDir(state)
		if err != nil {
			return nil, nil, err
		}
		defer unlock()
		if err := recoverState(root, state); err != nil {
			return nil, nil, err
		}
		prev = loadIndex(stateFile(state, "index"))
	}
	x, err := scan(ctx, root, prev)
	if err != nil {
		return nil, nil, err
	}
	if state != "" && x.newer(prev) {
		if err := saveIndex(stateFile(state, "index"), x); err != nil {
			return nil, nil, err
		}
	}
	return x, prev, nil
}

// ErrSourceChanged is the error of a chunk that is no longer where the
// manifest put it: the source's file changed during the sync.
var ErrSourceChanged = errors.New("the source changed during the sync: run it again")

// Chunks reads the chunks from the files refs name (through os.Root: no
// path leaves Root) and checks each against its ID, unless its file has
// the stamp it had when the manifest was made (then it is the file the
// manifest hashed; the receiver hashes every chunk anyway).
func (s *TreeSource) Chunks(ctx context.Context, refs []Ref) (io.ReadCloser, error) {
	r, err := os.OpenRoot(s.Root)
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	go func() {
		defer r.Close()
		files := newFileCache(r)
		defer files.close()
		stamps := s.stamps()
		unchanged := map[string]bool{} // by path
		bw := bufio.NewWriterSize(pw, 256<<10)
		buf := make([]byte, MaxChunk)
		var frame []byte
		for _, ref := range refs {
			if err := ctx.Err(); err != nil {
				pw.CloseWithError(err)
				return
			}
			if err := checkPath(ref.Path); err != nil {
				pw.CloseWithError(err)
				return
			}
			f, err := files.open(ref.Path)
			if err != nil {
				pw.CloseWithError(fmt.Errorf("%s: %w", ref.Path, err))
				return
			}
			same, seen := unchanged[ref.Path]
			if !seen {
				if info, err := f.Stat(); err == nil {
					st, ok := stamps[ref.Path]
					same = ok && stampOf(info.Sys().(*syscall.Stat_t)) == st
				}
				unchanged[ref.Path] = same
			}
			data := buf[:ref.Size]
			if _, err := f.ReadAt(data, ref.Offset); err != nil || !same && Sum(data) != ref.ID {
				pw.CloseWithError(fmt.Errorf("%s at %d: %w", ref.Path, ref.Offset, ErrSourceChanged))
				return
			}
			frame = AppendFrame(frame[:0], ref.ID, data)
			if _, err := bw.Write(frame); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		pw.CloseWithError(bw.Flush())
	}()
	return pr, nil
}

// fileCache keeps a few files of a root open for reads at offsets.
type fileCache struct {
	r     *os.Root
	files map[string]*os.File
}

func newFileCache(r *os.Root) *fileCache { return &fileCache{r: r, files: map[string]*os.File{}} }

func (c *fileCache) open(p string) (*os.File, error) {
	if f, ok := c.files[p]; ok {
		return f, nil
	}
	if len(c.files) >= 64 {
		c.close()
	}
	f, err := c.r.Open(p)
	if err != nil {
		return nil, err
	}
	c.files[p] = f
	return f, nil
}

func (c *fileCache) close() {
	for p, f := range c.files {
		f.Close()
		delete(c.files, p)
	}
}

// TreeReceiver writes a tree into the directory Root. State is its own
// directory, on the same filesystem as Root and outside it: the index of
// Root, the staging area of received chunks (by hash), the manifest of
// the sync under way, and the new tree while it is built.
type TreeReceiver struct {
	Root  string
	State string
	// NoSync skips syncing the new tree before the switch (tests and
	// benchmarks of the engine's own cost only; a crash may then leave a
	// new tree whose files are not all on disk).
	NoSync bool
	// VerifyAll builds the new tree by reading and hashing every chunk,
	// those of the old files included, instead of trusting the index
	// for the old files whose stamp did not change (see build.go).
	VerifyAll bool

	// What this receiver's last calls read or made, so that the next
	// ones of the same sync need not decode it again: the index of Root
	// (only a guide for scan, as the index file is: every file's stamp is
	// checked again) and the pending manifest, with the stamp of the
	// file Want wrote it to (Put checks it is still that file).
	mu        sync.Mutex
	idx       *index
	pending   *Manifest
	pendingSt stamp
	places    map[uint64]firstPlace
	// staged is what the Puts of the pending manifest (stagedFor) have
	// staged, so that each Put need not read the staging area's indexes
	// again (a full copy is 16 Puts per GiB). Commit and Want drop it;
	// a Put holds it while it runs (another Put at once reads the disk).
	staged    map[ID]packLoc
	stagedFor *Manifest
}

var (
	_ Receiver    = (*TreeReceiver)(nil)
	_ GroupKnower = (*TreeReceiver)(nil)
)

func (t *TreeReceiver) stageDir() string { return filepath.Join(t.State, "chunks") }

// prevIndex is the index of Root this receiver last saw, else the one in
// State.
func (t *TreeReceiver) prevIndex() *index {
	t.mu.Lock()
	x := t.idx
	t.mu.Unlock()
	if x != nil {
		return x
	}
	return loadIndex(stateFile(t.State, "index"))
}

func (t *TreeReceiver) keepIndex(x *index) {
	t.mu.Lock()
	t.idx = x
	t.mu.Unlock()
}

// pendingPlaces is the pending manifest and its chunks' first places:
// those Want kept when the pending file is still the one it wrote.
func (t *TreeReceiver) pendingPlaces() (*Manifest, map[uint64]firstPlace, error) {
	t.mu.Lock()
	m, st, places := t.pending, t.pendingSt, t.places
	t.mu.Unlock()
	if m != nil {
		var fst syscall.Stat_t
		if syscall.Stat(stateFile(t.State, "pending"), &fst) == nil && stampOf(&fst) == st {
			if places == nil {
				places = firstPlaces(m)
				t.mu.Lock()
				if t.pending == m {
					t.places = places
				}
				t.mu.Unlock()
			}
			return m, places, nil
		}
	}
	m, err := t.Pending()
	if err != nil {
		return nil, nil, err
	}
	return m, firstPlaces(m), nil
}

// Want saves m as the sync under way and answers which of its chunks
// neither Root's files nor the staging area hold.
func (t *TreeReceiver) Want(ctx context.Context, m *Manifest) ([]ID, error) {
	if err := os.MkdirAll(filepath.Join(t.State, "chunks"), 0o700); err != nil {
		return nil, err
	}
	unlock, err := lockDir(t.State)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := recoverState(t.Root, t.State); err != nil {
		return nil, err
	}
	prev := t.prevIndex()
	old, err := scan(ctx, t.Root, prev)
	if err != nil {
		return nil, err
	}
	if old.newer(prev) {
		if err := saveIndex(stateFile(t.State, "index"), old); err != nil {
			return nil, err
		}
	}
	t.keepIndex(old)
	t.mu.Lock()
	t.pending, t.places, t.staged, t.stagedFor = nil, nil, nil, nil
	t.mu.Unlock()
	if err := writeFileAtomic(stateFile(t.State, "pending"), m.Encode(), 0o600); err != nil {
		return nil, err
	}
	var fst syscall.Stat_t
	if syscall.Stat(stateFile(t.State, "pending"), &fst) == nil {
		t.mu.Lock()
		t.pending, t.pendingSt = m, stampOf(&fst)
		t.mu.Unlock()
	}
	staged, err := stagedChunks(t.stageDir())
	if err != nil {
		return nil, err
	}
	return wantOf(m, old, staged), nil
}

// wantOf lists the chunks of m that neither the old tree nor the staging
// area holds, each once. A chunk at the same offset of the old file at
// its path with the same ID is held (most chunks of a changed file); the
// others are looked for among all the old files' chunks and the staged
// ones, through a set of them only.
func wantOf(m *Manifest, old *index, staged map[ID]packLoc) []ID {
	var rest []ID
	for _, e := range m.Entries {
		if e.Kind != File {
			continue
		}
		var oc []Chunk
		if oe := old.find(e.Path); oe != nil && oe.Kind == File {
			oc = oe.Chunks
		}
		var off, ooff int64
		j := 0
		for _, c := range e.Chunks {
			for j < len(oc) && ooff < off {
				ooff += int64(oc[j].Size)
				j++
			}
			if !(j < len(oc) && ooff == off && oc[j] == c) {
				rest = append(rest, c.ID)
			}
			off += int64(c.Size)
		}
	}
	if len(rest) == 0 {
		return nil
	}
	need := make(map[ID]bool, len(rest))
	for _, id := range rest {
		need[id] = true
	}
	keys := newIDSet(len(rest))
	for _, id := range rest {
		keys.add(id)
	}
	held := func(id ID) {
		if keys.has(id) && need[id] {
			need[id] = false
		}
	}
	for id := range staged {
		held(id) // received by an earlier sync that was cut short
	}
	for _, e := range old.m.Entries {
		for _, c := range e.Chunks {
			held(c.ID)
		}
	}
	var want []ID
	for _, id := range rest {
		if need[id] {
			need[id] = false // each once
			want = append(want, id)
		}
	}
	return want
}

// KnownGroups are the groups of chunks of Root's files (from the index,
// refreshed).
func (t *TreeReceiver) KnownGroups(ctx context.Context) (map[ID][]Chunk, error) {
	x, err := scanWithState(ctx, t.Root, t.State)
	if err != nil {
		return nil, err
	}
	t.keepIndex(x)
	return x.m.Groups(), nil
}

// Pending is the manifest Want saved.
func (t *TreeReceiver) Pending() (*Manifest, error) {
	b, err := os.ReadFile(stateFile(t.State, "pending"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errors.New("no sync under way: send the manifest first")
	}
	if err != nil {
		return nil, err
	}
	return DecodeManifest(b)
}

// Put keeps the frames' chunks in the staging area. Chunks that are not
// in the pending manifest are refused, so a sender cannot fill the disk
// with anything else.
func (t *TreeReceiver) Put(ctx context.Context, frames io.Reader) error {
	m, places, err := t.pendingPlaces()
	if err != nil {
		return err
	}
	// A chunk staged already (by this Put or an earlier one) is not
	// written again: a sender cannot grow the staging area beyond the
	// manifest's chunks.
	t.mu.Lock()
	staged := t.staged
	if t.stagedFor != m {
		staged = nil
	}
	t.staged, t.stagedFor = nil, nil
	t.mu.Unlock()
	if staged == nil {
		if staged, err = stagedChunks(t.stageDir()); err != nil {
			return err
		}
	}
	defer func() {
		t.mu.Lock()
		if t.pending == m {
			t.staged, t.stagedFor = staged, m
		}
		t.mu.Unlock()
	}()
	var pw *packWriter
	var fw *fpackWriter // of the file pack of m.Entries[fwE]
	fwE := int32(-1)
	// packOf is the file pack of m.Entries[e] (its name hashes the
	// entry's chunk list: made once per entry).
	packs := map[int32]string{}
	packOf := func(e int32) string {
		p, ok := packs[e]
		if !ok {
			p = fpackPath(t.stageDir(), &m.Entries[e])
			packs[e] = p
		}
		return p
	}
	err = func() error {
		fr := NewFrameReader(frames)
		for {
			if err := ctx.Err(); err != nil {
				return err
			}
			id, data, err := fr.Next()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
			pl, ok := places[idKey(id)]
			if !ok {
				return fmt.Errorf("chunk %s is not in the manifest of the sync under way", id)
			}
			if l, ok := staged[id]; ok {
				// Sent again: either twice in this stream, or what was
				// staged failed its hash at Commit. A file pack's chunk
				// is written again at its place (the same bytes: the
				// staging area does not grow); a pack's is not.
				if pl.e < 0 || l.pack == "" || l.pack != packOf(pl.e) || l.off != pl.off {
					continue
				}
			}
			if pl.e >= 0 {
				// At its place in its file's file pack (direct.go).
				// The chunks come in the manifest's order: one file
				// pack open at a time.
				if fw == nil || fwE != pl.e {
					if fw != nil {
						err := fw.close()
						fw = nil
						if err != nil {
							return err
						}
					}
					e := &m.Entries[pl.e]
					if fw, err = openFpack(packOf(pl.e), e.Size); err != nil {
						return err
					}
					fwE = pl.e
				}
				staged[id] = packLoc{pack: packOf(pl.e), off: pl.off}
				if err := fw.add(id, pl.off, data); err != nil {
					return err
				}
				continue
			}
			staged[id] = packLoc{pack: "pack"} // never written again
			if pw == nil {
				if pw, err = newPackWriter(t.stageDir()); err != nil {
					return err
				}
			}
			if err := pw.add(id, data); err != nil {
				return err
			}
		}
	}()
	// What arrived before an error is kept for the next sync.
	if fw != nil {
		if cerr := fw.close(); err == nil {
			err = cerr
		}
	}
	if pw != nil {
		if cerr := pw.close(); err == nil {
			err = cerr
		}
	}
	return err
}

// Commit builds m's tree beside Root from the staging area and Root's
// old files, hashing every chunk it writes, then exchanges it with Root
// in one rename. On any failure Root is left as it was.
func (t *TreeReceiver) Commit(ctx context.Context, m *Manifest) (rerr error) {
	unlock, err := lockDir(t.State)
	if err != nil {
		return err
	}
	defer unlock()
	if err := recoverState(t.Root, t.State); err != nil {
		return err
	}
	old, err := scan(ctx, t.Root, t.prevIndex())
	if err != nil {
		return err
	}
	// The cache is dropped: the tree changes below; it is set again
	// after the switch.
	t.mu.Lock()
	t.idx, t.pending, t.places, t.staged, t.stagedFor = nil, nil, nil, nil, nil
	t.mu.Unlock()
	newDir := filepath.Join(t.State, "new")
	inplace := inPlace(t.Root, t.State)
	if inplace {
		// A mount point or subvolume: the new tree is built inside it
		// and switched in entry by entry (swap.go).
		newDir = filepath.Join(t.Root, NewDirName)
		if err := keepRootMTime(t.Root, t.State); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(newDir); err != nil {
		return err
	}
	if err := os.Mkdir(newDir, 0o700); err != nil {
		return err
	}
	keep, switched := false, false
	defer func() {
		if !keep {
			os.RemoveAll(newDir)
			if inplace {
				restoreRootMTime(t.Root, t.State)
			}
		}
	}()
	nr, err := os.OpenRoot(newDir)
	if err != nil {
		return err
	}
	defer nr.Close()
	var oldRoot *os.Root
	if or, err := os.OpenRoot(t.Root); err == nil {
		defer or.Close()
		oldRoot = or
	}
	staged, err := stagedChunks(t.stageDir())
	if err != nil {
		return err
	}
	// Directories and symlinks first, in order; then the files, by as
	// many workers as there are CPUs.
	var files []*Entry
	for i := range m.Entries[1:] {
		e := &m.Entries[1+i]
		switch e.Kind {
		case Dir:
			err = nr.Mkdir(e.Path, 0o700)
		case Symlink:
			err = nr.Symlink(e.Target, e.Path)
		case File:
			files = append(files, e)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", e.Path, err)
		}
	}
	var (
		mu      sync.Mutex
		missing []ID
		first   error
		wg      sync.WaitGroup
		next    = make(chan *Entry)
		linked  = map[string]bool{}
		ot      = newOldTree(old)
		patches []*patchPlan
	)
	// Files that are overwrites of the old file at their path are
	// patched in place (patch.go), after every other file is built
	// (which may read any old file as it was).
	if !t.VerifyAll && oldRoot != nil {
		rest := make([]*Entry, 0, len(files))
		for _, e := range files {
			if pp := planPatch(e, ot.byPath[e.Path], staged); pp != nil {
				if linkOld(oldRoot, nr, e.Path, pp.of.stamp) == nil {
					patches = append(patches, pp)
					continue
				}
			}
			rest = append(rest, e)
		}
		files = rest
	}
	// Where each chunk of the old tree lies, for the files built anew.
	locs := map[ID]loc{}
	if len(files) > 0 {
		for _, e := range old.m.Entries {
			var off int64
			for _, c := range e.Chunks {
				if _, ok := locs[c.ID]; !ok {
					locs[c.ID] = loc{e.Path, off, c.Size}
				}
				off += int64(c.Size)
			}
		}
	}
	for range max(1, min(runtime.GOMAXPROCS(0), len(files))) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := &builder{staged: staged, locs: locs, packs: map[string]*os.File{}, wbuf: make([]byte, 0, 1<<20)}
			if oldRoot != nil {
				b.old = newFileCache(oldRoot)
			}
			defer b.close()
			for e := range next {
				var miss []ID
				var err error
				var link bool
				var direct bool
				if direct, err = directFile(nr, t.stageDir(), e, staged, b.dbuf()); direct || err != nil {
					// A first copy: its file pack, hashed, linked.
				} else if t.VerifyAll {
					err = writeFile(nr, e, b.chunk, &miss)
				} else if link, err = fastFile(nr, oldRoot, ot, e, b, &miss); errors.Is(err, errStale) {
					// An old file changed under the build: every chunk
					// read and hashed instead.
					miss = nil
					if err = nr.Remove(e.Path); err == nil {
						err = writeFile(nr, e, b.chunk, &miss)
					}
				}
				mu.Lock()
				missing = append(missing, miss...)
				if link {
					linked[e.Path] = true
				}
				if err != nil && first == nil {
					first = fmt.Errorf("%s: %w", e.Path, err)
				}
				mu.Unlock()
			}
		}()
	}
	for _, e := range files {
		if ctx.Err() != nil {
			break
		}
		next <- e
	}
	close(next)
	wg.Wait()
	if first != nil {
		return first
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(missing) > 0 {
		return &MissingError{IDs: missing}
	}
	if len(patches) > 0 {
		info, err := os.Lstat(newDir)
		if err != nil {
			return err
		}
		if err := writeUndo(t.State, oldRoot, info.Sys().(*syscall.Stat_t).Ino, patches); err != nil {
			os.Remove(undoFile(t.State))
			return fmt.Errorf("undo log: %w", err)
		}
		defer func() {
			if !switched {
				if err := rollbackUndo(t.Root, t.State); err != nil {
					rerr = errors.Join(rerr, fmt.Errorf("undo the patches of the old tree: %w (the next sync tries again)", err))
				}
			}
		}()
		err = eachPlan(patches, func(_ int, p *patchPlan) error {
			b := &builder{staged: staged, packs: map[string]*os.File{}}
			defer b.close()
			var miss []ID
			err := applyPatch(nr, p, b, &miss)
			mu.Lock()
			missing = append(missing, miss...)
			mu.Unlock()
			return err
		})
		if err != nil {
			return err
		}
		if len(missing) > 0 {
			return &MissingError{IDs: missing}
		}
	}
	// Metadata, deepest first, so that a directory's mtime is set after
	// what was made in it.
	for i := len(m.Entries) - 1; i >= 0; i-- {
		if linked[m.Entries[i].Path] {
			// A hard link to the old file, whose metadata is the
			// entry's already.
		} else if err := setMeta(nr, newDir, &m.Entries[i]); err != nil {
			return fmt.Errorf("%s: %w", m.Entries[i].Path, err)
		}
	}
	if !t.NoSync {
		if err := syncNew(nr, newDir, m); err != nil {
			return err
		}
	}
	// The switch.
	if inplace {
		keep = true // the switch finishes it, or its recovery does
		var err error
		switched, err = switchInPlace(t.Root, t.State, &m.Entries[0])
		if err != nil {
			return fmt.Errorf("switch the new tree into place: %w (the next sync finishes it)", err)
		}
	} else if _, err := os.Lstat(t.Root); errors.Is(err, fs.ErrNotExist) {
		err = os.Rename(newDir, t.Root)
		if err != nil {
			return err
		}
	} else if err := unix.Renameat2(unix.AT_FDCWD, newDir, unix.AT_FDCWD, t.Root, unix.RENAME_EXCHANGE); err != nil {
		return fmt.Errorf("switch the new tree into place: %w", err)
	}
	switched = true
	keep = true
	if d, err := os.Open(filepath.Dir(t.Root)); err == nil {
		d.Sync()
		d.Close()
	}
	dropUndo(t.State)
	// What follows only cleans up: the new tree is in place.
	if !inplace {
		os.RemoveAll(newDir) // the old tree
	}
	// The staging area goes first: a file linked from a file pack gets
	// a new ctime when the pack's name goes.
	os.RemoveAll(filepath.Join(t.State, "chunks"))
	// The stamps of the files where they are now (a rename changes a
	// file's ctime).
	if stamps, err := stampsUnder(t.Root, m); err == nil {
		x := &index{m: m, stamps: stamps}
		if saveIndex(stateFile(t.State, "index"), x) == nil {
			t.keepIndex(x)
		}
	} else {
		os.Remove(stateFile(t.State, "index")) // rebuilt by the next scan
	}
	os.Remove(stateFile(t.State, "pending"))
	return nil
}

// builder is one worker's means of reading chunks for Commit.
type builder struct {
	staged            map[ID]packLoc
	locs              map[ID]loc
	packs             map[string]*os.File
	old               *fileCache // nil without an old tree
	fromPack, fromOld readAhead
	fromFpack         readAhead // with a smaller window: a file pack of a small change is mostly holes
	wbuf              []byte    // fastFile's buffer of received chunks
	dirBuf            []byte    // directFile's
}

type loc struct {
	path string
	off  int64
	size uint32
}

// chunk returns a chunk's bytes, verified, from the staging area or an
// old file; nil when neither holds it (any more).
func (b *builder) chunk(c Chunk) []byte {
	if l, ok := b.staged[c.ID]; ok && l.size == c.Size {
		f := b.packs[l.pack]
		if f == nil {
			f, _ = os.Open(l.pack)
			b.packs[l.pack] = f
		}
		if f != nil {
			if data, err := b.packReader(l.pack).read(f, l.pack, l.off, int(c.Size)); err == nil && Sum(data) == c.ID {
				return data
			}
		}
	}
	if l, ok := b.locs[c.ID]; ok && b.old != nil && l.size == c.Size {
		if f, err := b.old.open(l.path); err == nil {
			if data, err := b.fromOld.read(f, l.path, l.off, int(c.Size)); err == nil && Sum(data) == c.ID {
				return data
			}
		}
	}
	return nil
}

// packReader is the read-ahead for chunks of a pack or file pack.
func (b *builder) packReader(p string) *readAhead {
	if strings.HasSuffix(p, fpackSuffix) {
		if b.fromFpack.buf == nil {
			b.fromFpack.buf = make([]byte, MaxChunk)
		}
		return &b.fromFpack
	}
	return &b.fromPack
}

// dbuf is directFile's buffer.
func (b *builder) dbuf() []byte {
	if b.dirBuf == nil {
		b.dirBuf = make([]byte, 4<<20)
	}
	return b.dirBuf
}

func (b *builder) close() {
	for _, f := range b.packs {
		if f != nil {
			f.Close()
		}
	}
	if b.old != nil {
		b.old.close()
	}
}

func writeFile(nr *os.Root, e *Entry, chunk func(Chunk) []byte, missing *[]ID) error {
	f, err := nr.OpenFile(e.Path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	for _, c := range e.Chunks {
		data := chunk(c)
		if data == nil {
			*missing = append(*missing, c.ID)
			continue
		}
		if len(*missing) > 0 {
			continue // keep looking for what is missing, write nothing
		}
		if _, err := w.Write(data); err != nil {
			f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// readAhead reads chunks of a file through a window of 1 MiB: chunks are
// mostly read in order, one pread per window instead of one per chunk.
type readAhead struct {
	key   string
	start int64
	win   []byte
	buf   []byte
}

// read returns n bytes at off of f (named key), valid until the next call.
func (r *readAhead) read(f *os.File, key string, off int64, n int) ([]byte, error) {
	if key == r.key && off >= r.start && off+int64(n) <= r.start+int64(len(r.win)) {
		return r.win[off-r.start : off-r.start+int64(n)], nil
	}
	if r.buf == nil {
		r.buf = make([]byte, 1<<20)
	}
	m, err := f.ReadAt(r.buf, off)
	if m < n {
		r.key = ""
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	r.key, r.start, r.win = key, off, r.buf[:m]
	return r.win[:n], nil
}

// setMeta gives an entry of the new tree its owner, mode and mtime.
// Owners are set only where the process may (as root).
func setMeta(nr *os.Root, dir string, e *Entry) error {
	if os.Geteuid() == 0 {
		if err := nr.Lchown(e.Path, int(e.UID), int(e.GID)); err != nil {
			return err
		}
	}
	mt := time.Unix(0, e.MTime)
	if e.Kind == Symlink {
		// The parents are directories this sync made (the manifest
		// puts nothing under a symlink): the path is safe to use.
		ts := []unix.Timespec{unix.NsecToTimespec(e.MTime), unix.NsecToTimespec(e.MTime)}
		return unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(dir, e.Path), ts, unix.AT_SYMLINK_NOFOLLOW)
	}
	mode := fs.FileMode(e.Mode & 0o777)
	if e.Mode&0o4000 != 0 {
		mode |= fs.ModeSetuid
	}
	if e.Mode&0o2000 != 0 {
		mode |= fs.ModeSetgid
	}
	if e.Mode&0o1000 != 0 {
		mode |= fs.ModeSticky
	}
	if err := nr.Chmod(e.Path, mode); err != nil {
		return err
	}
	return nr.Chtimes(e.Path, mt, mt)
}

// syncEachMax is the most entries syncNew syncs one by one; a larger tree
// is synced with one syncfs.
const syncEachMax = 256

// syncNew puts the new tree at dir (nr) on disk before the switch: every
// file (those linked to the old tree too: a file changed in the old tree
// and found equal to the new one may not be on disk yet) and every
// directory (the entries in it), one by one, when they are few; otherwise,
// or when the tree holds symlinks (whose inodes cannot be synced on their
// own), the whole filesystem with syncfs. Syncing a small tree's entries
// spares the sync the writeback of everything else dirty on the
// filesystem (other volumes, other tenants) that syncfs waits for; an
// entry with nothing dirty syncs at once.
func syncNew(nr *os.Root, dir string, m *Manifest) error {
	if len(m.Entries) > syncEachMax {
		return syncfs(dir)
	}
	var paths []string
	for i := range m.Entries {
		if m.Entries[i].Kind == Symlink {
			return syncfs(dir)
		}
		paths = append(paths, m.Entries[i].Path)
	}
	// The order does not matter: the switch comes after them all. A few
	// at a time, so that the disk sees their writes together.
	return inParallel(len(paths), 8, func(i int) error {
		f, err := nr.Open(paths[i])
		if err == nil {
			err = f.Sync()
			f.Close()
		}
		if err != nil {
			return fmt.Errorf("sync %s: %w", paths[i], err)
		}
		return nil
	})
}

func syncfs(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}

// lockDir takes an exclusive lock on a state directory: one sync at a
// time per tree.
func lockDir(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}

// Verify reads the tree at root and checks it against m: every entry,
// kind, metadata and each file's content, chunk by chunk.
func Verify(ctx context.Context, root string, m *Manifest) error {
	x, err := scan(ctx, root, nil)
	if err != nil {
		return err
	}
	got := map[string]*Entry{}
	for i := range x.m.Entries {
		got[x.m.Entries[i].Path] = &x.m.Entries[i]
	}
	var paths []string
	for _, e := range m.Entries {
		g := got[e.Path]
		if g == nil {
			return fmt.Errorf("%s: missing", e.Path)
		}
		delete(got, e.Path)
		if g.Kind != e.Kind || g.Mode != e.Mode || g.Target != e.Target || g.Size != e.Size || g.MTime != e.MTime {
			return fmt.Errorf("%s: differs (%v %o %d %q against %v %o %d %q)", e.Path, g.Kind, g.Mode, g.Size, g.Target, e.Kind, e.Mode, e.Size, e.Target)
		}
		if e.Kind == File && g.Digest() != e.Digest() {
			return fmt.Errorf("%s: content differs", e.Path)
		}
	}
	for p := range got {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	if len(paths) > 0 {
		return fmt.Errorf("%s: not in the manifest", paths[0])
	}
	return nil
}
