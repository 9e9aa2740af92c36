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
// is used.

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
		if !strings.HasSuffix(e.Name(), ".pack") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		info, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, err
		}
		// One pass through the pack, reading ahead (not a pread per
		// frame: a pack of a full copy holds a frame per 4 KiB).
		br := bufio.NewReaderSize(io.NewSectionReader(f, 0, info.Size()), 1<<20)
		var hdr [32 + binary.MaxVarintLen64]byte
		for off := int64(0); off < info.Size(); {
			if _, err := io.ReadFull(br, hdr[:32]); err != nil {
				break
			}
			cr := &countingByteReader{r: br}
			size, err := binary.ReadUvarint(cr)
			if err != nil {
				break
			}
			k := cr.n
			// Packs hold the shortest varint (PutUvarint): anything
			// else is damage.
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
		f.Close()
	}
	return out, nil
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

// packWriter appends verified frames to a pack.
type packWriter struct {
	f *os.File
	w *bufio.Writer
	n int // frames added
}

func (p *packWriter) add(id ID, data []byte) error {
	var hdr [32 + binary.MaxVarintLen64]byte
	copy(hdr[:], id[:])
	n := binary.PutUvarint(hdr[32:], uint64(len(data)))
	if _, err := p.w.Write(hdr[:32+n]); err != nil {
		return err
	}
	_, err := p.w.Write(data)
	p.n++
	return err
}

// close keeps what was written, whatever happened to the stream; a pack
// that got nothing is removed.
func (p *packWriter) close() error {
	err := p.w.Flush()
	if cerr := p.f.Close(); err == nil {
		err = cerr
	}
	if p.n == 0 {
		os.Remove(p.f.Name())
	}
	return err
}
