package volfs

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestFUSECacheCloseToOpen: with names and attributes cached (for an hour
// here, so that what may be stale is stale, whatever the timing), a change
// made through one mount (write and close, truncate, chmod, rename,
// unlink) is seen by an open on the other at once: the open asks the
// primary and the kernel forgets what it had. A stat without an open may
// be as old as CacheFor; a name made elsewhere is found at once (names
// that do not exist are never cached).
func TestFUSECacheCloseToOpen(t *testing.T) {
	primary, b, c, _, _ := mountPairFor(t, time.Hour)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	read := func(p string) string {
		t.Helper()
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("read %s: %v", p, err)
		}
		return string(got)
	}
	// openStat is the file's attributes as an open of it finds them.
	openStat := func(p string) os.FileInfo {
		t.Helper()
		f, err := os.Open(p)
		must(err)
		defer f.Close()
		fi, err := f.Stat()
		must(err)
		return fi
	}
	bf, cf := filepath.Join(b, "f"), filepath.Join(c, "f")

	// A name made on b is found by c at once, though c looked for it.
	if _, err := os.Stat(cf); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("c stats f before it exists: %v", err)
	}
	must(os.WriteFile(bf, []byte("one"), 0o640))
	if fi, err := os.Stat(cf); err != nil || fi.Size() != 3 {
		t.Fatalf("c stats f made on b: %v %v", fi, err)
	}

	// Written longer and closed on b: c's stat may still say 3 bytes
	// (cached), its open reads all of them.
	must(os.WriteFile(bf, []byte("a longer content"), 0o640))
	if fi, err := os.Stat(cf); err != nil || fi.Size() != 3 {
		t.Fatalf("c's cached stat: %v %v (the cache is not used)", fi, err)
	}
	if got := read(cf); got != "a longer content" {
		t.Fatalf("c reads %q after b's close", got)
	}
	if fi, err := os.Stat(cf); err != nil || fi.Size() != 16 {
		t.Fatalf("c stats f after its open: %v %v", fi, err)
	}
	// sendfile (busybox cat) reads up to the size the kernel holds,
	// without asking for attributes: the open must have given it the
	// new size.
	must(os.WriteFile(bf, []byte("longer than before"), 0o640))
	if got := sendfile(t, cf); got != "longer than before" {
		t.Fatalf("c's sendfile reads %q after b's close", got)
	}
	must(os.WriteFile(bf, []byte("short"), 0o640))
	if got := sendfile(t, cf); got != "short" {
		t.Fatalf("c's sendfile reads %q after b's close", got)
	}

	// Truncated on b.
	must(os.Truncate(bf, 1))
	if got := read(cf); got != "s" {
		t.Fatalf("c reads %q after b's truncate", got)
	}
	if fi := openStat(cf); fi.Size() != 1 {
		t.Fatalf("c's open finds %d bytes after b's truncate", fi.Size())
	}

	// Chmod on b: c's open finds the new mode.
	if fi, err := os.Stat(cf); err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("c stats f: %v %v", fi, err)
	}
	must(os.Chmod(bf, 0o604))
	if fi, err := os.Stat(cf); err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("c's cached stat after b's chmod: %v %v (the cache is not used)", fi, err)
	}
	if fi := openStat(cf); fi.Mode().Perm() != 0o604 {
		t.Fatalf("c's open finds mode %v after b's chmod", fi.Mode())
	}

	// Renamed on b: c cannot open the old name (its kernel may still
	// know it), opens the new one at once.
	must(os.Rename(bf, filepath.Join(b, "g")))
	if _, err := os.Open(cf); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("c opens f renamed on b: %v", err)
	}
	if got := read(filepath.Join(c, "g")); got != "s" {
		t.Fatalf("c reads g = %q", got)
	}

	// Unlinked on b: c's open fails, and an O_CREAT open makes a new
	// file (not ENOENT from the name c's kernel still had).
	must(os.WriteFile(cf, []byte("again"), 0o600))
	if got := read(cf); got != "again" {
		t.Fatalf("c reads %q", got)
	}
	must(os.Remove(filepath.Join(b, "g")))
	if _, err := os.Open(filepath.Join(c, "g")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("c opens g unlinked on b: %v", err)
	}
	must(os.WriteFile(filepath.Join(c, "g"), []byte("new g"), 0o600))
	if got, err := os.ReadFile(filepath.Join(primary, "g")); err != nil || string(got) != "new g" {
		t.Fatalf("the primary has g = %q, %v", got, err)
	}
	if got := read(filepath.Join(b, "g")); got != "new g" {
		t.Fatalf("b reads g = %q", got)
	}
	// Read on c with sendfile (its kernel forgets g's attributes at the
	// open, and sendfile does not ask for them again), then
	// unlinked on b: c's permission check of its next open asks for
	// them, gets ESTALE and looks the name up again: an O_CREAT open
	// makes the file, a stat finds nothing.
	if got := sendfile(t, filepath.Join(c, "g")); got != "new g" {
		t.Fatalf("c reads g = %q", got)
	}
	must(os.Remove(filepath.Join(b, "g")))
	must(os.WriteFile(filepath.Join(c, "g"), []byte("newer g"), 0o600))
	if got := read(filepath.Join(b, "g")); got != "newer g" {
		t.Fatalf("b reads g = %q", got)
	}
	if got := sendfile(t, filepath.Join(c, "g")); got != "newer g" {
		t.Fatalf("c reads g = %q", got)
	}
	must(os.Remove(filepath.Join(b, "g")))
	if _, err := os.Stat(filepath.Join(c, "g")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("c stats g unlinked on b: %v", err)
	}

	// A handle that stays open on c (or a closed one the kernel has not
	// released yet) does not make c's next open miss b's close: that
	// open asks the primary and, the file changed, gets its own copy.
	must(os.WriteFile(bf, []byte("first"), 0o600))
	h, err := os.Open(cf)
	must(err)
	defer h.Close()
	if got := read(cf); got != "first" {
		t.Fatalf("c reads %q", got)
	}
	must(os.WriteFile(bf, []byte("second"), 0o600))
	if got := read(cf); got != "second" {
		t.Fatalf("c reads %q after b's close while c holds the file open", got)
	}
}

