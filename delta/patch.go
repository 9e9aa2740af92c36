package delta

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/macro-cloud/macro/internal/atomicfile"
	"golang.org/x/sys/unix"
)

// Patching in place. A file that keeps its path and size, and whose
// changed chunks are overwrites at the same offsets (a database's pages, a
// disk image's blocks: rsync's and the bench's 1% change), is not copied:
// the new tree gets a hard link to the old file, and only the changed
// chunks are written into it. Written bytes are proportional to the
// change, not to the file.
//
// The old tree must still be whole until the switch, so before any byte is
// overwritten the bytes it replaces, and the file's mode, owner and mtime,
// go into an undo log in the state directory, synced. Then:
//
//   - a failure before the switch writes the old bytes back (rollback);
//   - the switch (the exchange, or the in-place switch's journal) makes the
//     log obsolete; it is removed right after;
//   - after a crash, recoverState decides by the log and the tree: with
//     an in-place switch journal, the switch had begun (the log is
//     dropped and the switch finished); after an exchange the root is the
//     directory the log names (dropped); otherwise the old tree is
//     restored from the log.
//
// Only chunks of the staging area (hashed on arrival, hashed again when
// read) are written in place, and only into a file whose stamp is still
// the index's, so the kept chunks are those the index hashed.

// patchPlan says how a new file is made from the old one at its path.
type patchPlan struct {
	e      *Entry
	of     *oldFile
	writes []patchWrite
}

type patchWrite struct {
	off int64
	c   Chunk
}

// maxPatchFraction: a file that changes more than this is built anew (the
// undo log would cost more than the copy saves).
const maxPatchFraction = 4 // a quarter

// planPatch returns how to patch e into the old file of at its path, or
// nil when e is not an overwrite of it: same size, every chunk either the
// old file's at the same offset or in the staging area.
func planPatch(e *Entry, of *oldFile, staged map[ID]packLoc) *patchPlan {
	if of == nil || of.e.Size != e.Size || e.Size == 0 {
		return nil
	}
	p := &patchPlan{e: e, of: of}
	var written, off, oldOff int64
	oc := of.e.Chunks
	for _, c := range e.Chunks {
		// The old chunk that starts at off, if one does (both lists
		// are in offset order).
		for len(oc) > 0 && oldOff < off {
			oldOff += int64(oc[0].Size)
			oc = oc[1:]
		}
		if len(oc) == 0 || oldOff != off || oc[0] != c {
			if l, ok := staged[c.ID]; !ok || l.size != c.Size {
				return nil
			}
			p.writes = append(p.writes, patchWrite{off, c})
			written += int64(c.Size)
		}
		off += int64(c.Size)
	}
	if written*maxPatchFraction > e.Size {
		return nil
	}
	return p
}

// undoFile is the undo log of a patch under way.
func undoFile(state string) string { return stateFile(state, "undo") }

var undoMagic = []byte("MDU1")

// undoRecord is what a patched file was: its metadata and the bytes the
// patch overwrote.
type undoRecord struct {
	Path           string
	Mode, UID, GID uint32
	MTime          int64
	Ranges         []undoRange
}

type undoRange struct {
	Off  int64
	Data []byte
}

// undoLog is the whole log: the new tree's directory (its inode, to tell
// after a crash whether the exchange happened) and the records.
type undoLog struct {
	NewDirIno uint64
	Files     []undoRecord
}

func (u *undoLog) encode() []byte {
	var b bytes.Buffer
	u.writeTo(&b)
	return b.Bytes()
}

// writeTo writes the log to w (the ranges' bytes as they are: no copy
// of the whole log in memory).
func (u *undoLog) writeTo(w io.Writer) error {
	var b []byte
	b = append(b, undoMagic...)
	b = binary.AppendUvarint(b, u.NewDirIno)
	b = binary.AppendUvarint(b, uint64(len(u.Files)))
	for _, f := range u.Files {
		b = appendString(b, f.Path)
		b = binary.AppendUvarint(b, uint64(f.Mode))
		b = binary.AppendUvarint(b, uint64(f.UID))
		b = binary.AppendUvarint(b, uint64(f.GID))
		b = binary.AppendVarint(b, f.MTime)
		b = binary.AppendUvarint(b, uint64(len(f.Ranges)))
		for _, r := range f.Ranges {
			b = binary.AppendUvarint(b, uint64(r.Off))
			b = binary.AppendUvarint(b, uint64(len(r.Data)))
			if _, err := w.Write(b); err != nil {
				return err
			}
			if _, err := w.Write(r.Data); err != nil {
				return err
			}
			b = b[:0]
		}
	}
	_, err := w.Write(b)
	return err
}

