package delta

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// manifestBytes encodes a manifest of entries after the root.
func manifestBytes(entries ...Entry) []byte {
	m := &Manifest{Entries: append([]Entry{{Path: ".", Kind: Dir, Mode: 0o755}}, entries...)}
	return m.Encode()
}

func TestDecodeManifestRefuses(t *testing.T) {
	data := []byte("hello")
	file := func(p string) Entry {
		return Entry{Path: p, Kind: File, Mode: 0o644, Size: 5, Chunks: []Chunk{{Sum(data), 5}}}
	}
	dir := func(p string) Entry { return Entry{Path: p, Kind: Dir, Mode: 0o755} }
	link := func(p, target string) Entry { return Entry{Path: p, Kind: Symlink, Target: target} }
	for _, tc := range []struct {
		name    string
		entries []Entry
	}{
		{"dotdot", []Entry{file("../escape")}},
		{"dotdot inside", []Entry{dir("a"), file("a/../../b")}},
		{"absolute", []Entry{file("/etc/passwd")}},
		{"dot", []Entry{file("./a")}},
		{"empty component", []Entry{dir("a"), file("a//b")}},
		{"trailing slash", []Entry{file("a/")}},
		{"empty", []Entry{file("")}},
		{"under a symlink", []Entry{link("a", "/etc"), file("a/passwd")}},
		{"under a file", []Entry{file("a"), file("a/b")}},
		{"no parent", []Entry{file("a/b")}},
		{"duplicate", []Entry{file("a"), file("a")}},
		{"out of order", []Entry{file("b"), file("a")}},
		{"nul", []Entry{file("a\x00b")}},
		{"size mismatch", []Entry{{Path: "a", Kind: File, Size: 6, Chunks: []Chunk{{Sum(data), 5}}}}},
		{"bad mode", []Entry{{Path: "a", Kind: Dir, Mode: 0o17777}}},
		{"empty symlink", []Entry{link("a", "")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if m, err := DecodeManifest(manifestBytes(tc.entries...)); err == nil {
				t.Errorf("accepted: %+v", m.Entries)
			} else if !errors.Is(err, ErrCorrupt) {
				t.Errorf("error %v is not ErrCorrupt", err)
			}
		})
	}
	// A good one round-trips; a flipped bit is caught by the hash.
	good := manifestBytes(dir("a"), file("a/b"), file("a.b"), link("c", "../../x"))
	m, err := DecodeManifest(good)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m.Encode(), good) {
		t.Error("manifest does not round-trip")
	}
	good[10] ^= 1
	if _, err := DecodeManifest(good); err == nil {
		t.Error("a corrupt manifest was accepted")
	}
}

func TestWireRoundTrip(t *testing.T) {
	refs := []Ref{{Path: "a/b", Offset: 1 << 40, Size: 100, ID: Sum([]byte("x"))}, {ID: Sum([]byte("y")), Size: 1}}
	got, err := DecodeRefs(EncodeRefs(refs))
	if err != nil || len(got) != 2 || got[0] != refs[0] || got[1] != refs[1] {
		t.Errorf("refs: %+v %v", got, err)
	}
	if _, err := DecodeRefs(EncodeRefs([]Ref{{Path: "../x", Size: 1}})); err == nil {
		t.Error("a reference outside the tree was accepted")
	}
	ids := []ID{Sum([]byte("a")), Sum([]byte("b"))}
	gotIDs, err := DecodeWant(EncodeWant(ids))
	if err != nil || len(gotIDs) != 2 || gotIDs[1] != ids[1] {
		t.Errorf("want: %v %v", gotIDs, err)
	}
	var frames []byte
	for _, s := range []string{"one", "two"} {
		frames = AppendFrame(frames, Sum([]byte(s)), []byte(s))
	}
	fr := NewFrameReader(bytes.NewReader(frames))
	for _, s := range []string{"one", "two"} {
		if _, data, err := fr.Next(); err != nil || string(data) != s {
			t.Fatalf("frame %q: %q %v", s, data, err)
		}
	}
	if _, _, err := fr.Next(); err != io.EOF {
		t.Errorf("after the last frame: %v", err)
	}
}

