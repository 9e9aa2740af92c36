package delta

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestFilePackLinked: a first copy of a large file hard-links the file
// pack its chunks were staged in, hashed, into the new tree (one write
// per byte); after the sync the staging area is gone (the file has one
// name) and the index's stamp is the file's, so the next sync does not
// chunk it again.
func TestFilePackLinked(t *testing.T) {
	ctx := context.Background()
	tmp := t.TempDir()
	src, dst, state := filepath.Join(tmp, "src"), filepath.Join(tmp, "dst"), filepath.Join(tmp, "state")
	sourceTree(t, src)
	recv := &TreeReceiver{Root: dst, State: state, NoSync: true}
	// Cut the first sync before its commit: the file pack of big is then
	// whole, in the staging area.
	m := manifestOf(t, src)
	if _, err := recv.Want(ctx, m); err != nil {
		t.Fatal(err)
	}
	rc, err := (&TreeSource{Root: src}).Chunks(ctx, Refs(m, allIDs(m)))
	if err != nil {
		t.Fatal(err)
	}
	err = recv.Put(ctx, rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	var big *Entry
	for i := range m.Entries {
		if m.Entries[i].Path == "big" {
			big = &m.Entries[i]
		}
	}
	fp := fpackPath(recv.stageDir(), big)
	packIno := inode(t, fp)
	if err := recv.Commit(ctx, m); err != nil {
		t.Fatal(err)
	}
	if got := inode(t, filepath.Join(dst, "big")); got != packIno {
		t.Errorf("big was written again (inode %d), not linked from its file pack (%d)", got, packIno)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(dst, "big"), &st); err != nil || st.Nlink != 1 {
		t.Errorf("big has %d names after the sync (%v)", st.Nlink, err)
	}
	if _, err := os.Stat(fp); !os.IsNotExist(err) {
		t.Errorf("the file pack outlived the sync: %v", err)
	}
	if err := Verify(ctx, dst, manifestOf(t, src)); err != nil {
		t.Fatal(err)
	}
	x := loadIndex(stateFile(state, "index"))
	old, err := scan(ctx, dst, x)
	if err != nil {
		t.Fatal(err)
	}
	if old.chunked != 0 {
		t.Errorf("the next scan chunked %d files again: the index's stamps are stale", old.chunked)
	}
}

func allIDs(m *Manifest) []ID {
	var ids []ID
	for _, e := range m.Entries {
		for _, c := range e.Chunks {
			ids = append(ids, c.ID)
		}
	}
	return ids
}

// TestFilePackDamaged: a chunk of a file pack that no longer hashes to its
// name is not linked: the file is built the usual way, which finds the
// chunk missing, and the sync sends it again.
func TestFilePackDamaged(t *testing.T) {
	ctx := context.Background()
	tmp := t.TempDir()
	src, dst, state := filepath.Join(tmp, "src"), filepath.Join(tmp, "dst"), filepath.Join(tmp, "state")
	write(t, filepath.Join(src, "a"), randBytes(3, 2<<20), 0o644)
	recv := &TreeReceiver{Root: dst, State: state, NoSync: true}
	m := manifestOf(t, src)
	if _, err := recv.Want(ctx, m); err != nil {
		t.Fatal(err)
	}
	rc, err := (&TreeSource{Root: src}).Chunks(ctx, Refs(m, allIDs(m)))
	if err != nil {
		t.Fatal(err)
	}
	err = recv.Put(ctx, rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	fp := fpackPath(recv.stageDir(), &m.Entries[1])
	f, err := os.OpenFile(fp, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("damage"), 1<<20)
	f.Close()
	err = recv.Commit(ctx, m)
	if _, ok := err.(*MissingError); !ok {
		t.Fatalf("commit over a damaged file pack: %v, want the damaged chunk missing", err)
	}
	st, err := Sync(ctx, &TreeSource{Root: src}, recv)
	if err != nil {
		t.Fatal(err)
	}
	if st.SentChunks != 1 {
		t.Errorf("sent %d chunks, want the damaged one", st.SentChunks)
	}
	if err := Verify(ctx, dst, m); err != nil {
		t.Fatal(err)
	}
}

// FuzzFpackIndex: the index of a file pack (cut by a crash anywhere, or
// damaged) locates only chunks inside the file.
func FuzzFpackIndex(f *testing.F) {
	a := Sum([]byte("a"))
	f.Add(int64(100), append(a[:], 10, 1))
	f.Add(int64(0), []byte{})
	f.Fuzz(func(t *testing.T, size int64, idx []byte) {
		if size < 0 {
			size = -size
		}
		out := map[ID]packLoc{}
		if used := readFpackIndex(idx, "p", size, out); used < 0 || used > len(idx) {
			t.Fatalf("used %d of %d bytes", used, len(idx))
		}
		for id, l := range out {
			if l.size == 0 || l.size > MaxChunk || l.off < 0 || l.off+int64(l.size) > size {
				t.Fatalf("chunk %s at %d, %d bytes, in a file of %d", id, l.off, l.size, size)
			}
		}
		if len(out) > len(idx)/34 {
			t.Fatalf("%d chunks from %d bytes", len(out), len(idx))
		}
	})
}

// TestFpackIndexCutShort: a Put killed while it wrote an index entry
// leaves the index cut short; the next Put's entries go after the last
// whole one, where they are found.
func TestFpackIndexCutShort(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f-x"+fpackSuffix)
	a, b := randBytes(1, 3000), randBytes(2, 4000)
	w, err := openFpack(p, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.add(Sum(a), 0, a); err != nil {
		t.Fatal(err)
	}
	if err := w.close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p+".idx", os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(make([]byte, 20)) // half an entry
	f.Close()
	if w, err = openFpack(p, 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := w.add(Sum(b), 8000, b); err != nil {
		t.Fatal(err)
	}
	if err := w.close(); err != nil {
		t.Fatal(err)
	}
	out := map[ID]packLoc{}
	if err := indexFpack(p, out); err != nil {
		t.Fatal(err)
	}
	if l, ok := out[Sum(a)]; !ok || l.off != 0 || l.size != 3000 {
		t.Errorf("first chunk: %+v %v", l, ok)
	}
	if l, ok := out[Sum(b)]; !ok || l.off != 8000 || l.size != 4000 {
		t.Errorf("chunk after the cut: %+v %v", l, ok)
	}
}