// decodeUndo parses an undo log, checked like anything read back from a
// disk that a crash may have cut.
func decodeUndo(b []byte) (*undoLog, error) {
	if !bytes.HasPrefix(b, undoMagic) {
		return nil, fmt.Errorf("undo log: %w: bad magic", ErrCorrupt)
	}
	d := decoder{b: b[len(undoMagic):]}
	u := &undoLog{NewDirIno: d.uvarint()}
	n := d.uvarintMax(uint64(len(d.b)))
	for i := uint64(0); i < n && d.err == nil; i++ {
		f := undoRecord{Path: d.string(4096)}
		f.Mode = uint32(d.uvarintMax(0o7777))
		f.UID = uint32(d.uvarintMax(1<<32 - 1))
		f.GID = uint32(d.uvarintMax(1<<32 - 1))
		f.MTime = d.varint()
		nr := d.uvarintMax(uint64(len(d.b)))
		for j := uint64(0); j < nr && d.err == nil; j++ {
			off := d.uvarintMax(1 << 62)
			size := d.uvarintMax(uint64(len(d.b)))
			f.Ranges = append(f.Ranges, undoRange{Off: int64(off), Data: d.bytes(int(size))})
		}
		if d.err == nil {
			if err := checkPath(f.Path); err != nil || f.Path == "." {
				d.fail("path %q", f.Path)
			}
		}
		u.Files = append(u.Files, f)
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d bytes after the last record", len(d.b))
	}
	if d.err != nil {
		return nil, fmt.Errorf("undo log: %w", d.err)
	}
	return u, nil
}

// writeUndo reads what the patches will overwrite from the old files (at
// their paths in the old tree, r) and keeps it in the state's undo log,
// synced.
func writeUndo(state string, r *os.Root, newDirIno uint64, plans []*patchPlan) error {
	u := &undoLog{NewDirIno: newDirIno, Files: make([]undoRecord, len(plans))}
	err := eachPlan(plans, func(i int, p *patchPlan) error {
		f, err := r.Open(p.e.Path)
		if err != nil {
			return err
		}
		defer f.Close()
		info, err := f.Stat()
		if err != nil {
			return err
		}
		st := info.Sys().(*syscall.Stat_t)
		rec := undoRecord{Path: p.e.Path, Mode: st.Mode & 0o7777, UID: st.Uid, GID: st.Gid, MTime: st.Mtim.Nano()}
		// One range per run of adjacent writes.
		for _, run := range writeRuns(p.writes) {
			data := make([]byte, run.size)
			if _, err := f.ReadAt(data, run.off); err != nil {
				return err
			}
			rec.Ranges = append(rec.Ranges, undoRange{Off: run.off, Data: data})
		}
		u.Files[i] = rec
		return nil
	})
	if err != nil {
		return err
	}
	return atomicfile.WriteWith(undoFile(state), 0o600, u.writeTo)
}

// eachPlan runs fn for every plan, a few files at a time; the first
// error is returned.
func eachPlan(plans []*patchPlan, fn func(int, *patchPlan) error) error {
	return inParallel(len(plans), runtime.GOMAXPROCS(0), func(i int) error {
		if err := fn(i, plans[i]); err != nil {
			return fmt.Errorf("%s: %w", plans[i].e.Path, err)
		}
		return nil
	})
}

// inParallel runs fn(i) for every i below n on up to workers goroutines
// and returns the first error (the others still run).
func inParallel(n, workers int, fn func(i int) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  = make(chan int)
	)
	for range max(1, min(workers, n)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}

// writeRun is a run of a patch's writes that follow each other.
type writeRun struct {
	off, size int64
	writes    []patchWrite
}

// maxRun bounds a run (a buffer of the undo log, or of the writes).
const maxRun = 1 << 20

