package volfs

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestSpans(t *testing.T) {
	tests := []struct {
		name string
		ops  func() spans
		want spans
	}{
		{"add disjoint", func() spans { return spans{}.add(10, 20).add(0, 5).add(30, 40) }, spans{{0, 5}, {10, 20}, {30, 40}}},
		{"add adjacent merges", func() spans { return spans{}.add(0, 5).add(5, 10) }, spans{{0, 10}}},
		{"add bridging", func() spans { return spans{}.add(0, 5).add(10, 20).add(30, 40).add(3, 31) }, spans{{0, 40}}},
		{"add inside", func() spans { return spans{}.add(0, 50).add(10, 20) }, spans{{0, 50}}},
		{"add empty", func() spans { return spans{}.add(5, 5) }, spans{}},
		{"remove middle", func() spans { return spans{}.add(0, 50).remove(10, 20) }, spans{{0, 10}, {20, 50}}},
		{"remove tail", func() spans { return spans{}.add(0, 10).add(20, 30).remove(5, 1<<62) }, spans{{0, 5}}},
		{"missing", func() spans { return spans{}.add(10, 20).add(30, 40).missing(0, 35) }, spans{{0, 10}, {20, 30}}},
		{"missing none", func() spans { return spans{}.add(0, 40).missing(5, 35) }, nil},
		{"missing all", func() spans { return spans{}.missing(5, 35) }, spans{{5, 35}}},
		{"chunks", func() spans { return spans(spans{{0, 10}, {20, 25}}.chunks(4)) }, spans{{0, 4}, {4, 8}, {8, 10}, {20, 24}, {24, 25}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.ops()
			if len(got) == 0 && len(tt.want) == 0 {
				return
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestBatchRoundTrip(t *testing.T) {
	src := bytes.NewReader([]byte("0123456789abcdef"))
	frames := []span{{0, 4}, {10, 12}, {14, 20}} // the last runs past the end: zeros
	b, err := io.ReadAll(newBatchReader(src, BatchSync, 3, 40, frames))
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) != batchLen(frames) {
		t.Fatalf("%d bytes, batchLen says %d", len(b), batchLen(frames))
	}
	bt, err := DecodeBatch(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	want := Batch{Flags: BatchSync, Trunc: 3, Size: 40, Frames: []Frame{{0, []byte("0123")}, {10, []byte("ab")}, {14, []byte("ef\x00\x00\x00\x00")}}}
	if !reflect.DeepEqual(bt, want) {
		t.Fatalf("got %+v, want %+v", bt, want)
	}
	for _, bad := range [][]byte{nil, []byte("VFW2"), b[:len(b)-1], append(append([]byte{}, b[:batchHead]...), make([]byte, frameHead)...)} {
		if _, err := DecodeBatch(bytes.NewReader(bad)); !errors.Is(err, ErrBadBatch) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// FuzzDecodeBatch: a batch from the network decodes or is refused, never
// panics, and what decodes encodes back to the same bytes.
func FuzzDecodeBatch(f *testing.F) {
	b, _ := io.ReadAll(newBatchReader(bytes.NewReader([]byte("hello world")), 0, -1, 11, []span{{0, 5}, {6, 11}}))
	f.Add(b)
	f.Add(encodeHead(BatchSync, 0, -1))
	f.Add([]byte("VFW1"))
	f.Fuzz(func(t *testing.T, in []byte) {
		bt, err := DecodeBatch(bytes.NewReader(in))
		if err != nil {
			return
		}
		out := encodeHead(bt.Flags, bt.Trunc, bt.Size)
		total := 0
		for _, fr := range bt.Frames {
			if len(fr.Data) == 0 || len(fr.Data) > MaxFrame || fr.Off < 0 || fr.Off+int64(len(fr.Data)) > MaxFileSize {
				t.Fatalf("frame out of bounds: %d+%d", fr.Off, len(fr.Data))
			}
			total += len(fr.Data)
			var h [frameHead]byte
			h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7] = byte(fr.Off>>56), byte(fr.Off>>48), byte(fr.Off>>40), byte(fr.Off>>32), byte(fr.Off>>24), byte(fr.Off>>16), byte(fr.Off>>8), byte(fr.Off)
			n := len(fr.Data)
			h[8], h[9], h[10], h[11] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
			out = append(append(out, h[:]...), fr.Data...)
		}
		if total > MaxBatch || !bytes.Equal(out, in) {
			t.Fatalf("decoded %+v does not encode back to its input", bt)
		}
	})
}

// FuzzRangedHandler: any query and body sent to the ranged read and write
// of the handler is answered (never a panic), and nothing leaves the
// volume's directory.
func FuzzRangedHandler(f *testing.F) {
	dir := f.TempDir()
	vol := filepath.Join(dir, "vol")
	os.Mkdir(vol, 0o700)
	os.WriteFile(filepath.Join(dir, "outside"), []byte("secret"), 0o600)
	h := Handler(func(context.Context) (string, error) { return vol, nil })
	b, _ := io.ReadAll(newBatchReader(bytes.NewReader([]byte("hello")), BatchSync, 0, -1, []span{{0, 5}}))
	f.Add("f", "0", "5", b)
	f.Add("../outside", "0", "6", b)
	f.Add("f", "-1", "99999999999", []byte("VFW1"))
	f.Fuzz(func(t *testing.T, p, off, n string, body []byte) {
		os.WriteFile(filepath.Join(vol, "f"), []byte("abc"), 0o600)
		rec := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, "/write?path="+urlQuery(p), bytes.NewReader(body))
		h.ServeHTTP(rec, r)
		rec = httptest.NewRecorder()
		r = httptest.NewRequest(http.MethodGet, "/data?path="+urlQuery(p)+"&off="+urlQuery(off)+"&len="+urlQuery(n), nil)
		h.ServeHTTP(rec, r)
		if bytes.Contains(rec.Body.Bytes(), []byte("secret")) {
			t.Fatalf("read outside the volume: %q", p)
		}
		if got, _ := os.ReadFile(filepath.Join(dir, "outside")); string(got) != "secret" {
			t.Fatalf("wrote outside the volume: %q", p)
		}
	})
}

func urlQuery(s string) string {
	var b []byte
	for i := 0; i < len(s); i++ {
		b = append(b, '%', "0123456789ABCDEF"[s[i]>>4], "0123456789ABCDEF"[s[i]&15])
	}
	return string(b)
}

// mountStats serves a directory as a primary and mounts it twice, with
// each mount's byte counters.
func mountStats(t *testing.T) (primary, b, c string, sb, sc *Stats) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("FUSE mounts need root")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
	primary = t.TempDir()
	srv := httptest.NewServer(http.StripPrefix("/v", Handler(func(context.Context) (string, error) { return primary, nil })))
	t.Cleanup(srv.Close)
	cl := &Client{HC: srv.Client(), Base: srv.URL + "/v"}
	mount := func(st *Stats) string {
		dir := t.TempDir()
		s, err := Mount(dir, cl, MountOptions{CacheDir: t.TempDir(), Name: "test", Stats: st})
		if err != nil {
			t.Fatalf("mount: %v", err)
		}
		t.Cleanup(func() {
			if err := s.Unmount(); err != nil {
				t.Errorf("unmount: %v", err)
			}
		})
		return dir
	}
	sb, sc = &Stats{}, &Stats{}
	return primary, mount(sb), mount(sc), sb, sc
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func mustEqualFile(t *testing.T, p string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && i < len(want) && got[i] == want[i] {
			i++
		}
		t.Fatalf("%s: %d bytes, want %d; first difference at %d", p, len(got), len(want), i)
	}
}

func pwrite(t *testing.T, p string, flag int, off int64, data []byte) {
	t.Helper()
	f, err := os.OpenFile(p, flag, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// A small change of a large file moves about its size, both ways; a
// header read fetches about the header.
func TestFUSERangedBytes(t *testing.T) {
	primary, b, c, sb, sc := mountStats(t)
	const size = 32 << 20
	want := randBytes(size)
	if err := os.WriteFile(filepath.Join(primary, "big"), want, 0o644); err != nil {
		t.Fatal(err)
	}
	pwrite(t, filepath.Join(b, "big"), os.O_WRONLY, size/2+7, []byte{'x'})
	want[size/2+7] = 'x'
	if f, w := sb.Fetched.Load(), sb.Written.Load(); f != 0 || w != 1 {
		t.Fatalf("a 1-byte write moved %d bytes in, %d out", f, w)
	}
	mustEqualFile(t, filepath.Join(primary, "big"), want)

	f, err := os.Open(filepath.Join(c, "big"))
	if err != nil {
		t.Fatal(err)
	}
	hdr := make([]byte, 100)
	if _, err := f.ReadAt(hdr, 0); err != nil || !bytes.Equal(hdr, want[:100]) {
		t.Fatalf("header: %v", err)
	}
	if got := sc.Fetched.Load(); got > 1<<20 {
		t.Fatalf("a 100-byte read fetched %d bytes", got)
	}
	// Random reads anywhere read what the primary has.
	for _, off := range []int64{size - 100, 12345678, size / 2, 4096 * 1000} {
		buf := make([]byte, 100)
		if _, err := f.ReadAt(buf, off); err != nil || !bytes.Equal(buf, want[off:off+100]) {
			t.Fatalf("read at %d: %v", off, err)
		}
	}
	f.Close()
	if got := sc.Fetched.Load(); got > 4<<20 {
		t.Fatalf("five small reads fetched %d bytes", got)
	}
	// A whole read gets the whole file.
	mustEqualFile(t, filepath.Join(c, "big"), want)
	if sc.Written.Load() != 0 {
		t.Fatalf("reads wrote %d bytes back", sc.Written.Load())
	}
}

func TestFUSERangedTruncateAppendSparse(t *testing.T) {
	primary, b, c, sb, _ := mountStats(t)
	orig := randBytes(1 << 20)
	pf := filepath.Join(primary, "f")
	os.WriteFile(pf, orig, 0o644)

	// Shrink, then a write past the new end: the bytes between are zeros,
	// not the primary's old ones.
	f, err := os.OpenFile(filepath.Join(b, "f"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(10); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("x"), 100); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 200)
	if n, _ := f.ReadAt(buf, 0); n != 101 || !bytes.Equal(buf[:10], orig[:10]) || !bytes.Equal(buf[10:100], make([]byte, 90)) || buf[100] != 'x' {
		t.Fatalf("local view after truncate and write: %d bytes", n)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	want := append(append(append([]byte{}, orig[:10]...), make([]byte, 90)...), 'x')
	mustEqualFile(t, pf, want)

	// Shrink and grow by truncate alone.
	f, _ = os.OpenFile(filepath.Join(c, "f"), os.O_RDWR, 0)
	f.Truncate(5)
	f.Truncate(50)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	want = append(append([]byte{}, orig[:5]...), make([]byte, 45)...)
	mustEqualFile(t, pf, want)
	mustEqualFile(t, filepath.Join(b, "f"), want)

	// O_TRUNC and O_APPEND, from two nodes in turn.
	if err := os.WriteFile(filepath.Join(b, "f"), []byte("one"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{c, b, c} {
		f, err := os.OpenFile(filepath.Join(d, "f"), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString("+" + filepath.Base(d)[:1])
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := os.ReadFile(pf)
	if len(got) != 9 || string(got[:3]) != "one" {
		t.Fatalf("after appends: %q", got)
	}

	// Sparse: a byte at 1 GiB of a new file sends a byte, and the
	// primary's file stays sparse.
	before := sb.Written.Load()
	pwrite(t, filepath.Join(b, "sparse"), os.O_WRONLY|os.O_CREATE, 1<<30, []byte{'z'})
	if w := sb.Written.Load() - before; w != 1 {
		t.Fatalf("a byte at 1 GiB sent %d bytes", w)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(primary, "sparse"), &st); err != nil || st.Size != 1<<30+1 || st.Blocks > 1024 {
		t.Fatalf("primary's sparse file: size %d, %d blocks, %v", st.Size, st.Blocks, err)
	}
	f, _ = os.Open(filepath.Join(c, "sparse"))
	buf = make([]byte, 2)
	if n, _ := f.ReadAt(buf, 1<<30-1); n != 2 || buf[0] != 0 || buf[1] != 'z' {
		t.Fatalf("sparse read: %q", buf[:n])
	}
	f.Close()
}

// Two nodes write the same file at once: every range is the last closer's
// where they overlap, each one's elsewhere.
func TestFUSERangedConcurrentWriters(t *testing.T) {
	primary, b, c, _, _ := mountStats(t)
	pf := filepath.Join(primary, "f")
	os.WriteFile(pf, bytes.Repeat([]byte("."), 64), 0o644)
	fb, err := os.OpenFile(filepath.Join(b, "f"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fc, err := os.OpenFile(filepath.Join(c, "f"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fb.WriteAt([]byte("BBBBBBBB"), 0)
	fc.WriteAt([]byte("CCCC"), 4)
	fb.WriteAt([]byte("bb"), 40)
	fc.WriteAt([]byte("cc"), 60)
	if err := fb.Close(); err != nil {
		t.Fatal(err)
	}
	if err := fc.Close(); err != nil {
		t.Fatal(err)
	}
	want := []byte(".................................................................")[:64]
	copy(want, "BBBBCCCC")
	copy(want[40:], "bb")
	copy(want[60:], "cc")
	mustEqualFile(t, pf, want)
}

// Past flushAt dirty bytes a writer's changes go back before the close;
// past keepClean clean bytes the local copy drops them and fetches again.
func TestFUSERangedLargeFile(t *testing.T) {
	oldFlush, oldKeep := flushAt, keepClean
	flushAt, keepClean = 1<<20, 2<<20
	t.Cleanup(func() { flushAt, keepClean = oldFlush, oldKeep })
	primary, b, c, sb, sc := mountStats(t)
	want := randBytes(8 << 20)
	f, err := os.Create(filepath.Join(b, "f"))
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(want); off += 128 << 10 {
		if _, err := f.Write(want[off : off+128<<10]); err != nil {
			t.Fatal(err)
		}
	}
	if w := sb.Written.Load(); w < 6<<20 {
		t.Fatalf("before the close, %d bytes went back", w)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if w := sb.Written.Load(); w != int64(len(want)) {
		t.Fatalf("%d bytes written back for %d", w, len(want))
	}
	mustEqualFile(t, filepath.Join(primary, "f"), want)

	f, err = os.Open(filepath.Join(c, "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for pass := 0; pass < 2; pass++ {
		got, err := io.ReadAll(f)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("pass %d: %d bytes, %v", pass, len(got), err)
		}
		// Drop the kernel's page cache: the next pass asks the mount.
		unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
		f.Seek(0, io.SeekStart)
	}
	if got := sc.Fetched.Load(); got < int64(len(want))+4<<20 {
		t.Fatalf("two passes over 8 MiB with 2 MiB kept fetched only %d bytes", got)
	}
}

// A writer's close answers only once the primary has the data: a reader
// on another node opening after it sees it, while writes go on in many
// files at once.
func TestFUSERangedParallelFiles(t *testing.T) {
	primary, b, c, _, _ := mountStats(t)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			name := string(rune('a' + i))
			for round := range 5 {
				data := randBytes(100<<10 + round*1000)
				if err := os.WriteFile(filepath.Join(b, name), data, 0o644); err != nil {
					t.Error(err)
					return
				}
				got, err := os.ReadFile(filepath.Join(c, name))
				if err != nil || !bytes.Equal(got, data) {
					t.Errorf("%s round %d: %d bytes, %v", name, round, len(got), err)
					return
				}
			}
		})
	}
	wg.Wait()
	if _, err := os.Stat(filepath.Join(primary, "a")); err != nil {
		t.Fatal(err)
	}
	// A write to a file another node removed fails at the close.
	f, err := os.OpenFile(filepath.Join(b, "a"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(primary, "a"))
	f.WriteAt([]byte("x"), 0)
	if err := f.Close(); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("close after a remote unlink: %v", err)
	}
}

// A closed file's copy serves its next open while the primary's file is
// unchanged; a change of the same size on the primary is seen.
func TestFUSEKeptCache(t *testing.T) {
	primary, b, _, sb, _ := mountStats(t)
	pf := filepath.Join(primary, "f")
	os.WriteFile(pf, randBytes(1<<20), 0o644)
	// Timestamps are as coarse as the kernel's tick: the mount trusts
	// only attributes that were older than settle when it read them.
	time.Sleep(2 * settle)
	want, _ := os.ReadFile(pf)
	mustEqualFile(t, filepath.Join(b, "f"), want)
	fetched := sb.Fetched.Load()
	mustEqualFile(t, filepath.Join(b, "f"), want)
	if got := sb.Fetched.Load(); got != fetched {
		t.Fatalf("the second open fetched %d bytes again", got-fetched)
	}
	want = randBytes(1 << 20)
	os.WriteFile(pf, want, 0o644)
	mustEqualFile(t, filepath.Join(b, "f"), want)
}

// A batch that fails changes nothing when it only grew the file or
// filled its holes (here: a frame past the filesystem's largest file);
// one that failed after it overwrote bytes would say so (HeaderPartial:
// the primary marks its replicas stale).
func TestWriteBatchPartial(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "f"), []byte("abc"), 0o644)
	h := Handler(func(context.Context) (string, error) { return dir, nil })
	send := func(frames []span) *httptest.ResponseRecorder {
		src := bytes.NewReader(make([]byte, 8))
		b, _ := io.ReadAll(newBatchReader(&offsetReader{src}, BatchSync, -1, -1, frames))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/write?path=f", bytes.NewReader(b)))
		return rec
	}
	if rec := send([]span{{0, 1}}); rec.Code != http.StatusOK || rec.Header().Get(HeaderPartial) != "" {
		t.Fatalf("a good batch: %d %q", rec.Code, rec.Body)
	}
	if rec := send([]span{{MaxFileSize - 1, MaxFileSize}}); rec.Code == http.StatusOK {
		t.Skipf("this filesystem takes a byte at %d", MaxFileSize-1)
	} else if rec.Header().Get(HeaderPartial) != "" {
		t.Fatalf("a batch that changed nothing is marked partial")
	}
	// What a batch fills past the end is allocated before any byte is
	// written: one that cannot grow the file changes nothing.
	os.WriteFile(filepath.Join(dir, "f"), []byte("abc"), 0o644)
	if rec := send([]span{{0, 1}, {MaxFileSize - 1, MaxFileSize}}); rec.Code != http.StatusConflict || rec.Header().Get(HeaderPartial) != "" {
		t.Fatalf("a batch that cannot grow the file: %d, partial %q", rec.Code, rec.Header().Get(HeaderPartial))
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "f")); string(got) != "abc" {
		t.Fatalf("after a refused batch the file has %q", got)
	}
	// Failed while it only grew the file: undone, not partial.
	if rec := send([]span{{3, 5}, {MaxFileSize - 1, MaxFileSize}}); rec.Code != http.StatusConflict || rec.Header().Get(HeaderPartial) != "" {
		t.Fatalf("a batch that failed while growing the file: %d, partial %q", rec.Code, rec.Header().Get(HeaderPartial))
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "f")); len(got) != 3 {
		t.Fatalf("after an undone batch the file has %d bytes, want 3", len(got))
	}
	// Or while it filled a hole.
	os.Truncate(filepath.Join(dir, "f"), 1<<20)
	if rec := send([]span{{512 << 10, 512<<10 + 4}, {MaxFileSize - 1, MaxFileSize}}); rec.Code != http.StatusConflict || rec.Header().Get(HeaderPartial) != "" {
		t.Fatalf("a batch that failed while filling a hole: %d, partial %q", rec.Code, rec.Header().Get(HeaderPartial))
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "f")); len(got) != 1<<20 || !bytes.Equal(got[3:], make([]byte, 1<<20-3)) {
		t.Fatalf("after an undone batch the file has %d bytes, or not its zeros", len(got))
	}
}

// offsetReader reads src at any offset modulo its size (frames far out).
type offsetReader struct{ src *bytes.Reader }

func (o *offsetReader) ReadAt(p []byte, off int64) (int, error) {
	return o.src.ReadAt(p, off%o.src.Size())
}

// TestFUSERandomReaderFill: a reader that keeps missing at random places
// gets the rest of the file in the background (as a whole-file fetch at
// open did), and then reads without asking the primary; a reader of a
// few records (TestFUSERangedBytes) never does.
func TestFUSERandomReaderFill(t *testing.T) {
	primary, _, c, _, sc := mountStats(t)
	const size = 24 << 20
	want := randBytes(size)
	if err := os.WriteFile(filepath.Join(primary, "db"), want, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(c, "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	read := func(off int64) {
		t.Helper()
		buf := make([]byte, 100)
		if _, err := f.ReadAt(buf, off); err != nil || !bytes.Equal(buf, want[off:off+100]) {
			t.Fatalf("read at %d: %v", off, err)
		}
	}
	// Far apart, backwards: no read continues the last one.
	for i := int64(0); i < 2*fillAfter; i++ {
		read(size - 1<<20 - i*(1<<20) + 12345)
	}
	// No more reads: the fill goes on by itself.
	for deadline := time.Now().Add(time.Minute); sc.Fetched.Load() < size; {
		if time.Now().After(deadline) {
			t.Fatalf("the rest of the file was not fetched: %d of %d bytes", sc.Fetched.Load(), size)
		}
		time.Sleep(10 * time.Millisecond)
	}
	got := sc.Fetched.Load()
	for _, off := range []int64{7, size / 3, size - 200} {
		read(off)
	}
	if sc.Fetched.Load() != got {
		t.Fatalf("reads after the fill fetched %d more bytes", sc.Fetched.Load()-got)
	}
	if got > size+size/4 {
		t.Fatalf("the fill fetched %d bytes for a %d-byte file", got, size)
	}
}
