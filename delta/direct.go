package delta

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// File packs: the chunks a TreeReceiver receives for a large file (at
// least directMin bytes) are staged in a file of their own in the staging
// area (chunks/f-HASH.fpack, named after the entry's path and digest),
// written at their offsets in the file, not appended to a pack. When the
// file pack of a file to build holds every chunk of it at its place
// (a first copy), Commit reads it through, hashing every chunk, and
// hard-links it into the new tree: each byte is written once, as rsync
// writes it, instead of into a pack and then into the new file. Otherwise
// the file pack is only a place to read staged chunks from, as a pack is.
//
// Beside each file pack, its index (FPACK.idx: ID, offset and size of each
// chunk, appended once the chunk is written) is, as a pack's, only a
// guide: an entry past the file's end is dropped, and a chunk found wrong
// fails its hash when used (then it is missing, and sent again). A file
// pack is never written again once its sync's Put is over: its name holds
// the digest of the entry it is for.

// directMin is the smallest file whose received chunks go to a file pack.
const directMin = 1 << 20

const fpackSuffix = ".fpack"

func fpackPath(dir string, e *Entry) string {
	d := e.Digest()
	h := Sum(append([]byte(e.Path+"\x00"), d[:]...))
	return filepath.Join(dir, "f-"+hex.EncodeToString(h[:16])+fpackSuffix)
}

// firstPlace is where a chunk first lies in a manifest: its file (an index
// of m.Entries) and offset; e < 0 for a chunk that goes to a pack.
type firstPlace struct {
	e   int32
	off int64
}

// firstPlaces maps each chunk of m (by its ID's first 8 bytes, as idSet)
// to its first place.
func firstPlaces(m *Manifest) map[uint64]firstPlace {
	out := make(map[uint64]firstPlace, m.chunkCount())
	for i, e := range m.Entries {
		if e.Kind != File {
			continue
		}
		fi := int32(i)
		if e.Size < directMin {
			fi = -1
		}
		var off int64
		for _, c := range e.Chunks {
			k := idKey(c.ID)
			if _, ok := out[k]; !ok {
				out[k] = firstPlace{fi, off}
			}
			off += int64(c.Size)
		}
	}
	return out
}

// fpackWriter writes the chunks of one file pack: runs of adjacent chunks
// in one write, their index entries after them.
type fpackWriter struct {
	f, xf   *os.File
	x       *bufio.Writer
	buf     []byte
	bufOff  int64
	pending []byte // index entries of the chunks in buf
}

