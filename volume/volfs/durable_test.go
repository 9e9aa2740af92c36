package volfs

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// TestDurable: every metadata operation that succeeds fsyncs what it made
// or changed and its parent directory before it is answered (seen through
// fsync); one that fails syncs nothing; a failed fsync answers EIO.
func TestDurable(t *testing.T) {
	dir := t.TempDir()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	var synced []string
	var failSync error
	fsync = func(f *os.File) error {
		name := f.Name()
		if rel, err := filepath.Rel(dir, name); err == nil && filepath.IsAbs(name) {
			name = rel
		}
		synced = append(synced, name)
		if failSync != nil {
			return failSync
		}
		return f.Sync()
	}
	t.Cleanup(func() { fsync = (*os.File).Sync })
	size := int64(3)
	mode := uint32(0o600)
	for _, c := range []struct {
		q     Request
		errno syscall.Errno
		want  string // the files synced, in order
	}{
		{Request{Op: OpMkdir, Path: "d", Mode: 0o755}, 0, "d ."},
		{Request{Op: OpMkdir, Path: "d/e", Mode: 0o755}, 0, "d/e d"},
		{Request{Op: OpCreate, Path: "d/f", Mode: 0o644}, 0, "d/f d"},
		{Request{Op: OpSetattr, Path: "d/f", Set: &SetAttr{Size: &size}}, 0, "d/f"},
		{Request{Op: OpSetattr, Path: "d/f", Set: &SetAttr{Mode: &mode}}, 0, "d/f"},
		{Request{Op: OpSymlink, Path: "d/l", Target: "f"}, 0, "d"},
		{Request{Op: OpLink, Path: "d/f", To: "h"}, 0, "h ."},
		{Request{Op: OpRename, Path: "d/f", To: "d/e/g"}, 0, "d d/e"},
		{Request{Op: OpRename, Path: "h", To: "h2"}, 0, "."},
		{Request{Op: OpUnlink, Path: "d/e/g"}, 0, "d/e"},
		{Request{Op: OpRmdir, Path: "d/e"}, 0, "d"},
		{Request{Op: OpUnlink, Path: "nothing"}, syscall.ENOENT, ""},
		{Request{Op: OpStat, Path: "d"}, 0, ""},
		{Request{Op: OpReaddir, Path: "d"}, 0, ""},
	} {
		synced = nil
		rep := durable(root, c.q, serveOp(root, c.q))
		if syscall.Errno(rep.Errno) != c.errno {
			t.Errorf("%s %s: errno %v, want %v", c.q.Op, c.q.Path, syscall.Errno(rep.Errno), c.errno)
		}
		if got := strings.Join(synced, " "); got != c.want {
			t.Errorf("%s %s: synced %q, want %q", c.q.Op, c.q.Path, got, c.want)
		}
	}
	failSync = errors.New("disk gone")
	synced = nil
	if rep := durable(root, Request{Op: OpMkdir, Path: "x"}, serveOp(root, Request{Op: OpMkdir, Path: "x", Mode: 0o755})); syscall.Errno(rep.Errno) != syscall.EIO || !slices.Contains(synced, "x") {
		t.Fatalf("a failed fsync: errno %v, synced %v", syscall.Errno(rep.Errno), synced)
	}
}
