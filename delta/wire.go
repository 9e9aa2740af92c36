package delta

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Ref locates a chunk in a source's tree: the file, the offset, the size.
// A source that keeps chunks by ID (Store) needs only ID.
type Ref struct {
	Path   string
	Offset int64
	Size   uint32
	ID     ID
}

// Refs are the references of the chunks of ids in m, each once, at the
// first place m holds it.
func Refs(m *Manifest, ids []ID) []Ref {
	want := make(map[ID]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	var out []Ref
	for _, e := range m.Entries {
		var off int64
		for _, c := range e.Chunks {
			if want[c.ID] {
				out = append(out, Ref{Path: e.Path, Offset: off, Size: c.Size, ID: c.ID})
				delete(want, c.ID)
			}
			off += int64(c.Size)
		}
	}
	return out
}

var (
	refsMagic = []byte("MDR1")
	wantMagic = []byte("MDW1")
)

// EncodeRefs serializes chunk references (a source's Chunks request).
func EncodeRefs(refs []Ref) []byte {
	b := append([]byte(nil), refsMagic...)
	b = binary.AppendUvarint(b, uint64(len(refs)))
	for _, r := range refs {
		b = appendString(b, r.Path)
		b = binary.AppendUvarint(b, uint64(r.Offset))
		b = binary.AppendUvarint(b, uint64(r.Size))
		b = append(b, r.ID[:]...)
	}
	return b
}

// DecodeRefs parses chunk references; paths are checked as a manifest's.
func DecodeRefs(b []byte) ([]Ref, error) {
	if !bytes.HasPrefix(b, refsMagic) {
		return nil, fmt.Errorf("chunk references: %w: bad magic", ErrCorrupt)
	}
	d := decoder{b: b[len(refsMagic):]}
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b))/36 {
		d.fail("reference count %d", n)
	}
	var refs []Ref
	for i := uint64(0); i < n && d.err == nil; i++ {
		var r Ref
		r.Path = d.string(maxPath)
		r.Offset = int64(d.uvarintMax(1 << 62))
		sz := d.uvarintMax(MaxChunk)
		copy(r.ID[:], d.bytes(32))
		if d.err != nil {
			break
		}
		if sz == 0 {
			d.fail("empty chunk")
			break
		}
		r.Size = uint32(sz)
		if r.Path != "" {
			if err := checkPath(r.Path); err != nil {
				return nil, fmt.Errorf("chunk references: %w", err)
			}
		}
		refs = append(refs, r)
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d bytes after the last reference", len(d.b))
	}
	if d.err != nil {
		return nil, fmt.Errorf("chunk references: %w", d.err)
	}
	return refs, nil
}

// EncodeWant serializes a receiver's answer: the IDs it lacks.
func EncodeWant(ids []ID) []byte {
	b := append([]byte(nil), wantMagic...)
	b = binary.AppendUvarint(b, uint64(len(ids)))
	for _, id := range ids {
		b = append(b, id[:]...)
	}
	return b
}

// DecodeWant parses a receiver's answer.
func DecodeWant(b []byte) ([]ID, error) {
	if !bytes.HasPrefix(b, wantMagic) {
		return nil, fmt.Errorf("want list: %w: bad magic", ErrCorrupt)
	}
	d := decoder{b: b[len(wantMagic):]}
	n := d.uvarint()
	if d.err == nil && (n > uint64(len(d.b))/32 || n*32 != uint64(len(d.b))) {
		d.fail("%d IDs in %d bytes", n, len(d.b))
	}
	if d.err != nil {
		return nil, fmt.Errorf("want list: %w", d.err)
	}
	ids := make([]ID, n)
	for i := range ids {
		copy(ids[i][:], d.b[32*i:])
	}
	return ids, nil
}

var knownMagic = []byte("MDK1")

// EncodeKnown serializes the groups a receiver holds, each by the first 8
// bytes of its hash (compact.go).
func EncodeKnown(ids []ID) []byte {
	b := append([]byte(nil), knownMagic...)
	b = binary.AppendUvarint(b, uint64(len(ids)))
	for _, id := range ids {
		b = append(b, id[:8]...)
	}
	return b
}

// DecodeKnown parses a list of the groups a receiver holds: 8 bytes each,
// or whole hashes as a want list (what earlier versions sent).
func DecodeKnown(b []byte) (idSet, error) {
	if bytes.HasPrefix(b, wantMagic) {
		ids, err := DecodeWant(b)
		if err != nil {
			return nil, err
		}
		s := newIDSet(len(ids))
		for _, id := range ids {
			s.add(id)
		}
		return s, nil
	}
	if !bytes.HasPrefix(b, knownMagic) {
		return nil, fmt.Errorf("group list: %w: bad magic", ErrCorrupt)
	}
	d := decoder{b: b[len(knownMagic):]}
	n := d.uvarint()
	if d.err == nil && (n > uint64(len(d.b))/8 || n*8 != uint64(len(d.b))) {
		d.fail("%d groups in %d bytes", n, len(d.b))
	}
	if d.err != nil {
		return nil, fmt.Errorf("group list: %w", d.err)
	}
	s := make(idSet, n)
	for i := range int(n) {
		s[binary.LittleEndian.Uint64(d.b[8*i:])] = struct{}{}
	}
	return s, nil
}

// Frames carry chunks: the ID (32 bytes), the size (uvarint), the bytes.
// The stream ends with the end of its reader.

// AppendFrame appends one frame to b.
func AppendFrame(b []byte, id ID, data []byte) []byte {
	b = append(b, id[:]...)
	b = binary.AppendUvarint(b, uint64(len(data)))
	return append(b, data...)
}

// FrameReader reads frames and checks each chunk against its ID.
type FrameReader struct {
	r   *bufio.Reader
	buf []byte
}

// NewFrameReader reads frames from r.
func NewFrameReader(r io.Reader) *FrameReader {
	return &FrameReader{r: bufio.NewReaderSize(r, 256<<10), buf: make([]byte, MaxChunk)}
}

// Next returns the next chunk, verified (its hash is its ID); io.EOF at a
// clean end. The data is valid until the next call.
func (f *FrameReader) Next() (ID, []byte, error) {
	var id ID
	if _, err := io.ReadFull(f.r, id[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return id, nil, fmt.Errorf("chunk frames: %w: truncated", ErrCorrupt)
		}
		return id, nil, err // io.EOF: the end
	}
	n, err := binary.ReadUvarint(f.r)
	if err != nil {
		return id, nil, fmt.Errorf("chunk frames: %w: truncated size", ErrCorrupt)
	}
	if n == 0 || n > MaxChunk {
		return id, nil, fmt.Errorf("chunk frames: %w: chunk of %d bytes", ErrCorrupt, n)
	}
	data := f.buf[:n]
	if _, err := io.ReadFull(f.r, data); err != nil {
		return id, nil, fmt.Errorf("chunk frames: %w: truncated chunk %s", ErrCorrupt, id)
	}
	if Sum(data) != id {
		return id, nil, fmt.Errorf("chunk frames: %w: chunk %s does not hash to its name", ErrCorrupt, id)
	}
	return id, data, nil
}