func writeRuns(ws []patchWrite) []writeRun {
	var runs []writeRun
	for i, w := range ws {
		if n := len(runs); n > 0 && runs[n-1].off+runs[n-1].size == w.off && runs[n-1].size+int64(w.c.Size) <= maxRun {
			runs[n-1].size += int64(w.c.Size)
			runs[n-1].writes = ws[i-len(runs[n-1].writes) : i+1]
			continue
		}
		runs = append(runs, writeRun{off: w.off, size: int64(w.c.Size), writes: ws[i : i+1]})
	}
	return runs
}

// applyPatch writes a plan's chunks into the linked file of the new tree,
// a run of adjacent chunks at a time. A staged chunk that no longer
// hashes to its name is reported missing.
func applyPatch(nr *os.Root, p *patchPlan, b *builder, missing *[]ID) error {
	f, err := nr.OpenFile(p.e.Path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 0, maxRun)
	for _, run := range writeRuns(p.writes) {
		if err := runHookPatch(p.e.Path); err != nil {
			return err
		}
		buf, off := buf[:0], run.off
		flush := func() error {
			if len(buf) > 0 {
				if _, err := f.WriteAt(buf, off); err != nil {
					return err
				}
			}
			return nil
		}
		for _, w := range run.writes {
			data := b.staged1(w.c)
			if data == nil {
				// Written around: the runs on either side go alone.
				*missing = append(*missing, w.c.ID)
				if err := flush(); err != nil {
					return err
				}
				buf, off = buf[:0], w.off+int64(w.c.Size)
				continue
			}
			buf = append(buf, data...)
		}
		if err := flush(); err != nil {
			return err
		}
	}
	return f.Close()
}

// testHookPatch runs before each write of a patch (the crash test exits
// there), one call at a time.
var (
	testHookPatch func(path string) error
	hookMu        sync.Mutex
)

func runHookPatch(path string) error {
	if testHookPatch == nil {
		return nil
	}
	hookMu.Lock()
	defer hookMu.Unlock()
	return testHookPatch(path)
}

// rollbackUndo writes the undo log's bytes and metadata back into the old
// tree at root, synced, then removes the log.
func rollbackUndo(root, state string) error {
	b, err := os.ReadFile(undoFile(state))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	u, err := decodeUndo(b)
	if err != nil {
		return err
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return err
	}
	defer r.Close()
	for _, rec := range u.Files {
		f, err := r.OpenFile(rec.Path, os.O_WRONLY, 0)
		if err != nil {
			return fmt.Errorf("undo %s: %w", rec.Path, err)
		}
		for _, rg := range rec.Ranges {
			if _, err := f.WriteAt(rg.Data, rg.Off); err != nil {
				f.Close()
				return fmt.Errorf("undo %s: %w", rec.Path, err)
			}
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
		f.Close()
		if os.Geteuid() == 0 {
			if err := r.Lchown(rec.Path, int(rec.UID), int(rec.GID)); err != nil {
				return err
			}
		}
		if err := r.Chmod(rec.Path, fileMode(rec.Mode)); err != nil {
			return err
		}
		mt := time.Unix(0, rec.MTime)
		if err := r.Chtimes(rec.Path, mt, mt); err != nil {
			return err
		}
	}
	if err := os.Remove(undoFile(state)); err != nil {
		return err
	}
	return atomicfile.SyncDir(state)
}

// dropUndo removes an undo log the switch made obsolete.
func dropUndo(state string) {
	if os.Remove(undoFile(state)) == nil {
		atomicfile.SyncDir(state)
	}
}

// recoverState brings the tree at root and its state directory to a
// consistent state after a crash: a switch in place is finished, a patch
// whose switch did not happen is undone (the caller holds the lock).
func recoverState(root, state string) error {
	if _, err := os.Stat(journalFile(state)); err == nil {
		dropUndo(state)
		return recoverSwap(root, state)
	}
	// Without a journal, a sync in place did not switch: the old tree
	// stays, and gets its patches undone and its root's mtime back.
	defer restoreRootMTime(root, state)
	b, err := os.ReadFile(undoFile(state))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	u, err := decodeUndo(b)
	if err != nil {
		return err
	}
	var st unix.Stat_t
	if unix.Lstat(root, &st) == nil && st.Ino == u.NewDirIno {
		dropUndo(state) // the exchange happened: root is the new tree
		return nil
	}
	return rollbackUndo(root, state)
}