func FuzzDecodeManifest(f *testing.F) {
	f.Add(manifestBytes())
	f.Add(manifestBytes(Entry{Path: "a", Kind: Dir}, Entry{Path: "a/b", Kind: File, Size: 1, Chunks: []Chunk{{Sum([]byte("x")), 1}}}, Entry{Path: "l", Kind: Symlink, Target: "/x"}))
	f.Add(manifestBytes(Entry{Path: "../a", Kind: File}))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeManifest(b)
		if err != nil {
			return
		}
		for i, e := range m.Entries {
			if i > 0 && checkPath(e.Path) != nil {
				t.Fatalf("accepted path %q", e.Path)
			}
		}
		if _, err := DecodeManifest(m.Encode()); err != nil {
			t.Fatalf("re-encoded manifest refused: %v", err)
		}
	})
}

func FuzzDecodeRefs(f *testing.F) {
	f.Add(EncodeRefs([]Ref{{Path: "a/b", Offset: 5, Size: 10}}))
	f.Add(EncodeRefs(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		refs, err := DecodeRefs(b)
		if err != nil {
			return
		}
		for _, r := range refs {
			if r.Path != "" && checkPath(r.Path) != nil || r.Size == 0 || r.Size > MaxChunk {
				t.Fatalf("accepted %+v", r)
			}
		}
	})
}

func FuzzDecodeWant(f *testing.F) {
	f.Add(EncodeWant([]ID{Sum(nil)}))
	f.Fuzz(func(t *testing.T, b []byte) {
		ids, err := DecodeWant(b)
		if err != nil {
			return
		}
		again, err := DecodeWant(EncodeWant(ids))
		if err != nil || len(again) != len(ids) || len(ids) > len(b)/32 {
			t.Fatal("want list does not round-trip")
		}
	})
}

func FuzzFrames(f *testing.F) {
	f.Add(AppendFrame(AppendFrame(nil, Sum([]byte("a")), []byte("a")), Sum([]byte("b")), []byte("b")))
	f.Add(AppendFrame(nil, Sum([]byte("a")), []byte("b")))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr := NewFrameReader(bytes.NewReader(b))
		for {
			id, data, err := fr.Next()
			if err != nil {
				return
			}
			if Sum(data) != id || len(data) == 0 || len(data) > MaxChunk {
				t.Fatalf("accepted a bad frame")
			}
		}
	})
}

func FuzzDecodeIndex(f *testing.F) {
	m := &Manifest{Entries: []Entry{{Path: ".", Kind: Dir}, {Path: "a", Kind: File, Size: 1, Chunks: []Chunk{{Sum([]byte("x")), 1}}}}}
	f.Add((&index{m: m, stamps: map[string]stamp{"a": {Ino: 5, Size: 1, MTime: 7, CTime: 9}}}).encode())
	f.Add((&index{m: m, stamps: map[string]stamp{"a": {Ino: 5, Size: 1, MTime: 7, CTime: 9}},
		extents: map[string][]extent{"a": {{Off: 0, Len: 4096, Bytenr: 1 << 20, Disk: 4096, Gen: 9, Type: 1}, {Off: 8192, Len: 4096, Type: 2}}},
		tags:    map[string][]byte{"a": make([]byte, tagSize)}, tagKey: make([]byte, 16)}).encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		x, err := decodeIndex(b)
		if err != nil {
			return
		}
		for p := range x.stamps {
			if e := x.find(p); e == nil || e.Kind != File {
				t.Fatalf("stamp of %q, not a file", p)
			}
		}
		for p, l := range x.extents {
			if e := x.find(p); e == nil || e.Kind != File {
				t.Fatalf("extents of %q, not a file", p)
			}
			for i := 1; i < len(l); i++ {
				if l[i].Off < l[i-1].Off+l[i-1].Len {
					t.Fatalf("extents of %q overlap", p)
				}
			}
			changedSpans(l, l, 1<<20, 1<<21) // must not panic
		}
		for p, tg := range x.tags {
			if e := x.find(p); e == nil || e.Kind != File || len(tg) != tagSize*len(e.Chunks) {
				t.Fatalf("tags of %q do not fit its chunks", p)
			}
		}
		if len(x.tagKey) != 0 && len(x.tagKey) != 16 {
			t.Fatalf("a tag key of %d bytes", len(x.tagKey))
		}
	})
}

