package delta

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// fullChunks is what a full chunking of data gives.
func fullChunks(t *testing.T, data []byte) []Chunk {
	t.Helper()
	chunks, _, err := chunkReader(bytes.NewReader(data), make([]byte, 4<<20))
	if err != nil {
		t.Fatal(err)
	}
	return chunks
}

// TestRechunk: cutting again only around the changed spans gives the
// chunks of a full chunking, for overwrites, growth and shrinking, and
// hashes little of an unchanged file.
func TestRechunk(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		size := 1<<20 + r.IntN(1<<20)
		data := randBytes(uint64(round), size)
		old := fullChunks(t, data)
		now := slices.Clone(data)
		var dirty []span
		for range r.IntN(6) {
			off, n := r.IntN(len(now)), 1+r.IntN(20000)
			end := min(len(now), off+n)
			copy(now[off:end], randBytes(uint64(1000+round), end-off))
			dirty = append(dirty, span{int64(off), int64(end)})
		}
		switch r.IntN(4) {
		case 0: // grows
			now = append(now, randBytes(uint64(2000+round), r.IntN(100000))...)
		case 1: // shrinks
			now = now[:len(now)-r.IntN(100000)]
		}
		if len(now) != size {
			dirty = append(dirty, span{max(0, int64(min(size, len(now)))-MaxChunk), int64(max(size, len(now)))})
		}
		got, _, hashed := rechunk(now, old, nil, mergeSpans(dirty), nil)
		if want := fullChunks(t, now); !slices.Equal(got, want) {
			t.Fatalf("round %d: %d chunks, want %d", round, len(got), len(want))
		}
		if len(dirty) == 0 && hashed != 0 {
			t.Fatalf("round %d: an unchanged file hashed %d bytes", round, hashed)
		}
	}
}

// TestChangedSpansSplit: a write in the middle of one extent splits its
// item in three; only the middle is changed.
func TestChangedSpansSplit(t *testing.T) {
	was := []extent{{Off: 0, Len: 8 << 20, Bytenr: 1 << 30, Disk: 8 << 20, Gen: 7, Type: 1}}
	now := []extent{
		{Off: 0, Len: 1 << 20, Bytenr: 1 << 30, Disk: 8 << 20, Gen: 7, Type: 1},
		{Off: 1 << 20, Len: 4096, Bytenr: 2 << 30, Disk: 4096, Gen: 9, Type: 1},
		{Off: 1<<20 + 4096, Len: 7<<20 - 4096, Bytenr: 1 << 30, Disk: 8 << 20, ExtOff: 1<<20 + 4096, Gen: 7, Type: 1},
	}
	if got, want := changedSpans(was, now, 8<<20, 8<<20), []span{{1 << 20, 1<<20 + 4096}}; !slices.Equal(got, want) {
		t.Fatalf("spans %v, want %v", got, want)
	}
	// The same extent at another place of the file is a change.
	now[2].ExtOff += 4096
	if got := changedSpans(was, now, 8<<20, 8<<20); len(got) != 1 || got[0].End != 8<<20 {
		t.Fatalf("spans %v, want up to the end", got)
	}
	// Holes: no item and an explicit hole are the same zeros; a punched
	// hole is a change.
	if got := changedSpans([]extent{{Off: 0, Len: 4096, Type: 1}}, nil, 4096, 4096); len(got) != 0 {
		t.Fatalf("hole against hole: %v", got)
	}
	if got := changedSpans(was, was[:0], 8<<20, 8<<20); !slices.Equal(got, []span{{0, 8 << 20}}) {
		t.Fatalf("punched: %v", got)
	}
}

// btrfsDir is a fresh btrfs filesystem mounted for the test (a loop
// image), unmounted when it ends.
func btrfsDir(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: loop devices and mounts")
	}
	if _, err := exec.LookPath("mkfs.btrfs"); err != nil {
		t.Skip("needs mkfs.btrfs (scripts/setup.sh installs it)")
	}
	tmp := t.TempDir()
	img, mnt := filepath.Join(tmp, "img"), filepath.Join(tmp, "mnt")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 512<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.btrfs", "-q", "-f", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.btrfs: %v: %s", err, out)
	}
	os.Mkdir(mnt, 0o755)
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, 0); err != nil {
			unix.Unmount(mnt, unix.MNT_DETACH)
		}
	})
	return mnt
}

