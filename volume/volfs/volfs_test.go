package volfs

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// mountPair serves dir as a primary over HTTP and mounts it twice, as two
// other nodes would.
func mountPair(t *testing.T) (primary, b, c string, cl *Client) {
	t.Helper()
	primary, b, c, cl, _ = mountPairFor(t, 0)
	return primary, b, c, cl
}

// mountPairFor is mountPair with MountOptions.CacheFor; ops counts the
// metadata operations the primary answered, by Request.Op.
func mountPairFor(t *testing.T, cacheFor time.Duration) (primary, b, c string, cl *Client, ops *opCounter) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("FUSE mounts need root")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
	primary = t.TempDir()
	ops = &opCounter{n: map[string]int{}}
	h := http.StripPrefix("/v", Handler(func(context.Context) (string, error) { return primary, nil }))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/op") {
			body, _ := io.ReadAll(r.Body)
			if q, err := DecodeRequest(bytes.NewReader(body)); err == nil {
				ops.add(q.Op)
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	cl = &Client{HC: srv.Client(), Base: srv.URL + "/v"}
	mount := func() string {
		dir := t.TempDir()
		s, err := Mount(dir, cl, MountOptions{CacheDir: t.TempDir(), Name: "test", CacheFor: cacheFor})
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
	return primary, mount(), mount(), cl, ops
}

type opCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (o *opCounter) add(op string) {
	o.mu.Lock()
	o.n[op]++
	o.mu.Unlock()
}

// get is how many of each op the primary answered.
func (o *opCounter) get(op string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.n[op]
}

func TestFUSECloseToOpen(t *testing.T) {
	primary, b, c, _ := mountPair(t)
	// Written and closed on b: on the primary, and seen by an open on c.
	if err := os.WriteFile(filepath.Join(b, "f"), []byte("one"), 0o640); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(primary, "f")); string(got) != "one" {
		t.Fatalf("primary has %q", got)
	}
	if fi, err := os.Stat(filepath.Join(primary, "f")); err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("primary mode: %v %v", fi.Mode(), err)
	}
	if got, err := os.ReadFile(filepath.Join(c, "f")); err != nil || string(got) != "one" {
		t.Fatalf("c reads %q, %v", got, err)
	}
	// Rewritten longer then shorter on c: b's next open sees each.
	for _, want := range []string{"a longer content", "s"} {
		if err := os.WriteFile(filepath.Join(c, "f"), []byte(want), 0o600); err != nil {
			t.Fatal(err)
		}
		if got, err := os.ReadFile(filepath.Join(b, "f")); err != nil || string(got) != want {
			t.Fatalf("b reads %q, %v; want %q", got, err, want)
		}
	}
	// What an open file on b has read stays as it was until the file is
	// closed and opened again (ranges not read yet come from the primary
	// when read, as NFS's).
	f, err := os.Open(filepath.Join(b, "f"))
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := f.ReadAt(make([]byte, 16), 0); n != 1 {
		t.Fatalf("first read: %d bytes", n)
	}
	if err := os.WriteFile(filepath.Join(primary, "f"), []byte("changed"), 0o600); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	n, _ := f.ReadAt(buf, 0)
	f.Close()
	if string(buf[:n]) != "s" {
		t.Fatalf("open file changed under its reader: %q", buf[:n])
	}
	if got, _ := os.ReadFile(filepath.Join(b, "f")); string(got) != "changed" {
		t.Fatalf("reopen reads %q", got)
	}
	// Append and fsync.
	f, err = os.OpenFile(filepath.Join(c, "f"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("+more"); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(primary, "f")); string(got) != "changed+more" {
		t.Fatalf("after fsync the primary has %q", got)
	}
	f.Close()
}