func TestCompactManifest(t *testing.T) {
	tmp := t.TempDir()
	write(t, tmp+"/a", randBytes(4, 2<<20), 0o644)
	write(t, tmp+"/b", randBytes(5, 1<<20), 0o644)
	m := manifestOf(t, tmp)
	groups := m.Groups()
	// The receiver holds everything but a's first group.
	var firstA ID
	eachGroup(m.Entries[1].Chunks, func(h ID, cs []Chunk) {
		if firstA == (ID{}) {
			firstA = h
		}
	})
	known := map[ID][]Chunk{}
	for h, cs := range groups {
		if h != firstA {
			known[h] = cs
		}
	}
	b := m.EncodeCompact(func(h ID) bool { _, ok := known[h]; return ok })
	if full := len(m.Encode()); len(b)*5 > full {
		t.Errorf("compact manifest of %d bytes, the full one %d", len(b), full)
	}
	got, err := DecodeCompact(b, known)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Encode(), m.Encode()) {
		t.Error("the compact manifest does not expand to the manifest")
	}
	// A receiver that lacks a group it was sent by hash refuses.
	delete(known, groupHashOf(t, m, 2))
	if _, err := DecodeCompact(b, known); err == nil {
		t.Error("expanded a group the receiver does not hold")
	}
	// A group that expands to other chunks fails the full ID.
	h := groupHashOf(t, m, 2)
	known[h] = []Chunk{{ID: Sum([]byte("other")), Size: 5}}
	if _, err := DecodeCompact(b, known); err == nil {
		t.Error("a wrong expansion was accepted")
	}
}

// groupHashOf is the first group hash of entry i.
func groupHashOf(t *testing.T, m *Manifest, i int) ID {
	var first ID
	eachGroup(m.Entries[i].Chunks, func(h ID, cs []Chunk) {
		if first == (ID{}) {
			first = h
		}
	})
	return first
}

func FuzzDecodeCompact(f *testing.F) {
	chunks := []Chunk{{Sum([]byte("x")), 1}, {Sum([]byte("y")), 1}}
	m := &Manifest{Entries: []Entry{{Path: ".", Kind: Dir}, {Path: "a", Kind: File, Size: 2, Chunks: chunks}}}
	groups := m.Groups()
	f.Add(m.EncodeCompact(func(ID) bool { return true }))
	f.Add(m.EncodeCompact(func(ID) bool { return false }))
	// The earlier form, groups by their whole hash.
	var h ID
	for h = range groups {
	}
	old := append(append([]byte("MDC1"), m.EncodeCompact(func(ID) bool { return true })[4:][:32]...), 2, byte(Dir), 1, '.', 0, 0, 0, 0, byte(File), 1, 'a', 0, 0, 0, 0, 2, 1, 1)
	f.Add(append(old, h[:]...))
	// Runs of a held group.
	m2 := &Manifest{Entries: []Entry{{Path: ".", Kind: Dir}, {Path: "a", Kind: File, Size: 3, Chunks: append(slices.Clone(chunks), Chunk{Sum([]byte("z")), 1})}}}
	f.Add(m2.EncodeCompactFrom(func(g ID) bool { return g == h }, groups))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := DecodeCompact(b, groups)
		if err != nil {
			return
		}
		if _, err := DecodeManifest(got.Encode()); err != nil {
			t.Fatalf("accepted a manifest that does not decode: %v", err)
		}
	})
}

func FuzzDecodeUndo(f *testing.F) {
	u := &undoLog{NewDirIno: 42, Files: []undoRecord{
		{Path: "a/b", Mode: 0o644, UID: 1000, GID: 1000, MTime: 1e18, Ranges: []undoRange{{Off: 4096, Data: []byte("old bytes")}, {Off: 0, Data: nil}}},
		{Path: "c", Mode: 0o4755},
	}}
	f.Add(u.encode())
	f.Add((&undoLog{}).encode())
	f.Add([]byte("MDU1"))
	f.Add([]byte("MDU1\x01\x05"))
	f.Fuzz(func(t *testing.T, b []byte) {
		u, err := decodeUndo(b)
		if err != nil {
			return
		}
		// What decodes encodes to bytes that decode the same.
		e := u.encode()
		u2, err := decodeUndo(e)
		if err != nil || !bytes.Equal(u2.encode(), e) {
			t.Fatalf("a decoded log does not round-trip: %v", err)
		}
		for _, f := range u.Files {
			if checkPath(f.Path) != nil || f.Path == "." {
				t.Fatalf("path %q accepted", f.Path)
			}
		}
	})
}

func FuzzDecodeKnown(f *testing.F) {
	ids := []ID{Sum([]byte("a")), Sum([]byte("b"))}
	f.Add(EncodeKnown(ids))
	f.Add(EncodeWant(ids))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := DecodeKnown(b)
		if err != nil {
			return
		}
		if len(s) > len(b)/8 {
			t.Fatalf("%d groups from %d bytes", len(s), len(b))
		}
	})
}