// TestExtentsRechunkBtrfs changes files on btrfs in every way a file's
// bytes can change (writes pending or synced, holes punched, zeroed
// ranges, truncation and growth, ranges cloned from another file and
// from the file itself, writes
// through a mapping, a reflinked copy renamed over the file, writes
// into preallocated space) and checks, after each change, that a scan
// from the previous index gives the chunks of a full chunking, cutting
// the copy-on-write files only where they changed. A nodatacow file is
// compared by its chunks' tags instead.
func TestExtentsRechunkBtrfs(t *testing.T) {
	dir := btrfsDir(t)
	ctx := context.Background()
	src := filepath.Join(dir, "src")
	os.Mkdir(src, 0o755)
	a, b, p := filepath.Join(src, "a"), filepath.Join(src, "b"), filepath.Join(src, "prealloc")
	write(t, a, randBytes(1, 6<<20), 0o644)
	write(t, b, randBytes(2, 3<<20), 0o644)
	pf, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Fallocate(int(pf.Fd()), 0, 0, 4<<20); err != nil {
		t.Fatal(err)
	}
	pf.Close()
	nocow := filepath.Join(src, "nocow")
	nf, err := os.Create(nocow)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlSetPointerInt(int(nf.Fd()), unix.FS_IOC_SETFLAGS, fsNocowFl); err != nil {
		t.Fatalf("chattr +C: %v", err)
	}
	nf.Write(randBytes(3, 2<<20))
	nf.Close()

	// Written back, as data at rest is (pending writes are a change below).
	if d, err := os.Open(src); err == nil {
		unix.Syncfs(int(d.Fd()))
		d.Close()
	}
	x, err := scan(ctx, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(x.extents["a"]) == 0 || x.extents["nocow"] != nil {
		t.Fatalf("extents kept: %v", x.extents)
	}
	r := rand.New(rand.NewPCG(7, 8))
	pwrite := func(path string, off int64, n int) {
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt(randBytes(r.Uint64(), n), off); err != nil {
			t.Fatal(err)
		}
	}
	size := func(path string) int64 {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return st.Size()
	}
	changes := []struct {
		name   string
		change func()
		partly int // files cut only where they changed
		byTags int // of which known by their tags
	}{
		{"pending writes", func() {
			for range 5 {
				pwrite(a, r.Int64N(size(a)-20000), 1+r.IntN(20000))
			}
		}, 1, 0},
		{"synced write", func() {
			pwrite(a, 4096*100, 10000)
			f, _ := os.OpenFile(a, os.O_WRONLY, 0)
			f.Sync()
			f.Close()
		}, 1, 0},
		{"the same range written again", func() {
			pwrite(a, 4096*100, 10000)
			f, _ := os.OpenFile(a, os.O_WRONLY, 0)
			f.Sync()
			f.Close()
		}, 1, 0},
		{"punched hole", func() {
			f, _ := os.OpenFile(a, os.O_WRONLY, 0)
			defer f.Close()
			if err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 1<<20, 64<<10); err != nil {
				t.Fatal(err)
			}
		}, 1, 0},
		{"zeroed range", func() {
			f, _ := os.OpenFile(a, os.O_WRONLY, 0)
			defer f.Close()
			if err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_ZERO_RANGE|unix.FALLOC_FL_KEEP_SIZE, 2<<20+512, 100000); err != nil {
				t.Fatal(err)
			}
		}, 1, 0},
		{"shorter", func() { os.Truncate(a, size(a)-123457) }, 1, 0},
		{"shorter, then as long again", func() {
			n := size(a)
			os.Truncate(a, n-50000)
			os.Truncate(a, n)
		}, 1, 0},
		{"appended", func() { pwrite(a, size(a), 300000) }, 1, 0},
		{"cloned range", func() {
			f, _ := os.OpenFile(a, os.O_WRONLY, 0)
			g, _ := os.Open(b)
			defer f.Close()
			defer g.Close()
			if err := unix.IoctlFileCloneRange(int(f.Fd()), &unix.FileCloneRange{Src_fd: int64(g.Fd()), Src_offset: 1 << 20, Src_length: 256 << 10, Dest_offset: 3 << 20}); err != nil {
				t.Fatal(err)
			}
		}, 1, 0},
		{"range cloned within the file", func() {
			f, _ := os.OpenFile(a, os.O_RDWR, 0)
			defer f.Close()
			if err := unix.IoctlFileCloneRange(int(f.Fd()), &unix.FileCloneRange{Src_fd: int64(f.Fd()), Src_offset: 1<<20 + 256<<10, Src_length: 128 << 10, Dest_offset: 4<<20 + 256<<10}); err != nil {
				t.Fatal(err)
			}
		}, 1, 0},
		{"mapped write", func() {
			f, _ := os.OpenFile(a, os.O_RDWR, 0)
			defer f.Close()
			m, err := unix.Mmap(int(f.Fd()), 0, int(size(a)), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
			if err != nil {
				t.Fatal(err)
			}
			copy(m[5<<20:], randBytes(r.Uint64(), 7000))
			unix.Munmap(m)
		}, 1, 0},
		{"reflinked copy renamed over", func() {
			tmp := a + ".new"
			if out, err := exec.Command("cp", "--reflink=always", a, tmp).CombinedOutput(); err != nil {
				t.Fatalf("cp: %v: %s", err, out)
			}
			pwrite(tmp, 12345, 5000)
			os.Rename(tmp, a)
		}, 1, 0},
		{"written into preallocated space", func() { pwrite(p, 1<<20, 30000) }, 1, 0},
		{"nodatacow overwrite", func() { pwrite(nocow, 1<<20, 30000) }, 1, 1},
	}
	for _, c := range changes {
		c.change()
		y, err := scan(ctx, src, x)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		want := manifestOf(t, src)
		if !slices.EqualFunc(y.m.Entries, want.Entries, func(e, f Entry) bool {
			return e.Path == f.Path && e.Size == f.Size && slices.Equal(e.Chunks, f.Chunks)
		}) {
			t.Fatalf("%s: the chunks differ from a full chunking", c.name)
		}
		if y.partly != c.partly || y.byTags != c.byTags {
			t.Fatalf("%s: %d files cut where they changed (%d by tags), want %d (%d)", c.name, y.partly, y.byTags, c.partly, c.byTags)
		}
		// The index, written and read back, is the next start.
		if x, err = decodeIndex(y.encode()); err != nil {
			t.Fatal(err)
		}
	}
}

