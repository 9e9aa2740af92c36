package delta

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"

	"github.com/zeebo/blake3"
)

// Groups and compact manifests: the chunks of a file fall into groups,
// cut after a chunk whose ID starts with four zero bits (16 chunks on
// average, 64 at most), so groups, like chunks, depend on content only.
// A side that already holds a group is sent its hash instead of its
// chunks: a manifest of a tree the receiver mostly holds costs a few
// bytes per 16 chunks instead of 35 per chunk. The receiver expands the
// groups from its own tree and checks the result against the full
// manifest's ID, so nothing is taken on trust.
//
// Groups are named on the wire by the first 8 bytes of their hash (the
// receiver's list of groups it holds, the references to them in a compact
// manifest): 24 bytes saved per group, a third of a compact manifest. Two
// groups that share 8 bytes are told apart by that check: a manifest that
// does not expand to its ID is refused, and Sync then asks for the full
// manifest (Remote.Want sends it).

const maxGroup = 64

func groupHash(cs []Chunk) ID {
	h := blake3.New()
	var b [4]byte
	for _, c := range cs {
		h.Write(c.ID[:])
		binary.LittleEndian.PutUint32(b[:], c.Size)
		h.Write(b[:])
	}
	var id ID
	h.Sum(id[:0])
	return id
}

// eachGroup calls fn for every group of a file's chunks.
func eachGroup(chunks []Chunk, fn func(hash ID, cs []Chunk)) {
	start := 0
	for i, c := range chunks {
		if c.ID[0]&0xf0 == 0 || i-start+1 == maxGroup || i == len(chunks)-1 {
			fn(groupHash(chunks[start:i+1]), chunks[start:i+1])
			start = i + 1
		}
	}
}

// Groups are the manifest's groups of chunks by hash.
func (m *Manifest) Groups() map[ID][]Chunk {
	out := map[ID][]Chunk{}
	for _, e := range m.Entries {
		eachGroup(e.Chunks, func(h ID, cs []Chunk) { out[h] = cs })
	}
	return out
}

// GroupKnower is a Receiver that can say which groups of chunks it holds
// (those of its current tree), for a compact manifest.
type GroupKnower interface {
	KnownGroups(ctx context.Context) (map[ID][]Chunk, error)
}

// CompactSource is a Source that can send its manifest compact, the
// groups the receiver knows named by their hash only.
type CompactSource interface {
	CompactManifest(ctx context.Context, known map[ID][]Chunk) (*Manifest, error)
}

var (
	compactMagic  = []byte("MDC2") // groups by the first 8 bytes of their hash
	compactMagic1 = []byte("MDC1") // by their hash (read, no longer written)
)

// ErrNotExpanded is the error of a compact manifest that does not expand
// to the manifest it names (a group taken for another that shares its
// first 8 bytes, or damage): ask for the full manifest.
var ErrNotExpanded = fmt.Errorf("%w: the compact manifest does not expand to its manifest", ErrCorrupt)

// EncodeCompact encodes m with the groups in known replaced by the first
// 8 bytes of their hash, after the ID of m's full encoding.
func (m *Manifest) EncodeCompact(known func(ID) bool) []byte {
	return m.EncodeCompactFrom(known, nil)
}

// groupPlace is where a chunk lies in a group the receiver holds.
type groupPlace struct {
	group  ID
	chunks []Chunk // the group's
	i      int
}

// EncodeCompactFrom is EncodeCompact that also names, in the groups the
// receiver lacks, the runs of chunks that lie one after another in a
// group it holds (a group of m's, or of before, the source's groups of an
// earlier version of its tree): a group changed in one chunk lists that
// chunk and two references to runs (about 12 bytes each) instead of 35
// bytes per chunk.
func (m *Manifest) EncodeCompactFrom(known func(ID) bool, before map[ID][]Chunk) []byte {
	// The full manifest's ID, on another core meanwhile.
	fullID := make(chan ID, 1)
	go func() { fullID <- ManifestID(m.Encode()) }()
	// The groups of each file, and the chunks of those the receiver
	// lacks.
	type group struct {
		h  ID
		cs []Chunk
	}
	groups := make([][]group, len(m.Entries))
	need := idSet{}
	for i := range m.Entries {
		eachGroup(m.Entries[i].Chunks, func(h ID, cs []Chunk) {
			groups[i] = append(groups[i], group{h, cs})
			if !known(h) {
				for _, c := range cs {
					need.add(c.ID)
				}
			}
		})
	}
	// Where those chunks lie in the groups the receiver holds.
	places := map[uint64]groupPlace{}
	addGroup := func(h ID, cs []Chunk) {
		if len(need) == 0 || !known(h) {
			return
		}
		for i, c := range cs {
			k := idKey(c.ID)
			if _, ok := need[k]; ok {
				if _, ok := places[k]; !ok {
					places[k] = groupPlace{h, cs, i}
				}
			}
		}
	}
	for h, cs := range before {
		addGroup(h, cs)
	}
	for _, gs := range groups {
		for _, g := range gs {
			addGroup(g.h, g.cs)
		}
	}
	b := append([]byte(nil), compactMagic...)
	full := <-fullID
	b = append(b, full[:]...)
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
			var items []byte
			n := 0
			for _, g := range groups[i] {
				h, cs := g.h, g.cs
				if known(h) {
					items = append(items, 1)
					items = append(items, h[:8]...)
					n++
					continue
				}
				for j := 0; j < len(cs); {
					c := cs[j]
					if p, ok := places[idKey(c.ID)]; ok && p.chunks[p.i] == c {
						// A run of the group that holds c.
						k := 1
						for j+k < len(cs) && p.i+k < len(p.chunks) && p.chunks[p.i+k] == cs[j+k] {
							k++
						}
						items = append(items, 2)
						items = append(items, p.group[:8]...)
						items = binary.AppendUvarint(items, uint64(p.i))
						items = binary.AppendUvarint(items, uint64(k))
						n++
						j += k
						continue
					}
					items = append(items, 0)
					items = append(items, c.ID[:]...)
					items = binary.AppendUvarint(items, uint64(c.Size))
					n++
					j++
				}
			}
			b = binary.AppendUvarint(b, uint64(n))
			b = append(b, items...)
		case Symlink:
			b = appendString(b, e.Target)
		}
	}
	return b
}

