package delta

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// randBytes is n pseudo-random bytes from seed.
func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x5eed))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

func write(t *testing.T, p string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

// sourceTree makes a tree with every kind of entry.
func sourceTree(t *testing.T, dir string) {
	t.Helper()
	write(t, filepath.Join(dir, "big"), randBytes(1, 3<<20), 0o644)
	write(t, filepath.Join(dir, "sub/deep/x.bin"), randBytes(2, 500<<10), 0o600)
	write(t, filepath.Join(dir, "sub/script.sh"), []byte("#!/bin/sh\necho hi\n"), 0o755)
	write(t, filepath.Join(dir, "empty"), nil, 0o640)
	if err := os.MkdirAll(filepath.Join(dir, "emptydir/inner"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("sub/script.sh", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "sub/abs")); err != nil {
		t.Fatal(err)
	}
	old := time.Date(2020, 1, 2, 3, 4, 5, 6, time.UTC)
	os.Chtimes(filepath.Join(dir, "sub/script.sh"), old, old)
	os.Chmod(filepath.Join(dir, "emptydir"), 0o1777)
}

func manifestOf(t *testing.T, dir string) *Manifest {
	t.Helper()
	x, err := scan(context.Background(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	return x.m
}

func TestSyncTree(t *testing.T) {
	ctx := context.Background()
	tmp := t.TempDir()
	src, dst, state := filepath.Join(tmp, "src"), filepath.Join(tmp, "dst"), filepath.Join(tmp, "state")
	sourceTree(t, src)
	recv := &TreeReceiver{Root: dst, State: state}

	// First sync: into nothing, everything crosses.
	st, err := Sync(ctx, &TreeSource{Root: src}, recv)
	if err != nil {
		t.Fatal(err)
	}
	if st.SentChunks != st.Chunks {
		t.Errorf("first sync sent %d of %d chunks", st.SentChunks, st.Chunks)
	}
	if err := Verify(ctx, dst, manifestOf(t, src)); err != nil {
		t.Fatalf("after the first sync: %v", err)
	}

	// Change a little: 100 bytes in the middle of big, a file renamed
	// (its chunks are reused from another path), one removed, one added.
	big, _ := os.ReadFile(filepath.Join(src, "big"))
	copy(big[1<<20:], bytes.Repeat([]byte("x"), 100))
	write(t, filepath.Join(src, "big"), big, 0o644)
	if err := os.Rename(filepath.Join(src, "sub/deep/x.bin"), filepath.Join(src, "moved.bin")); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(src, "empty"))
	write(t, filepath.Join(src, "new.txt"), []byte("new"), 0o644)

	st, err = Sync(ctx, &TreeSource{Root: src}, recv)
	if err != nil {
		t.Fatal(err)
	}
	if st.SentChunks > 3 || st.SentBytes > 3*MaxChunk {
		t.Errorf("second sync sent %d chunks (%d bytes) for a 100-byte change and a new file", st.SentChunks, st.SentBytes)
	}
	if err := Verify(ctx, dst, manifestOf(t, src)); err != nil {
		t.Fatalf("after the second sync: %v", err)
	}
	// Nothing left in the state dir but the index and the lock.
	ents, _ := os.ReadDir(state)
	for _, e := range ents {
		if e.Name() != "index" && e.Name() != "lock" {
			t.Errorf("left in the state directory: %s", e.Name())
		}
	}
	// A sync of the same tree sends nothing.
	if st, err = Sync(ctx, &TreeSource{Root: src}, recv); err != nil || st.SentChunks != 0 {
		t.Errorf("a sync of an unchanged tree sent %d chunks (%v)", st.SentChunks, err)
	}
}

// cutSource fails its Chunks stream after n frames' worth of bytes.
type cutSource struct {
	Source
	after int64
}

func (c *cutSource) Chunks(ctx context.Context, refs []Ref) (io.ReadCloser, error) {
	rc, err := c.Source.Chunks(ctx, refs)
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.MultiReader(io.LimitReader(rc, c.after), errReader{}), rc}, nil
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("connection cut") }

func TestSyncResumes(t *testing.T) {
	ctx := context.Background()
	tmp := t.TempDir()
	src, dst, state := filepath.Join(tmp, "src"), filepath.Join(tmp, "dst"), filepath.Join(tmp, "state")
	write(t, filepath.Join(src, "a"), randBytes(7, 4<<20), 0o644)
	write(t, filepath.Join(dst, "old"), []byte("the old tree"), 0o644)
	recv := &TreeReceiver{Root: dst, State: state}

	_, err := Sync(ctx, &cutSource{Source: &TreeSource{Root: src}, after: 2 << 20}, recv)
	if err == nil {
		t.Fatal("a cut sync succeeded")
	}
	// The old tree is untouched.
	if b, err := os.ReadFile(filepath.Join(dst, "old")); err != nil || string(b) != "the old tree" {
		t.Fatalf("old tree after a cut sync: %q %v", b, err)
	}
	total := len(manifestOf(t, src).Entries[1].Chunks)
	st, err := Sync(ctx, &TreeSource{Root: src}, recv)
	if err != nil {
		t.Fatal(err)
	}
	if st.SentChunks == 0 || st.SentChunks >= total-100 {
		t.Errorf("the resumed sync sent %d of %d chunks: the first sync's %d bytes were not kept", st.SentChunks, total, 2<<20)
	}
	if err := Verify(ctx, dst, manifestOf(t, src)); err != nil {
		t.Fatal(err)
	}
}

func TestCommitFailureKeepsOldTree(t *testing.T) {
	ctx := context.Background()
	tmp := t.TempDir()
	src, dst, state := filepath.Join(tmp, "src"), filepath.Join(tmp, "dst"), filepath.Join(tmp, "state")
	write(t, filepath.Join(src, "a"), randBytes(8, 1<<20), 0o644)
	write(t, filepath.Join(dst, "old"), []byte("the old tree"), 0o644)
	recv := &TreeReceiver{Root: dst, State: state}
	m := manifestOf(t, src)
	if _, err := recv.Want(ctx, m); err != nil {
		t.Fatal(err)
	}
	// Commit without the chunks: missing, and the old tree stays.
	err := recv.Commit(ctx, m)
	var missing *MissingError
	if !errors.As(err, &missing) || len(missing.IDs) != len(m.Entries[1].Chunks) {
		t.Fatalf("commit without chunks: %v", err)
	}
	// A corrupt staged chunk is not used either.
	c := m.Entries[1].Chunks[0]
	os.WriteFile(filepath.Join(recv.stageDir(), "bad.pack"), AppendFrame(nil, c.ID, make([]byte, c.Size)), 0o600)
	if err := recv.Commit(ctx, m); !errors.As(err, &missing) {
		t.Fatalf("commit with a corrupt staged chunk: %v", err)
	}
	if err := Verify(ctx, dst, manifestOf(t, dst)); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "old")); err != nil || string(b) != "the old tree" {
		t.Fatalf("old tree after a failed commit: %q %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(state, "new")); err == nil {
		t.Error("a failed commit left its new tree behind")
	}
}

func TestPutRefusesOtherChunks(t *testing.T) {
	ctx := context.Background()
	tmp := t.TempDir()
	recv := &TreeReceiver{Root: filepath.Join(tmp, "dst"), State: filepath.Join(tmp, "state")}
	write(t, filepath.Join(tmp, "src/a"), []byte("hello"), 0o644)
	if _, err := recv.Want(ctx, manifestOf(t, filepath.Join(tmp, "src"))); err != nil {
		t.Fatal(err)
	}
	other := []byte("something else")
	if err := recv.Put(ctx, bytes.NewReader(AppendFrame(nil, Sum(other), other))); err == nil {
		t.Error("a chunk outside the manifest was kept")
	}
	if err := recv.Put(ctx, bytes.NewReader(AppendFrame(nil, Sum([]byte("hello")), other))); err == nil {
		t.Error("a chunk that does not hash to its name was kept")
	}
}

func TestChunkerBoundaries(t *testing.T) {
	data := randBytes(3, 8<<20)
	chunks, size, err := chunkReader(bytes.NewReader(data), make([]byte, 1<<20))
	if err != nil || size != int64(len(data)) {
		t.Fatal(size, err)
	}
	for i, c := range chunks {
		if c.Size > MaxChunk || (c.Size < MinChunk && i != len(chunks)-1) {
			t.Errorf("chunk %d: %d bytes", i, c.Size)
		}
	}
	avg := len(data) / len(chunks)
	if avg < AvgChunk/2 || avg > 2*AvgChunk {
		t.Errorf("average chunk %d bytes", avg)
	}
	// An insertion near the start moves only the chunks around it.
	ins := append(append(append([]byte(nil), data[:1000]...), "inserted"...), data[1000:]...)
	chunks2, _, _ := chunkReader(bytes.NewReader(ins), make([]byte, 1<<20))
	same := map[ID]bool{}
	for _, c := range chunks {
		same[c.ID] = true
	}
	differ := 0
	for _, c := range chunks2 {
		if !same[c.ID] {
			differ++
		}
	}
	if differ > 2 {
		t.Errorf("an insertion changed %d chunks", differ)
	}
	// The buffer size does not change the cuts.
	chunks3, _, _ := chunkReader(iotestHalfReader{bytes.NewReader(data)}, make([]byte, MaxChunk+1))
	if len(chunks3) != len(chunks) {
		t.Fatalf("%d chunks with a small buffer, %d with a large one", len(chunks3), len(chunks))
	}
	for i := range chunks {
		if chunks[i] != chunks3[i] {
			t.Fatalf("chunk %d differs with a small buffer", i)
		}
	}
}

type iotestHalfReader struct{ r io.Reader }

func (h iotestHalfReader) Read(p []byte) (int, error) { return h.r.Read(p[:(len(p)+1)/2]) }

func TestSourceRefusesSymlinkEscapes(t *testing.T) {
	ctx := context.Background()
	tmp := t.TempDir()
	root := filepath.Join(tmp, "root")
	write(t, filepath.Join(tmp, "secret"), []byte("outside the tree"), 0o644)
	os.MkdirAll(root, 0o755)
	os.Symlink("../secret", filepath.Join(root, "rel"))
	os.Symlink(filepath.Join(tmp, "secret"), filepath.Join(root, "abs"))
	os.Symlink(tmp, filepath.Join(root, "dir"))
	src := &TreeSource{Root: root}
	id := Sum([]byte("outside the tree"))
	for _, p := range []string{"rel", "abs", "dir/secret"} {
		rc, err := src.Chunks(ctx, []Ref{{Path: p, Size: 16, ID: id}})
		if err == nil {
			_, err = io.ReadAll(rc)
			rc.Close()
		}
		if err == nil {
			t.Errorf("chunk through symlink %s was read", p)
		}
	}
	// The manifest lists the symlinks as symlinks, never their targets.
	m, err := src.Manifest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range m.Entries[1:] {
		if e.Kind != Symlink {
			t.Errorf("%s is a %v in the manifest", e.Path, e.Kind)
		}
	}
}

func TestPutSkipsStagedChunks(t *testing.T) {
	ctx := context.Background()
	tmp := t.TempDir()
	recv := &TreeReceiver{Root: filepath.Join(tmp, "dst"), State: filepath.Join(tmp, "state")}
	write(t, filepath.Join(tmp, "src/a"), []byte("hello"), 0o644)
	if _, err := recv.Want(ctx, manifestOf(t, filepath.Join(tmp, "src"))); err != nil {
		t.Fatal(err)
	}
	var frames []byte
	for range 1000 {
		frames = AppendFrame(frames, Sum([]byte("hello")), []byte("hello"))
	}
	for range 3 {
		if err := recv.Put(ctx, bytes.NewReader(frames)); err != nil {
			t.Fatal(err)
		}
	}
	var total int64
	ents, _ := os.ReadDir(recv.stageDir())
	for _, e := range ents {
		info, _ := e.Info()
		total += info.Size()
	}
	if total > 100 {
		t.Errorf("the staging area holds %d bytes for one 5-byte chunk sent 3000 times", total)
	}
}

// TestWantOf: a chunk is wanted once, unless the old file at its path has
// it at the same offset, any old file has it anywhere, or it is staged.
func TestWantOf(t *testing.T) {
	id := func(s string) ID { return Sum([]byte(s)) }
	ch := func(s string, size uint32) Chunk { return Chunk{ID: id(s), Size: size} }
	file := func(p string, cs ...Chunk) Entry {
		e := Entry{Path: p, Kind: File, Chunks: cs}
		for _, c := range cs {
			e.Size += int64(c.Size)
		}
		return e
	}
	root := Entry{Path: ".", Kind: Dir}
	old := &index{m: &Manifest{Entries: []Entry{root,
		file("a", ch("a0", 10), ch("a1", 20), ch("a2", 30)),
		file("b", ch("b0", 10), ch("b1", 10)),
	}}}
	tests := []struct {
		name   string
		files  []Entry
		staged []string
		want   []ID
	}{
		{"unchanged", []Entry{file("a", ch("a0", 10), ch("a1", 20), ch("a2", 30))}, nil, nil},
		{"overwritten in place", []Entry{file("a", ch("a0", 10), ch("x", 20), ch("a2", 30))}, nil, []ID{id("x")}},
		{"shifted", []Entry{file("a", ch("x", 5), ch("a0", 10), ch("a1", 20), ch("a2", 30))}, nil, []ID{id("x")}},
		{"from another file", []Entry{file("c", ch("b1", 10), ch("a2", 30))}, nil, nil},
		{"same ID, other size at the offset", []Entry{file("a", ch("a0", 10), ch("a1", 21))}, nil, nil},
		{"new twice", []Entry{file("a", ch("y", 10), ch("y", 10)), file("c", ch("y", 10), ch("z", 3))}, nil, []ID{id("y"), id("z")}},
		{"staged", []Entry{file("c", ch("y", 10), ch("z", 3))}, []string{"z"}, []ID{id("y")}},
	}
	for _, tt := range tests {
		staged := map[ID]packLoc{}
		for _, s := range tt.staged {
			staged[id(s)] = packLoc{}
		}
		m := &Manifest{Entries: append([]Entry{root}, tt.files...)}
		if got := wantOf(m, old, staged); !slices.Equal(got, tt.want) {
			t.Errorf("%s: want list %v, expected %v", tt.name, got, tt.want)
		}
	}
}