// FuzzStagedChunks: the index of a pack (cut by a crash anywhere, or
// damaged) locates only whole chunks inside the file.
func FuzzStagedChunks(f *testing.F) {
	pack := AppendFrame(AppendFrame(nil, Sum([]byte("a")), []byte("a")), Sum([]byte("bb")), []byte("bb"))
	a := Sum([]byte("a"))
	f.Add(pack, []byte{})
	f.Add(pack, append(a[:], 33, 1)) // the second frame from the pack
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, b, idx []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "x.pack"), b, 0o600); err != nil {
			t.Fatal(err)
		}
		if len(idx) > 0 {
			if err := os.WriteFile(filepath.Join(dir, "x.pack.idx"), idx, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		locs, err := stagedChunks(dir)
		if err != nil {
			t.Fatal(err)
		}
		for id, l := range locs {
			if l.size == 0 || l.size > MaxChunk || l.off < 33 || l.off+int64(l.size) > int64(len(b)) {
				t.Fatalf("chunk %s at %d, %d bytes, in a pack of %d", id, l.off, l.size, len(b))
			}
			if len(idx) == 0 && !bytes.Equal(b[l.off-32-int64(len(binary.AppendUvarint(nil, uint64(l.size)))):][:32], id[:]) {
				t.Fatalf("chunk %s at %d is not under its header", id, l.off)
			}
		}
	})
}

// TestDecodeCompactEarlierForm: a compact manifest that names groups by
// their whole hash (MDC1, as earlier versions sent) still expands.
func TestDecodeCompactEarlierForm(t *testing.T) {
	chunks := []Chunk{{Sum([]byte("x")), 1}, {Sum([]byte("y")), 1}}
	m := &Manifest{Entries: []Entry{{Path: ".", Kind: Dir}, {Path: "a", Kind: File, Size: 2, Chunks: chunks}}}
	groups := m.Groups()
	if len(groups) != 1 {
		t.Fatalf("%d groups", len(groups))
	}
	var h ID
	for h = range groups {
	}
	full := ManifestID(m.Encode())
	b := append([]byte("MDC1"), full[:]...)
	b = append(b, 2, byte(Dir), 1, '.', 0, 0, 0, 0, byte(File), 1, 'a', 0, 0, 0, 0, 2, 1, 1)
	b = append(b, h[:]...)
	got, err := DecodeCompact(b, groups)
	if err != nil {
		t.Fatal(err)
	}
	if ManifestID(got.Encode()) != full {
		t.Fatal("the earlier form expands to another manifest")
	}
	if _, err := DecodeCompact(m.EncodeCompact(func(ID) bool { return true }), groups); err != nil {
		t.Fatal(err)
	}
}

// TestCompactRuns: a group changed in one chunk goes as that chunk and
// runs of the group the receiver holds (from the source's groups of
// before), and expands to the new manifest.
func TestCompactRuns(t *testing.T) {
	var old []Chunk
	for i := range 2000 {
		old = append(old, Chunk{Sum([]byte{byte(i), byte(i >> 8)}), uint32(1000 + i)})
	}
	file := func(cs []Chunk) *Manifest {
		e := Entry{Path: "f", Kind: File, Chunks: cs}
		for _, c := range cs {
			e.Size += int64(c.Size)
		}
		return &Manifest{Entries: []Entry{{Path: ".", Kind: Dir}, e}}
	}
	m0 := file(old)
	cs := slices.Clone(old)
	cs[500] = Chunk{Sum([]byte("new")), 7}
	cs = slices.Insert(cs, 1500, Chunk{Sum([]byte("inserted")), 9})
	m1 := file(cs)
	before := m0.Groups()
	known := func(h ID) bool { _, ok := before[h]; return ok }
	plain, runs := m1.EncodeCompact(known), m1.EncodeCompactFrom(known, before)
	if len(runs) >= len(plain)/2 {
		t.Errorf("compact manifest with runs: %d bytes, without: %d", len(runs), len(plain))
	}
	for _, b := range [][]byte{plain, runs} {
		got, err := DecodeCompact(b, before)
		if err != nil {
			t.Fatal(err)
		}
		if ManifestID(got.Encode()) != ManifestID(m1.Encode()) {
			t.Fatal("expands to another manifest")
		}
	}
	// A receiver without those groups refuses the runs.
	if _, err := DecodeCompact(runs, m1.Groups()); err == nil {
		t.Error("runs of groups the receiver lacks expanded")
	}
}