// maxExpanded bounds the chunks a compact manifest may expand to.
const maxExpanded = 1 << 24

// DecodeCompact expands a compact manifest with the groups the receiver
// holds and checks it as DecodeManifest does, against the full ID it
// carries.
func DecodeCompact(b []byte, groups map[ID][]Chunk) (*Manifest, error) {
	if len(b) < len(compactMagic)+32 || !bytes.Equal(b[:len(compactMagic)], compactMagic) && !bytes.Equal(b[:len(compactMagic1)], compactMagic1) {
		return nil, fmt.Errorf("compact manifest: %w: bad magic", ErrCorrupt)
	}
	short := bytes.Equal(b[:len(compactMagic)], compactMagic)
	var byKey map[uint64][]Chunk
	if short {
		byKey = make(map[uint64][]Chunk, len(groups))
		for h, cs := range groups {
			byKey[idKey(h)] = cs
		}
	}
	var want ID
	copy(want[:], b[len(compactMagic):])
	d := decoder{b: b[len(compactMagic)+32:]}
	n := d.uvarint()
	if d.err == nil && (n == 0 || n > maxEntries || n > uint64(len(d.b))/6) {
		d.fail("entry count %d", n)
	}
	m := &Manifest{}
	expanded := 0
	for i := uint64(0); i < n && d.err == nil; i++ {
		var e Entry
		e.Kind = Kind(d.byte())
		e.Path = d.string(maxPath)
		e.Mode = uint32(d.uvarintMax(0o7777))
		e.UID = uint32(d.uvarintMax(1<<32 - 1))
		e.GID = uint32(d.uvarintMax(1<<32 - 1))
		e.MTime = d.varint()
		switch e.Kind {
		case File:
			e.Size = int64(d.uvarintMax(1 << 62))
			ni := d.uvarint()
			if d.err == nil && ni > uint64(len(d.b))/9 {
				d.fail("item count %d", ni)
			}
			for j := uint64(0); j < ni && d.err == nil; j++ {
				switch d.byte() {
				case 0:
					var c Chunk
					copy(c.ID[:], d.bytes(32))
					c.Size = uint32(d.uvarintMax(MaxChunk))
					e.Chunks = append(e.Chunks, c)
				case 1:
					var cs []Chunk
					var ok bool
					if short {
						var k [8]byte
						copy(k[:], d.bytes(8))
						cs, ok = byKey[binary.LittleEndian.Uint64(k[:])]
						if d.err == nil && !ok {
							d.fail("group %x of %q is not one the receiver holds", k, e.Path)
						}
					} else {
						var h ID
						copy(h[:], d.bytes(32))
						cs, ok = groups[h]
						if d.err == nil && !ok {
							d.fail("group %s of %q is not one the receiver holds", h, e.Path)
						}
					}
					e.Chunks = append(e.Chunks, cs...)
				case 2:
					// A run of chunks of a group (MDC2 only).
					var k [8]byte
					copy(k[:], d.bytes(8))
					from, n := d.uvarintMax(maxGroup), d.uvarintMax(maxGroup)
					cs, ok := byKey[binary.LittleEndian.Uint64(k[:])]
					if d.err == nil && (!short || !ok || n == 0 || from+n > uint64(len(cs))) {
						d.fail("run %d+%d of group %x of %q is not one the receiver holds", from, n, k, e.Path)
					}
					if d.err == nil {
						e.Chunks = append(e.Chunks, cs[from:from+n]...)
					}
				default:
					d.fail("bad item in %q", e.Path)
				}
				if expanded+len(e.Chunks) > maxExpanded {
					d.fail("more than %d chunks", maxExpanded)
				}
			}
			expanded += len(e.Chunks)
		case Symlink:
			e.Target = d.string(maxTarget)
		}
		m.Entries = append(m.Entries, e)
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d bytes after the last entry", len(d.b))
	}
	if d.err != nil {
		return nil, fmt.Errorf("compact manifest: %w", d.err)
	}
	full := m.Encode()
	if ManifestID(full) != want {
		return nil, fmt.Errorf("manifest %s: %w", want, ErrNotExpanded)
	}
	return DecodeManifest(full)
}