// TestFUSEListingAttrs: a listing brings the attributes of every entry,
// so stats of the names listed cost the primary nothing for CacheFor
// (ls -l, find); a change made through the same mount is seen at once,
// and opens still ask the primary.
func TestFUSEListingAttrs(t *testing.T) {
	_, b, c, _, ops := mountPairFor(t, time.Hour)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Mkdir(filepath.Join(b, "d"), 0o755))
	names := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	for _, n := range names {
		must(os.WriteFile(filepath.Join(b, "d", n), []byte(n), 0o644))
	}
	d := filepath.Join(c, "d")
	if _, err := os.Stat(d); err != nil {
		t.Fatal(err)
	}
	stats := ops.get(OpStat)
	des, err := os.ReadDir(d)
	if err != nil || len(des) != len(names) {
		t.Fatalf("c lists %d entries, %v", len(des), err)
	}
	for _, de := range des {
		if fi, err := os.Lstat(filepath.Join(d, de.Name())); err != nil || fi.Size() != 1 {
			t.Fatalf("c stats %s: %v %v", de.Name(), fi, err)
		}
	}
	if got := ops.get(OpStat) - stats; got != 0 {
		t.Fatalf("stats of %d names just listed asked the primary %d times", len(names), got)
	}
	// b rewrites a: c's stat may be as old as the listing, its open not.
	must(os.WriteFile(filepath.Join(b, "d", "a"), []byte("longer"), 0o644))
	if got, err := os.ReadFile(filepath.Join(d, "a")); err != nil || string(got) != "longer" {
		t.Fatalf("c reads %q, %v after b's close", got, err)
	}
	// c's own changes after a listing: seen by its next stat.
	list := func() {
		t.Helper()
		if _, err := os.ReadDir(d); err != nil {
			t.Fatal(err)
		}
	}
	list()
	must(os.WriteFile(filepath.Join(d, "b"), []byte("bigger"), 0o644))
	if fi, err := os.Lstat(filepath.Join(d, "b")); err != nil || fi.Size() != 6 {
		t.Fatalf("c stats b after writing it: %v %v", fi, err)
	}
	list()
	must(os.Remove(filepath.Join(d, "c")))
	if _, err := os.Lstat(filepath.Join(d, "c")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("c stats c after removing it: %v", err)
	}
	list()
	must(os.Rename(filepath.Join(d, "e"), filepath.Join(d, "e2")))
	if _, err := os.Lstat(filepath.Join(d, "e")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("c stats e after renaming it: %v", err)
	}
	list()
	must(os.Chmod(filepath.Join(d, "f"), 0o600))
	if fi, err := os.Lstat(filepath.Join(d, "f")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("c stats f after chmod: %v %v", fi, err)
	}
	// A name listed and removed on b: c's open fails.
	list()
	must(os.Remove(filepath.Join(b, "d", "g")))
	if _, err := os.Open(filepath.Join(d, "g")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("c opens g removed on b: %v", err)
	}
}

