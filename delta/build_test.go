package delta

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	info, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return info.Sys().(*syscall.Stat_t).Ino
}

// TestFastBuild: a second sync copies the old files' chunks in the
// kernel, links unchanged files, and the result is the source's tree,
// checked chunk by chunk.
func TestFastBuild(t *testing.T) {
	ctx := context.Background()
	tmp := t.TempDir()
	src, dst, state := filepath.Join(tmp, "src"), filepath.Join(tmp, "dst"), filepath.Join(tmp, "state")
	sourceTree(t, src)
	write(t, filepath.Join(src, "same.bin"), randBytes(7, 1<<20), 0o644)
	recv := &TreeReceiver{Root: dst, State: state, NoSync: true}
	if _, err := Sync(ctx, &TreeSource{Root: src}, recv); err != nil {
		t.Fatal(err)
	}
	sameIno := inode(t, filepath.Join(dst, "same.bin"))

	// Overwrite bytes at three places of big, insert some into x.bin.
	big, _ := os.ReadFile(filepath.Join(src, "big"))
	for _, at := range []int{10, 1 << 20, 3<<20 - 100} {
		copy(big[at:], "changed!")
	}
	write(t, filepath.Join(src, "big"), big, 0o644)
	x, _ := os.ReadFile(filepath.Join(src, "sub/deep/x.bin"))
	x = append(x[:200<<10], append([]byte("inserted"), x[200<<10:]...)...)
	write(t, filepath.Join(src, "sub/deep/x.bin"), x, 0o600)

	st, err := Sync(ctx, &TreeSource{Root: src}, recv)
	if err != nil {
		t.Fatal(err)
	}
	if st.SentChunks > 8 {
		t.Errorf("sent %d chunks for 4 small changes", st.SentChunks)
	}
	want := manifestOf(t, src)
	if err := Verify(ctx, dst, want); err != nil {
		t.Fatal(err)
	}
	if got := inode(t, filepath.Join(dst, "same.bin")); got != sameIno {
		t.Errorf("an unchanged file was not linked: inode %d, was %d", got, sameIno)
	}
	// The index the commit saved describes the tree: a sync of it from
	// the receiver's side finds every file unchanged.
	if err := Verify(ctx, dst, loadIndex(stateFile(state, "index")).m); err != nil {
		t.Fatalf("index after the commit: %v", err)
	}
}

// TestFastBuildStale: an old file that changes while the new tree is
// built from it is noticed (its stamp), and the file is built again
// from hashed chunks: the result is still the source's tree, or the
// commit fails and the old tree stays.
func TestFastBuildStale(t *testing.T) {
	ctx := context.Background()
	tmp := t.TempDir()
	src, dst, state := filepath.Join(tmp, "src"), filepath.Join(tmp, "dst"), filepath.Join(tmp, "state")
	write(t, filepath.Join(src, "f"), randBytes(3, 2<<20), 0o644)
	recv := &TreeReceiver{Root: dst, State: state, NoSync: true}
	if _, err := Sync(ctx, &TreeSource{Root: src}, recv); err != nil {
		t.Fatal(err)
	}
	// An insertion: the file is built by copies (a patch in place is
	// for overwrites).
	b, _ := os.ReadFile(filepath.Join(src, "f"))
	b = append(b[:1<<20:1<<20], append([]byte("a change"), b[1<<20:]...)...)
	write(t, filepath.Join(src, "f"), b, 0o644)

	hooked := 0
	testHookCopied = func(p string) {
		if hooked++; hooked == 1 {
			// Damage the old file where the copy read it.
			f, err := os.OpenFile(filepath.Join(dst, p), os.O_WRONLY, 0)
			if err != nil {
				t.Error(err)
				return
			}
			f.WriteAt([]byte("damage"), 100)
			f.Close()
		}
	}
	defer func() { testHookCopied = nil }()
	_, err := Sync(ctx, &TreeSource{Root: src}, recv)
	if hooked == 0 {
		t.Fatal("the hook did not run")
	}
	if err == nil {
		if err := Verify(ctx, dst, manifestOf(t, src)); err != nil {
			t.Fatalf("a sync over a changed old file succeeded with a wrong tree: %v", err)
		}
		return
	}
	t.Logf("the sync failed as it may: %v", err)
	testHookCopied = nil
	if _, err := Sync(ctx, &TreeSource{Root: src}, recv); err != nil {
		t.Fatal(err)
	}
	if err := Verify(ctx, dst, manifestOf(t, src)); err != nil {
		t.Fatal(err)
	}
}

