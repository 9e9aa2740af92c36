package delta

import (
	"bufio"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The staging area of a TreeReceiver: chunks received and not yet part of
// the tree, kept in pack files (the frames as they came, one pack per
// Put), so that a sync cut short keeps what it received. A pack cut by a
// crash ends at its last whole frame; every chunk is hashed again when it
// is used. Beside each pack, its index (PACK.idx: ID, offset and size of
// each frame's chunk, written as the frames are) spares reading the pack
// to find its chunks: a sync calls Put once per 64 MiB, each finding what
// the earlier ones staged. An index is only a guide: entries that point
// past the pack's end are dropped, and a chunk found at a wrong place
// fails its hash when used (then it is missing, and sent again). A pack
// without an index is read through. The chunks of large files go to file
// packs instead (direct.go).

type packLoc struct {
	pack string
	off  int64 // of the chunk's bytes
	size uint32
}

// stagedChunks indexes the packs in dir by the frames' headers.
func stagedChunks(dir string) (map[ID]packLoc, error) {
	out := map[ID]packLoc{}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		if strings.HasSuffix(e.Name(), fpackSuffix) {
			if err := indexFpack(p, out); err != nil {
				return nil, err
			}
			continue
		}
		if !strings.HasSuffix(e.Name(), ".pack") {
			continue
		}
		if err := indexPack(p, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// indexPack adds the chunks of the pack at p to out, from its index when
// it has one.
func indexPack(p string, out map[ID]packLoc) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	var off int64
	if idx, err := os.ReadFile(p + ".idx"); err == nil {
		// The frames after the index's last (a crash can leave the
		// index behind its pack) are read from the pack.
		off = readPackIndex(idx, p, info.Size(), out)
	}
	// One pass through the pack, reading ahead (not a pread per frame:
	// a pack of a full copy holds a frame per 4 KiB).
	br := bufio.NewReaderSize(io.NewSectionReader(f, off, info.Size()-off), 1<<20)
	var hdr [32 + binary.MaxVarintLen64]byte
	for off < info.Size() {
		if _, err := io.ReadFull(br, hdr[:32]); err != nil {
			break
		}
		cr := &countingByteReader{r: br}
		size, err := binary.ReadUvarint(cr)
		if err != nil {
			break
		}
		k := cr.n
		// Packs hold the shortest varint (PutUvarint): anything else
		// is damage.
		if size == 0 || size > MaxChunk || k != len(binary.AppendUvarint(hdr[32:32], size)) || off+32+int64(k)+int64(size) > info.Size() {
			break // a frame cut short: the end of what arrived
		}
		if _, err := br.Discard(int(size)); err != nil {
			break
		}
		var id ID
		copy(id[:], hdr[:32])
		out[id] = packLoc{pack: p, off: off + 32 + int64(k), size: uint32(size)}
		off += 32 + int64(k) + int64(size)
	}
	return nil
}

// readPackIndex adds the entries of a pack's index (of a pack of
// packSize bytes) to out, up to the first that is cut short, points
// outside the pack or before the end of the one before; it returns the
// end of the last entry's chunk in the pack (the next frame's offset).
func readPackIndex(idx []byte, p string, packSize int64, out map[ID]packLoc) (end int64) {
	for len(idx) >= 32 {
		var id ID
		copy(id[:], idx[:32])
		off, k1 := binary.Uvarint(idx[32:])
		if k1 <= 0 {
			return end
		}
		size, k2 := binary.Uvarint(idx[32+k1:])
		if k2 <= 0 || size == 0 || size > MaxChunk || off < uint64(end)+33 || off > uint64(packSize) || off+size > uint64(packSize) {
			return end
		}
		out[id] = packLoc{pack: p, off: int64(off), size: uint32(size)}
		end = int64(off + size)
		idx = idx[32+k1+k2:]
	}
	return end
}

// countingByteReader counts the bytes a varint took.
type countingByteReader struct {
	r *bufio.Reader
	n int
}

func (c *countingByteReader) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		c.n++
	}
	return b, err
}

// newPack makes a pack file in dir for one Put.
func newPack(dir string) (*os.File, error) {
	var r [6]byte
	rand.Read(r[:])
	name := fmt.Sprintf("%d-%s.pack", time.Now().UnixNano(), hex.EncodeToString(r[:]))
	return os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
}

// packWriter appends verified frames to a pack, and their places to its
// index.
type packWriter struct {
	f, xf *os.File
	w, x  *bufio.Writer
	off   int64 // the pack's size
	n     int   // frames added
}

func newPackWriter(dir string) (*packWriter, error) {
	f, err := newPack(dir)
	if err != nil {
		return nil, err
	}
	xf, err := os.OpenFile(f.Name()+".idx", os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	return &packWriter{f: f, xf: xf, w: bufio.NewWriterSize(f, 1<<20), x: bufio.NewWriterSize(xf, 64<<10)}, nil
}

func (p *packWriter) add(id ID, data []byte) error {
	var hdr [32 + 2*binary.MaxVarintLen64]byte
	copy(hdr[:], id[:])
	n := binary.PutUvarint(hdr[32:], uint64(len(data)))
	if _, err := p.w.Write(hdr[:32+n]); err != nil {
		return err
	}
	if _, err := p.w.Write(data); err != nil {
		return err
	}
	k := binary.PutUvarint(hdr[32:], uint64(p.off)+uint64(32+n))
	k += binary.PutUvarint(hdr[32+k:], uint64(len(data)))
	p.off += int64(32 + n + len(data))
	p.n++
	_, err := p.x.Write(hdr[:32+k])
	return err
}

// close keeps what was written, whatever happened to the stream (the
// pack before its index); a pack that got nothing is removed.
func (p *packWriter) close() error {
	err := p.w.Flush()
	if cerr := p.f.Close(); err == nil {
		err = cerr
	}
	if xerr := p.x.Flush(); err == nil {
		err = xerr
	}
	if cerr := p.xf.Close(); err == nil {
		err = cerr
	}
	if p.n == 0 {
		os.Remove(p.f.Name())
		os.Remove(p.xf.Name())
	}
	return err
}