func openFpack(p string, size int64) (*fpackWriter, error) {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if info, err := f.Stat(); err == nil && info.Size() < size {
		if err := f.Truncate(size); err != nil {
			f.Close()
			return nil, err
		}
	}
	// The index goes on after its last whole entry: a Put killed while
	// it wrote one leaves it cut short.
	var used int
	if idx, err := os.ReadFile(p + ".idx"); err == nil {
		used = readFpackIndex(idx, p, size, nil)
	}
	xf, err := os.OpenFile(p+".idx", os.O_WRONLY|os.O_CREATE, 0o600)
	if err == nil {
		if err = xf.Truncate(int64(used)); err == nil {
			_, err = xf.Seek(int64(used), io.SeekStart)
		}
		if err != nil {
			xf.Close()
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return &fpackWriter{f: f, xf: xf, x: bufio.NewWriterSize(xf, 16<<10), buf: make([]byte, 0, 1<<20)}, nil
}

func (w *fpackWriter) add(id ID, off int64, data []byte) error {
	if len(w.buf) > 0 && (w.bufOff+int64(len(w.buf)) != off || len(w.buf)+len(data) > cap(w.buf)) {
		if err := w.flush(); err != nil {
			return err
		}
	}
	if len(w.buf) == 0 {
		w.bufOff = off
	}
	w.buf = append(w.buf, data...)
	var hdr [32 + 2*binary.MaxVarintLen64]byte
	copy(hdr[:], id[:])
	k := binary.PutUvarint(hdr[32:], uint64(off))
	k += binary.PutUvarint(hdr[32+k:], uint64(len(data)))
	w.pending = append(w.pending, hdr[:32+k]...)
	return nil
}

// flush writes the chunks gathered, then their index entries.
func (w *fpackWriter) flush() error {
	if len(w.buf) > 0 {
		if _, err := w.f.WriteAt(w.buf, w.bufOff); err != nil {
			return err
		}
		w.buf = w.buf[:0]
	}
	_, err := w.x.Write(w.pending)
	w.pending = w.pending[:0]
	return err
}

func (w *fpackWriter) close() error {
	err := w.flush()
	if xerr := w.x.Flush(); err == nil {
		err = xerr
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if cerr := w.xf.Close(); err == nil {
		err = cerr
	}
	return err
}

// indexFpack adds the chunks of the file pack at p to out from its index
// (a file pack without one holds nothing known).
func indexFpack(p string, out map[ID]packLoc) error {
	idx, err := os.ReadFile(p + ".idx")
	if err != nil {
		return nil
	}
	info, err := os.Stat(p)
	if err != nil {
		return err
	}
	readFpackIndex(idx, p, info.Size(), out)
	return nil
}

// readFpackIndex adds the entries of a file pack's index to out, up to
// the first that is cut short or does not lie inside the file; it returns
// the length of the entries it took.
func readFpackIndex(idx []byte, p string, size int64, out map[ID]packLoc) (used int) {
	for len(idx)-used >= 32 {
		e := idx[used:]
		var id ID
		copy(id[:], e[:32])
		off, k1 := binary.Uvarint(e[32:])
		if k1 <= 0 {
			return used
		}
		n, k2 := binary.Uvarint(e[32+k1:])
		if k2 <= 0 || n == 0 || n > MaxChunk || off > uint64(size) || off+n > uint64(size) {
			return used
		}
		if out != nil {
			if _, ok := out[id]; !ok {
				out[id] = packLoc{pack: p, off: int64(off), size: uint32(n)}
			}
		}
		used += 32 + k1 + k2
	}
	return used
}

// directFile builds e in the new tree as a hard link to its file pack
// when that holds every chunk of e at its place, each hashed again here;
// ok is false (and nothing is made) otherwise.
func directFile(nr *os.Root, stageDir string, e *Entry, staged map[ID]packLoc, buf []byte) (ok bool, err error) {
	if e.Size < directMin {
		return false, nil
	}
	p := fpackPath(stageDir, e)
	var off int64
	for _, c := range e.Chunks {
		if l, ok := staged[c.ID]; !ok || l.pack != p || l.off != off || l.size != c.Size {
			return false, nil
		}
		off += int64(c.Size)
	}
	if off != e.Size {
		return false, nil
	}
	f, err := os.Open(p)
	if err != nil {
		return false, nil
	}
	defer f.Close()
	if info, err := f.Stat(); err != nil || info.Size() != e.Size {
		return false, nil
	}
	// Read through in large windows, hashing each chunk.
	var start, end int64 // of buf's bytes in the file
	off = 0
	for _, c := range e.Chunks {
		if off+int64(c.Size) > end {
			n, err := f.ReadAt(buf, off)
			if int64(n) < int64(c.Size) {
				if err == nil || errors.Is(err, io.EOF) {
					return false, nil
				}
				return false, err
			}
			start, end = off, off+int64(n)
		}
		if Sum(buf[off-start:off-start+int64(c.Size)]) != c.ID {
			return false, nil // damaged: built the usual way, which finds it missing
		}
		off += int64(c.Size)
	}
	nd, err := openParent(nr, e.Path)
	if err != nil {
		return false, err
	}
	defer nd.Close()
	if err := unix.Linkat(unix.AT_FDCWD, p, int(nd.Fd()), baseName(e.Path), 0); err != nil {
		// Another filesystem (a new tree built in a mount point, the
		// state outside it), links refused: built the usual way.
		return false, nil
	}
	return true, nil
}
