package delta

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// serveTree serves a tree's source and receiver over HTTP, as an API
// would, under /t/<op>.
func serveTree(t *testing.T, root, state string) *Remote {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		op := strings.TrimPrefix(r.URL.Path, "/t/")
		Serve(w, r, op, &TreeSource{Root: root, State: state + "-src"}, &TreeReceiver{Root: root, State: state})
	}))
	t.Cleanup(srv.Close)
	return &Remote{URL: srv.URL + "/t", Client: srv.Client()}
}

func TestExportImportThroughHTTP(t *testing.T) {
	ctx := context.Background()
	tmp := t.TempDir()
	vol, drive := filepath.Join(tmp, "vol"), filepath.Join(tmp, "drive")
	sourceTree(t, vol)
	key := []byte("correct horse battery staple")
	remote := serveTree(t, vol, filepath.Join(tmp, "vol-state"))

	// Export: the volume (over HTTP) into the store.
	s, err := OpenStore(drive, key, true)
	if err != nil {
		t.Fatal(err)
	}
	st, err := Sync(ctx, remote, s)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := s.Written(); int(n) != st.Chunks {
		t.Errorf("first export wrote %d chunks of %d", n, st.Chunks)
	}
	// Nothing in the drive names a content hash.
	m := manifestOf(t, vol)
	for _, e := range m.Entries {
		for _, c := range e.Chunks {
			if _, err := os.Stat(filepath.Join(drive, "chunks", c.ID.String()[:2], c.ID.String()[2:4], c.ID.String())); err == nil {
				t.Fatal("a chunk file is named by its content hash")
			}
		}
	}

	// A small change: the second export writes only the new chunks.
	big, _ := os.ReadFile(filepath.Join(vol, "big"))
	copy(big[2<<20:], "changed!")
	write(t, filepath.Join(vol, "big"), big, 0o644)
	s2, err := OpenStore(drive, key, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Sync(ctx, remote, s2); err != nil {
		t.Fatal(err)
	}
	if n, _ := s2.Written(); n < 1 || n > 2 {
		t.Errorf("second export wrote %d chunks for an 8-byte change", n)
	}
	// The drive holds the new export's chunks, no more.
	distinct := map[ID]bool{}
	for _, e := range manifestOf(t, vol).Entries {
		for _, c := range e.Chunks {
			distinct[c.ID] = true
		}
	}
	files := 0
	filepath.WalkDir(filepath.Join(drive, "chunks"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files++
		}
		return nil
	})
	if files != len(distinct) {
		t.Errorf("the drive holds %d chunk files for %d chunks", files, len(distinct))
	}

	// Import into a new tree over HTTP.
	dst := filepath.Join(tmp, "restored")
	remote2 := serveTree(t, dst, filepath.Join(tmp, "restored-state"))
	if _, err := Sync(ctx, s2, remote2); err != nil {
		t.Fatal(err)
	}
	if err := Verify(ctx, dst, manifestOf(t, vol)); err != nil {
		t.Fatal(err)
	}

	// A wrong key says so.
	if _, err := OpenStore(drive, []byte("not the right key"), false); !errors.Is(err, ErrWrongKey) {
		t.Errorf("wrong key: %v", err)
	}
	if _, err := OpenStore(filepath.Join(tmp, "nothing"), key, false); !errors.Is(err, ErrNoStore) {
		t.Errorf("no store: %v", err)
	}

	// A tampered chunk fails the import, and the tree stays as it was.
	var chunkFile string
	filepath.WalkDir(filepath.Join(drive, "chunks"), func(p string, d os.DirEntry, err error) error {
		if d != nil && !d.IsDir() && chunkFile == "" {
			chunkFile = p
		}
		return nil
	})
	b, _ := os.ReadFile(chunkFile)
	b[len(b)-1] ^= 1
	os.WriteFile(chunkFile, b, 0o600)
	dst3 := filepath.Join(tmp, "third")
	write(t, filepath.Join(dst3, "keep"), []byte("keep"), 0o644)
	_, err = Sync(ctx, s2, serveTree(t, dst3, filepath.Join(tmp, "third-state")))
	if err == nil || !strings.Contains(err.Error(), "authenticate") {
		t.Errorf("import of a tampered chunk: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dst3, "keep")); err != nil {
		t.Error("a failed import changed the tree")
	}
}

func TestHTTPErrors(t *testing.T) {
	ctx := context.Background()
	tmp := t.TempDir()
	remote := serveTree(t, filepath.Join(tmp, "root"), filepath.Join(tmp, "state"))
	// A chunk request outside the tree.
	_, err := remote.Chunks(ctx, []Ref{{Path: "../etc/passwd", Size: 10}})
	var he *HTTPError
	if !errors.As(err, &he) || he.Status != 400 {
		t.Errorf("chunks outside the tree: %v", err)
	}
	// Commit with no sync under way.
	if err := remote.Commit(ctx, manifestOf(t, tmp)); !errors.As(err, &he) || he.Status != 409 {
		t.Errorf("commit without want: %v", err)
	}
}

// TestPackIndex: a pack's chunks are found the same through its index,
// through the pack alone, and through an index cut short (a crash).
func TestPackIndex(t *testing.T) {
	dir := t.TempDir()
	pw, err := newPackWriter(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		data := randBytes(uint64(i), 1+i*97)
		if err := pw.add(Sum(data), data); err != nil {
			t.Fatal(err)
		}
	}
	if err := pw.close(); err != nil {
		t.Fatal(err)
	}
	want, err := stagedChunks(dir)
	if err != nil || len(want) != 50 {
		t.Fatalf("%d chunks through the index (%v), want 50", len(want), err)
	}
	idx, err := os.ReadFile(pw.xf.Name())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{len(idx) / 2, 0} {
		if err := os.WriteFile(pw.xf.Name(), idx[:n], 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := stagedChunks(dir)
		if err != nil || !maps.Equal(got, want) {
			t.Errorf("index cut to %d bytes: %d chunks (%v), want the %d of the whole index", n, len(got), err, len(want))
		}
	}
	os.Remove(pw.xf.Name())
	if got, err := stagedChunks(dir); err != nil || !maps.Equal(got, want) {
		t.Errorf("without an index: %d chunks (%v), want %d", len(got), err, len(want))
	}
}

// mistaken is a receiver whose groups are not what their hashes say: what
// a receiver holding a group that shares its first 8 bytes with one of
// the source's looks like.
type mistaken struct{ *TreeReceiver }

func (r mistaken) KnownGroups(ctx context.Context) (map[ID][]Chunk, error) {
	groups, err := r.TreeReceiver.KnownGroups(ctx)
	for h, cs := range groups {
		groups[h] = append(cs[:len(cs):len(cs)], cs[0])
	}
	return groups, err
}

// TestCompactGroupMistaken: a compact manifest that does not expand to its
// manifest is refused, and the sync goes on with the full manifest, both
// pulling (Sync asks the source for it) and pushing (Remote.Want sends
// it).
func TestCompactGroupMistaken(t *testing.T) {
	ctx := context.Background()
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	sourceTree(t, src)
	change := func() {
		big, _ := os.ReadFile(filepath.Join(src, "big"))
		big[1<<20]++
		write(t, filepath.Join(src, "big"), big, 0o644)
	}
	// Pull from a source over HTTP.
	dst := filepath.Join(tmp, "pulled")
	recv := &TreeReceiver{Root: dst, State: dst + ".state"}
	source := serveTree(t, src, filepath.Join(tmp, "src-state"))
	for range 2 {
		if _, err := Sync(ctx, source, mistaken{recv}); err != nil {
			t.Fatalf("pull: %v", err)
		}
		if err := Verify(ctx, dst, manifestOf(t, src)); err != nil {
			t.Fatalf("pull: %v", err)
		}
		change()
	}
	// Push to a receiver over HTTP.
	dst = filepath.Join(tmp, "pushed")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		Serve(w, r, strings.TrimPrefix(r.URL.Path, "/t/"), nil, mistaken{&TreeReceiver{Root: dst, State: dst + ".state"}})
	}))
	defer srv.Close()
	for range 2 {
		if _, err := Sync(ctx, &TreeSource{Root: src}, &Remote{URL: srv.URL + "/t", Client: srv.Client()}); err != nil {
			t.Fatalf("push: %v", err)
		}
		if err := Verify(ctx, dst, manifestOf(t, src)); err != nil {
			t.Fatalf("push: %v", err)
		}
		change()
	}
}