// TestPatchInPlace: a file overwritten at a few places keeps its inode
// (it is patched, not copied); a patch that fails midway is undone, and
// the old tree is whole.
func TestPatchInPlace(t *testing.T) {
	ctx := context.Background()
	tmp := t.TempDir()
	src, dst, state := filepath.Join(tmp, "src"), filepath.Join(tmp, "dst"), filepath.Join(tmp, "state")
	write(t, filepath.Join(src, "db"), randBytes(9, 2<<20), 0o644)
	write(t, filepath.Join(src, "other"), randBytes(10, 1<<20), 0o644)
	recv := &TreeReceiver{Root: dst, State: state, NoSync: true}
	if _, err := Sync(ctx, &TreeSource{Root: src}, recv); err != nil {
		t.Fatal(err)
	}
	ino := inode(t, filepath.Join(dst, "db"))
	change := func(at int) {
		b, _ := os.ReadFile(filepath.Join(src, "db"))
		copy(b[at:], "a page written")
		write(t, filepath.Join(src, "db"), b, 0o600)
	}

	// A failure in the middle of the patch: undone.
	change(100)
	change(1 << 20)
	oldM := manifestOf(t, dst)
	errStop := errors.New("stopped")
	n := 0
	testHookPatch = func(string) error {
		if n++; n == 2 {
			return errStop
		}
		return nil
	}
	_, err := Sync(ctx, &TreeSource{Root: src}, recv)
	testHookPatch = nil
	if !errors.Is(err, errStop) {
		t.Fatalf("the patch was not stopped: %v", err)
	}
	if err := Verify(ctx, dst, oldM); err != nil {
		t.Fatalf("after a failed patch the tree is not the old one: %v", err)
	}
	if _, err := os.Stat(undoFile(state)); err == nil {
		t.Error("the undo log is still there")
	}

	if _, err := Sync(ctx, &TreeSource{Root: src}, recv); err != nil {
		t.Fatal(err)
	}
	if err := Verify(ctx, dst, manifestOf(t, src)); err != nil {
		t.Fatal(err)
	}
	if got := inode(t, filepath.Join(dst, "db")); got != ino {
		t.Errorf("the file was copied (inode %d, was %d), not patched", got, ino)
	}
	if info, _ := os.Stat(filepath.Join(dst, "db")); info.Mode().Perm() != 0o600 {
		t.Errorf("the patched file's mode is %v", info.Mode().Perm())
	}
}

// TestHardLinkedOldFiles: old files with two names are neither linked nor
// patched (a patch of one name would change the other): a change to one
// name leaves the other as the source has it.
func TestHardLinkedOldFiles(t *testing.T) {
	ctx := context.Background()
	tmp := t.TempDir()
	src, dst, state := filepath.Join(tmp, "src"), filepath.Join(tmp, "dst"), filepath.Join(tmp, "state")
	data := randBytes(11, 1<<20)
	write(t, filepath.Join(src, "a"), data, 0o644)
	write(t, filepath.Join(src, "b"), data, 0o644)
	same := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, n := range []string{"a", "b"} {
		os.Chtimes(filepath.Join(src, n), same, same) // b then equals the old b, inode and all
	}
	recv := &TreeReceiver{Root: dst, State: state, NoSync: true}
	if _, err := Sync(ctx, &TreeSource{Root: src}, recv); err != nil {
		t.Fatal(err)
	}
	// The receiver's a and b become one file with two names (as a user
	// of the volume could make them), then the source changes a.
	os.Remove(filepath.Join(dst, "b"))
	if err := os.Link(filepath.Join(dst, "a"), filepath.Join(dst, "b")); err != nil {
		t.Fatal(err)
	}
	b := append([]byte(nil), data...)
	copy(b[500000:], "a change of a only")
	write(t, filepath.Join(src, "a"), b, 0o644)
	if _, err := Sync(ctx, &TreeSource{Root: src}, recv); err != nil {
		t.Fatal(err)
	}
	if err := Verify(ctx, dst, manifestOf(t, src)); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyAllThroughHTTP: a receiver whose index lies about an old file
// (its chunks listed out of order, its stamp right) builds that file
// wrong when it trusts the index, and right when asked to verify every
// chunk (Remote.VerifyAll: commit?verify=all), which reads and hashes the
// old file's chunks and fetches what does not match.
func TestVerifyAllThroughHTTP(t *testing.T) {
	ctx := context.Background()
	tmp := t.TempDir()
	src, dst, state := filepath.Join(tmp, "src"), filepath.Join(tmp, "dst"), filepath.Join(tmp, "state")
	write(t, filepath.Join(src, "f"), randBytes(12, 1<<20), 0o644)
	remote := serveTree(t, dst, state)
	if _, err := Sync(ctx, &TreeSource{Root: src}, remote); err != nil {
		t.Fatal(err)
	}
	lie := func() {
		x := loadIndex(stateFile(state, "index"))
		if x == nil {
			t.Fatal("no index")
		}
		e := x.find("f")
		e.Chunks[0], e.Chunks[1] = e.Chunks[1], e.Chunks[0]
		if err := saveIndex(stateFile(state, "index"), x); err != nil {
			t.Fatal(err)
		}
	}
	// A new file made of f's chunks, so that the receiver takes them
	// from its old f.
	b, _ := os.ReadFile(filepath.Join(src, "f"))
	write(t, filepath.Join(src, "g"), b, 0o644)
	lie()
	remote.VerifyAll = true
	if _, err := Sync(ctx, &TreeSource{Root: src}, remote); err != nil {
		t.Fatal(err)
	}
	if err := Verify(ctx, dst, manifestOf(t, src)); err != nil {
		t.Fatalf("with every chunk verified: %v", err)
	}
	// The same lie, trusted: the new file is wrong (what VerifyAll is
	// for; the index lives in the state directory, out of tenants' reach).
	write(t, filepath.Join(src, "h"), b, 0o644)
	lie()
	remote.VerifyAll = false
	if _, err := Sync(ctx, &TreeSource{Root: src}, remote); err != nil {
		t.Fatal(err)
	}
	if err := Verify(ctx, dst, manifestOf(t, src)); err == nil {
		t.Fatal("a lying index was caught without VerifyAll: this test no longer tells the two apart")
	}
}