// TestTagsRechunk: on a filesystem that cannot say what changed (the
// test's temporary directory), a changed file is compared with its
// chunks' tags and cut again only where they differ, giving the chunks
// (and tags) of a full chunking, for overwrites, growth, shrinking and
// an insertion; a file changed while it was read keeps no tags.
func TestTagsRechunk(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	var fs unix.Statfs_t
	if unix.Statfs(src, &fs) == nil && fs.Type == unix.BTRFS_SUPER_MAGIC {
		t.Skip("the temporary directory is on btrfs: extents would say what changed")
	}
	a := filepath.Join(src, "a")
	write(t, a, randBytes(1, 5<<20), 0o644)
	write(t, filepath.Join(src, "small"), randBytes(2, 4000), 0o644)
	x, err := scan(ctx, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(x.tags["a"]) != tagSize*len(x.find("a").Chunks) || len(x.tagKey) != 16 {
		t.Fatalf("tags of a: %d bytes for %d chunks", len(x.tags["a"]), len(x.find("a").Chunks))
	}
	r := rand.New(rand.NewPCG(3, 4))
	for round := range 40 {
		data, err := os.ReadFile(a)
		if err != nil {
			t.Fatal(err)
		}
		what := r.IntN(5)
		switch what {
		case 0, 1: // overwrites in place
			for range 1 + r.IntN(8) {
				off := r.IntN(len(data) - 20000)
				copy(data[off:], randBytes(r.Uint64(), 1+r.IntN(20000)))
			}
		case 2: // grows
			data = append(data, randBytes(r.Uint64(), r.IntN(200000))...)
		case 3: // shrinks
			data = data[:len(data)-r.IntN(200000)]
		case 4: // an insertion: everything after it moves
			off := r.IntN(len(data))
			data = append(data[:off], append(randBytes(r.Uint64(), 1+r.IntN(100)), data[off:]...)...)
		}
		os.WriteFile(a, data, 0o644)
		y, err := scan(ctx, src, x)
		if err != nil {
			t.Fatal(err)
		}
		want, err := scan(ctx, src, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got, w := y.find("a"), want.find("a"); got.Size != w.Size || !slices.Equal(got.Chunks, w.Chunks) {
			t.Fatalf("round %d (%d): the chunks differ from a full chunking", round, what)
		}
		if what <= 3 && (y.partly != 1 || y.byTags != 1) {
			t.Fatalf("round %d (%d): %d files cut where they changed, %d by tags", round, what, y.partly, y.byTags)
		}
		// The tags are those of a full chunking (under the same key).
		full, err := scan(ctx, src, &index{m: &Manifest{}, tagKey: y.tagKey})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(y.tags["a"], full.tags["a"]) {
			t.Fatalf("round %d (%d): the tags differ from a full chunking's", round, what)
		}
		if x, err = decodeIndex(y.encode()); err != nil {
			t.Fatal(err)
		}
	}
}