// TestPushSendsRuns: pushing from a source with a state directory, the
// compact manifest of a small change names runs of the groups the
// receiver holds, and costs fewer bytes than without them.
func TestPushSendsRuns(t *testing.T) {
	ctx := context.Background()
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	write(t, filepath.Join(src, "big"), randBytes(7, 8<<20), 0o644)
	sent := map[bool]int64{}
	for _, withState := range []bool{false, true} {
		dst := filepath.Join(tmp, fmt.Sprint("dst", withState))
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			Serve(w, r, strings.TrimPrefix(r.URL.Path, "/t/"), nil, &TreeReceiver{Root: dst, State: dst + ".state"})
		}))
		defer srv.Close()
		source := &TreeSource{Root: src}
		if withState {
			source.State = filepath.Join(tmp, "src-state")
		}
		if _, err := Sync(ctx, source, &Remote{URL: srv.URL + "/t", Client: srv.Client()}); err != nil {
			t.Fatal(err)
		}
		// Change one byte in each of 20 places.
		big, _ := os.ReadFile(filepath.Join(src, "big"))
		for i := range 20 {
			big[i*(400<<10)+12345]++
		}
		write(t, filepath.Join(src, "big"), big, 0o644)
		remote := &Remote{URL: srv.URL + "/t", Client: srv.Client()}
		if _, err := Sync(ctx, source, remote); err != nil {
			t.Fatal(err)
		}
		if err := Verify(ctx, dst, manifestOf(t, src)); err != nil {
			t.Fatal(err)
		}
		sent[withState], _ = remote.Bytes()
	}
	if sent[true] >= sent[false] {
		t.Errorf("pushed %d bytes with the source's state, %d without", sent[true], sent[false])
	}
}