// sendfile copies the file at p with sendfile(2), as busybox cat does,
// and returns what it copied.
func sendfile(t *testing.T, p string) string {
	t.Helper()
	in, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.CreateTemp(t.TempDir(), "sendfile")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	for {
		n, err := unix.Sendfile(int(out.Fd()), int(in.Fd()), nil, 1<<20)
		if err != nil {
			t.Fatalf("sendfile %s: %v", p, err)
		}
		if n == 0 {
			break
		}
	}
	got, err := os.ReadFile(out.Name())
	if err != nil {
		t.Fatal(err)
	}
	return string(got)
}

// TestFUSEOwnChanges: the attributes a write-back or a setattr got from
// the primary answer the stats that follow on the same mount (no round
// trip), and a change they do not describe (a link, an unlink, a rename
// of the file) is seen at once.
func TestFUSEOwnChanges(t *testing.T) {
	_, b, _, _, ops := mountPairFor(t, time.Hour)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	f := filepath.Join(b, "f")
	must(os.WriteFile(f, []byte("four"), 0o644))
	// The kernel asks for the directory's attributes again (its
	// permission check: the create changed it); then no more.
	if _, err := os.Stat(b); err != nil {
		t.Fatal(err)
	}
	stats := ops.get(OpStat)
	if fi, err := os.Stat(f); err != nil || fi.Size() != 4 {
		t.Fatalf("stat after the write: %v %v", fi, err)
	}
	must(os.Truncate(f, 2))
	must(os.Chmod(f, 0o600))
	if fi, err := os.Stat(f); err != nil || fi.Size() != 2 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("stat after truncate and chmod: %v %v", fi, err)
	}
	if got := ops.get(OpStat) - stats; got != 0 {
		t.Fatalf("stats of a file just written asked the primary %d times", got)
	}
	nlink := func(p string) uint64 {
		t.Helper()
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t).Nlink
	}
	must(os.Link(f, filepath.Join(b, "g")))
	if n := nlink(f); n != 2 {
		t.Fatalf("f has %d links after link", n)
	}
	must(os.WriteFile(f, []byte("again"), 0o644))
	must(os.Remove(filepath.Join(b, "g")))
	if n := nlink(f); n != 1 {
		t.Fatalf("f has %d links after unlink of g", n)
	}
}

// TestFUSECacheWithoutRevalidation: with the open's revalidation turned
// off, the cached size wins and c reads a cut file: what the tests above
// check is what the revalidation does.
func TestFUSECacheWithoutRevalidation(t *testing.T) {
	revalidate = false
	t.Cleanup(func() { revalidate = true })
	_, b, c, _, _ := mountPairFor(t, time.Hour)
	if err := os.WriteFile(filepath.Join(b, "f"), []byte("one"), 0o644); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(c, "f")); err != nil || fi.Size() != 3 {
		t.Fatalf("c stats f: %v %v", fi, err)
	}
	if err := os.WriteFile(filepath.Join(b, "f"), []byte("a longer content"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(c, "f"))
	if err != nil || string(got) == "a longer content" {
		t.Fatalf("without revalidation c reads %q, %v: the kernel's cached size was not used", got, err)
	}
}
