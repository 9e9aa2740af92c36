package delta

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/zeebo/blake3"
)

// ID names a chunk: the BLAKE3-256 hash of its bytes.
type ID [32]byte

func (id ID) String() string { return hex.EncodeToString(id[:]) }

// ParseID reads an ID in hex.
func ParseID(s string) (ID, error) {
	var id ID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(id) {
		return id, fmt.Errorf("invalid digest %q: want %d hex digits", s, 2*len(id))
	}
	copy(id[:], b)
	return id, nil
}

// Sum is the ID of data.
func Sum(data []byte) ID { return blake3.Sum256(data) }

// Kind is what an entry is.
type Kind uint8

// Kinds of entries. Device nodes, FIFOs and sockets are not carried.
const (
	Dir     Kind = 1
	File    Kind = 2
	Symlink Kind = 3
)

func (k Kind) String() string {
	switch k {
	case Dir:
		return "dir"
	case File:
		return "file"
	case Symlink:
		return "symlink"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Chunk is one piece of a file.
type Chunk struct {
	ID   ID
	Size uint32
}

// Entry is one thing of the tree. Path is slash-separated and relative to
// the tree's root; the root itself is ".", always the first entry.
type Entry struct {
	Path  string
	Kind  Kind
	Mode  uint32 // permission bits with setuid, setgid and sticky (07777)
	UID   uint32
	GID   uint32
	MTime int64 // nanoseconds since the epoch
	// Size and Chunks of a file.
	Size   int64
	Chunks []Chunk
	// Target of a symlink, as it is: it is stored, never followed.
	Target string
}

// Digest of a file: the hash of its size and its chunks' IDs, so that a
// file whose every chunk was hashed is verified by its chunk list.
func (e *Entry) Digest() ID {
	h := blake3.New()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(e.Size))
	h.Write(b[:])
	for _, c := range e.Chunks {
		h.Write(c.ID[:])
	}
	var id ID
	h.Sum(id[:0])
	return id
}

// Manifest is a tree: its entries in walk order (a directory before what
// it holds, names compared component by component).
type Manifest struct {
	Entries []Entry
}

// Size is the sum of the files' sizes.
func (m *Manifest) Size() int64 {
	var n int64
	for _, e := range m.Entries {
		n += e.Size
	}
	return n
}

// Limits of what a manifest may hold.
const (
	maxPath    = 4096
	maxName    = 255
	maxTarget  = 4096
	maxEntries = 1 << 26
)

var manifestMagic = []byte("MDM1")

// Encode serializes m; the last 32 bytes are the BLAKE3 hash of the rest,
// which names the manifest (ManifestID).
func (m *Manifest) Encode() []byte {
	b := make([]byte, 0, m.encodedSizeHint())
	b = append(b, manifestMagic...)
	b = binary.AppendUvarint(b, uint64(len(m.Entries)))
	for i := range m.Entries {
		e := &m.Entries[i]
		b = append(b, byte(e.Kind))
		b = appendString(b, e.Path)
		b = binary.AppendUvarint(b, uint64(e.Mode))
		b = binary.AppendUvarint(b, uint64(e.UID))
		b = binary.AppendUvarint(b, uint64(e.GID))
		b = binary.AppendVarint(b, e.MTime)
		switch e.Kind {
		case File:
			b = binary.AppendUvarint(b, uint64(e.Size))
			b = binary.AppendUvarint(b, uint64(len(e.Chunks)))
			for _, c := range e.Chunks {
				b = append(b, c.ID[:]...)
				b = binary.AppendUvarint(b, uint64(c.Size))
			}
		case Symlink:
			b = appendString(b, e.Target)
		}
	}
	sum := blake3.Sum256(b)
	return append(b, sum[:]...)
}

// chunkCount is the number of chunk references of m's files.
func (m *Manifest) chunkCount() int {
	n := 0
	for i := range m.Entries {
		n += len(m.Entries[i].Chunks)
	}
	return n
}

// encodedSizeHint is about the size of m encoded (a buffer made once).
func (m *Manifest) encodedSizeHint() int {
	n := 64
	for i := range m.Entries {
		n += len(m.Entries[i].Path) + len(m.Entries[i].Target) + 32 + 35*len(m.Entries[i].Chunks)
	}
	return n
}

// ManifestID is the name of an encoded manifest: its trailing hash.
func ManifestID(encoded []byte) ID {
	var id ID
	if len(encoded) >= len(id) {
		copy(id[:], encoded[len(encoded)-len(id):])
	}
	return id
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// ErrCorrupt is the error of bytes that are not what they claim to be.
var ErrCorrupt = errors.New("corrupt")

// DecodeManifest parses and checks an encoded manifest: its hash, bounds,
// and every path (relative, no "..", nothing under a symlink or a file,
// in walk order without duplicates).
func DecodeManifest(b []byte) (*Manifest, error) {
	if len(b) < len(manifestMagic)+32 || !bytes.Equal(b[:len(manifestMagic)], manifestMagic) {
		return nil, fmt.Errorf("manifest: %w: not a manifest", ErrCorrupt)
	}
	body, sum := b[:len(b)-32], b[len(b)-32:]
	if got := blake3.Sum256(body); !bytes.Equal(got[:], sum) {
		return nil, fmt.Errorf("manifest: %w: its hash does not match", ErrCorrupt)
	}
	d := decoder{b: body[len(manifestMagic):]}
	n := d.uvarint()
	if d.err == nil && (n == 0 || n > maxEntries || n > uint64(len(d.b))/6) {
		d.fail("entry count %d", n)
	}
	m := &Manifest{}
	dirs := map[string]bool{}
	var prev string
	for i := uint64(0); i < n && d.err == nil; i++ {
		var e Entry
		e.Kind = Kind(d.byte())
		e.Path = d.string(maxPath)
		e.Mode = uint32(d.uvarintMax(0o7777))
		e.UID = uint32(d.uvarintMax(1<<32 - 1))
		e.GID = uint32(d.uvarintMax(1<<32 - 1))
		e.MTime = d.varint()
		switch e.Kind {
		case Dir:
		case File:
			e.Size = int64(d.uvarintMax(1 << 62))
			nc := d.uvarint()
			if d.err == nil && nc > uint64(len(d.b))/33 {
				d.fail("chunk count %d of %q", nc, e.Path)
			}
			if d.err != nil {
				break
			}
			e.Chunks = make([]Chunk, nc)
			var total int64
			for j := range e.Chunks {
				copy(e.Chunks[j].ID[:], d.bytes(32))
				sz := d.uvarintMax(MaxChunk)
				if d.err == nil && sz == 0 {
					d.fail("empty chunk in %q", e.Path)
				}
				e.Chunks[j].Size = uint32(sz)
				total += int64(sz)
			}
			if d.err == nil && total != e.Size {
				d.fail("chunks of %q add up to %d bytes, not its size %d", e.Path, total, e.Size)
			}
		case Symlink:
			e.Target = d.string(maxTarget)
			if d.err == nil && (e.Target == "" || strings.IndexByte(e.Target, 0) >= 0) {
				d.fail("symlink %q: invalid target", e.Path)
			}
		default:
			d.fail("entry %d: unknown kind %d", i, e.Kind)
		}
		if d.err != nil {
			break
		}
		if i == 0 {
			if e.Path != "." || e.Kind != Dir {
				return nil, fmt.Errorf("manifest: %w: the first entry is not the root directory", ErrCorrupt)
			}
		} else {
			if err := checkPath(e.Path); err != nil {
				return nil, fmt.Errorf("manifest: %w", err)
			}
			if !dirs[parent(e.Path)] {
				return nil, fmt.Errorf("manifest: %w: %q is not inside a directory of the tree", ErrCorrupt, e.Path)
			}
			if i > 1 && comparePaths(prev, e.Path) >= 0 {
				return nil, fmt.Errorf("manifest: %w: %q out of order (after %q)", ErrCorrupt, e.Path, prev)
			}
		}
		if e.Kind == Dir {
			dirs[e.Path] = true
		}
		prev = e.Path
		m.Entries = append(m.Entries, e)
	}
	if d.err != nil {
		return nil, fmt.Errorf("manifest: %w", d.err)
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("manifest: %w: %d bytes after the last entry", ErrCorrupt, len(d.b))
	}
	return m, nil
}

// checkPath refuses paths that leave the tree or name it oddly: absolute,
// empty, ".", "..", empty components, NUL, overlong names.
func checkPath(p string) error {
	if p == "." || !fs.ValidPath(p) || strings.IndexByte(p, 0) >= 0 || len(p) > maxPath {
		return fmt.Errorf("%w: invalid path %q", ErrCorrupt, p)
	}
	for _, c := range strings.Split(p, "/") {
		if len(c) > maxName {
			return fmt.Errorf("%w: path %q has a name longer than %d bytes", ErrCorrupt, p, maxName)
		}
	}
	return nil
}

func parent(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return "."
}

// comparePaths orders paths component by component, so that a directory's
// contents follow it directly ("a", "a/b", "a.b").
func comparePaths(a, b string) int {
	for {
		ai, bi := strings.IndexByte(a, '/'), strings.IndexByte(b, '/')
		ac, bc := a, b
		if ai >= 0 {
			ac = a[:ai]
		}
		if bi >= 0 {
			bc = b[:bi]
		}
		if c := strings.Compare(ac, bc); c != 0 {
			return c
		}
		switch {
		case ai < 0 && bi < 0:
			return 0
		case ai < 0:
			return -1
		case bi < 0:
			return 1
		}
		a, b = a[ai+1:], b[bi+1:]
	}
}

// decoder reads varints and strings with bounds; the first error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
	}
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("truncated")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) uvarintMax(max uint64) uint64 {
	v := d.uvarint()
	if v > max {
		d.fail("value %d above %d", v, max)
		return 0
	}
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("truncated")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	b := d.bytes(1)
	if b == nil {
		return 0
	}
	return b[0]
}

func (d *decoder) bytes(n int) []byte {
	if d.err != nil {
		return nil
	}
	if len(d.b) < n {
		d.fail("truncated")
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) string(max int) string {
	n := d.uvarintMax(uint64(max))
	return string(d.bytes(int(n)))
}