// TestEarlierPeer: a source or receiver of an earlier version, which
// refuses the 8-byte group list and the MDC2 compact manifest (400), gets
// the full manifest instead.
func TestEarlierPeer(t *testing.T) {
	ctx := context.Background()
	tmp := t.TempDir()
	src, dst := filepath.Join(tmp, "src"), filepath.Join(tmp, "dst")
	sourceTree(t, src)
	earlier := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			if bytes.HasPrefix(b, knownMagic) || bytes.HasPrefix(b, compactMagic) {
				writeHTTPError(w, fmt.Errorf("%w: bad magic", ErrCorrupt))
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(b))
			h.ServeHTTP(w, r)
		})
	}
	srv := httptest.NewServer(earlier(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		op := strings.TrimPrefix(r.URL.Path, "/t/")
		Serve(w, r, op, &TreeSource{Root: src, State: filepath.Join(tmp, "src-state")}, &TreeReceiver{Root: dst, State: dst + ".state"})
	})))
	defer srv.Close()
	remote := &Remote{URL: srv.URL + "/t", Client: srv.Client()}
	pulled := filepath.Join(tmp, "pulled")
	for range 2 {
		if _, err := Sync(ctx, remote, &TreeReceiver{Root: pulled, State: pulled + ".state"}); err != nil {
			t.Fatalf("pull: %v", err)
		}
		if _, err := Sync(ctx, &TreeSource{Root: src}, remote); err != nil {
			t.Fatalf("push: %v", err)
		}
		for _, d := range []string{pulled, dst} {
			if err := Verify(ctx, d, manifestOf(t, src)); err != nil {
				t.Fatal(err)
			}
		}
		big, _ := os.ReadFile(filepath.Join(src, "big"))
		big[1<<20]++
		write(t, filepath.Join(src, "big"), big, 0o644)
	}
}