func TestFUSEMetadata(t *testing.T) {
	primary, b, c, cl := mountPair(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(b, "d/e"), 0o750))
	must(os.WriteFile(filepath.Join(b, "d/e/x"), []byte("x"), 0o644))
	must(os.Symlink("e/x", filepath.Join(b, "d/l")))
	must(os.Rename(filepath.Join(b, "d/e/x"), filepath.Join(b, "d/y")))
	must(os.Link(filepath.Join(b, "d/y"), filepath.Join(b, "d/z")))
	must(os.Chmod(filepath.Join(b, "d/y"), 0o600))
	must(os.Truncate(filepath.Join(b, "d/z"), 0))

	ents, err := os.ReadDir(filepath.Join(c, "d"))
	must(err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	if strings.Join(names, ",") != "e,l,y,z" {
		t.Fatalf("c lists %v", names)
	}
	if tgt, err := os.Readlink(filepath.Join(c, "d/l")); err != nil || tgt != "e/x" {
		t.Fatalf("readlink: %q %v", tgt, err)
	}
	if fi, err := os.Stat(filepath.Join(primary, "d/y")); err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != 0 {
		t.Fatalf("primary d/y: %v %v", fi, err)
	}
	if fi, err := os.Stat(filepath.Join(primary, "d")); err != nil || fi.Mode().Perm() != 0o750 {
		t.Fatalf("primary d: %v %v", fi, err)
	}
	must(os.Remove(filepath.Join(c, "d/z")))
	must(os.Remove(filepath.Join(c, "d/e")))
	// b's kernel may still know the name for CacheFor; an open asks.
	if _, err := os.Open(filepath.Join(b, "d/z")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("removed on c, b opens: %v", err)
	}
	if err := os.Remove(filepath.Join(c, "d")); !errors.Is(err, syscall.ENOTEMPTY) {
		t.Fatalf("rmdir of a full directory: %v", err)
	}
	// The kernel of the mounting node resolves symlinks (in the pod's
	// own root); the primary itself never follows one out of the volume.
	must(os.Symlink("/etc/passwd", filepath.Join(b, "out")))
	must(os.Symlink("../../../../../../etc", filepath.Join(b, "up")))
	for _, p := range []string{"out", "up/passwd"} {
		if _, err := cl.Get(context.Background(), p, io.Discard); err == nil {
			t.Fatalf("the primary followed %s out of the volume", p)
		}
	}
	if _, err := cl.Op(context.Background(), Request{Op: OpSetattr, Path: "up/passwd", Set: &SetAttr{Size: new(int64)}}); err == nil {
		t.Fatal("setattr through a symlink out of the volume")
	}
	// Temporary files of write-backs are not listed.
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	must(os.WriteFile(filepath.Join(b, "big"), big, 0o644))
	got, err := os.ReadFile(filepath.Join(c, "big"))
	must(err)
	if !bytes.Equal(got, big) {
		t.Fatalf("big file: %d bytes back of %d", len(got), len(big))
	}
}

func TestCheckPath(t *testing.T) {
	for p, ok := range map[string]bool{
		"": true, "a": true, "a/b": true, ".a": true, "a..b": true,
		"/a": false, "a/": false, "a//b": false, "./a": false, "a/..": false, "..": false, "a\x00": false,
		strings.Repeat("x", 256): false,
	} {
		if err := CheckPath(p); (err == nil) != ok {
			t.Errorf("CheckPath(%q) = %v", p, err)
		}
	}
}

func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		`{"op":"stat","path":""}`,
		`{"op":"rename","path":"a","to":"b/c","noReplace":true}`,
		`{"op":"setattr","path":"a","set":{"mode":420,"size":3}}`,
		`{"op":"symlink","path":"l","target":"../../x"}`,
		`{"op":"link","path":"a","to":"../b"}`,
		`{"op":"mkdir","path":"","mode":493}`,
		`{"op":"nope"}`, `[]`, `{`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		q, err := DecodeRequest(bytes.NewReader(b))
		if err != nil {
			return
		}
		if CheckPath(q.Path) != nil {
			t.Fatalf("accepted path %q", q.Path)
		}
		if (q.Op == OpRename || q.Op == OpLink) && (q.To == "" || CheckPath(q.To) != nil) {
			t.Fatalf("accepted to %q", q.To)
		}
		if q.Op == OpSetattr && (q.Set == nil || q.Set.Size != nil && *q.Set.Size < 0) {
			t.Fatalf("accepted setattr %+v", q.Set)
		}
	})
}
