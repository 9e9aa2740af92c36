package image

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// tarEntry is an entry of a test tarball.
type tarEntry struct {
	name, link string
	typ        byte
	body       string
	mode       int64
	uid, gid   int
	major      int64
}

func makeTar(t testing.TB, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		mode := e.mode
		if mode == 0 {
			mode = 0o644
			if typ == tar.TypeDir {
				mode = 0o755
			}
		}
		hdr := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: typ, Mode: mode, Uid: e.uid, Gid: e.gid,
			ModTime: time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC), Devmajor: e.major, Format: tar.FormatPAX}
		if typ == tar.TypeReg {
			hdr.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// sandbox is a target directory with a sibling that must never change.
type sandbox struct {
	base, root, outside string
	before              string
}

func newSandbox(t testing.TB) *sandbox {
	base := t.TempDir()
	sb := &sandbox{base: base, root: filepath.Join(base, "root"), outside: filepath.Join(base, "outside")}
	for _, d := range []string{sb.root, sb.outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(sb.outside, "secret"), []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	sb.before = snapshot(t, base, sb.root)
	return sb
}

// snapshot describes every file under dir except skip: names, types,
// sizes, modes, contents.
func snapshot(t testing.TB, dir, skip string) string {
	var b strings.Builder
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		if p == skip {
			return filepath.SkipDir
		}
		b.WriteString(p + " " + fi.Mode().String())
		if fi.Mode().IsRegular() {
			data, _ := os.ReadFile(p)
			b.WriteString(" " + string(data))
		}
		b.WriteString("\n")
		return nil
	})
	return b.String()
}

// check fails the test when anything outside root changed or root holds a
// device node other than an overlay whiteout.
func (sb *sandbox) check(t testing.TB) {
	t.Helper()
	if after := snapshot(t, sb.base, sb.root); after != sb.before {
		t.Fatalf("extraction changed files outside the root:\nbefore:\n%s\nafter:\n%s", sb.before, after)
	}
	filepath.Walk(sb.root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		if fi.Mode()&os.ModeDevice != 0 {
			st := fi.Sys().(*syscall.Stat_t)
			if fi.Mode()&os.ModeCharDevice == 0 || st.Rdev != 0 {
				t.Fatalf("device node %s (%v, rdev %d) in the root", p, fi.Mode(), st.Rdev)
			}
		}
		return nil
	})
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (ownership, mknod, trusted xattrs)")
	}
}

func TestExtractMalicious(t *testing.T) {
	requireRoot(t)
	outsideAbs := func(sb *sandbox) string { return sb.outside }
	tests := []struct {
		name    string
		entries func(sb *sandbox) []tarEntry
		layer   bool
		wantErr bool
		verify  func(t *testing.T, sb *sandbox)
	}{
		{
			name:    "dotdot path stays inside",
			entries: func(*sandbox) []tarEntry { return []tarEntry{{name: "../../escape", body: "x"}} },
			verify:  wantFile("escape", "x"),
		},
		{
			name:    "absolute path is made relative",
			entries: func(*sandbox) []tarEntry { return []tarEntry{{name: "/abs/file", body: "y"}} },
			verify:  wantFile("abs/file", "y"),
		},
		{
			name: "relative symlink out then write through it",
			entries: func(*sandbox) []tarEntry {
				return []tarEntry{{name: "link", link: "../outside", typ: tar.TypeSymlink}, {name: "link/secret", body: "pwned"}}
			},
			wantErr: true,
		},
		{
			name: "absolute symlink out then write through it",
			entries: func(sb *sandbox) []tarEntry {
				return []tarEntry{{name: "link", link: outsideAbs(sb), typ: tar.TypeSymlink}, {name: "link/secret", body: "pwned"}}
			},
			wantErr: true,
		},
		{
			name: "absolute symlink resolves inside the root",
			entries: func(sb *sandbox) []tarEntry {
				return []tarEntry{{name: "etc", typ: tar.TypeDir}, {name: "link", link: "/etc", typ: tar.TypeSymlink}, {name: "link/passwd", body: "root"}}
			},
			verify: wantFile("etc/passwd", "root"),
		},
		{
			name: "symlink chain out",
			entries: func(*sandbox) []tarEntry {
				return []tarEntry{
					{name: "a", link: "b/c", typ: tar.TypeSymlink},
					{name: "b", typ: tar.TypeDir},
					{name: "b/c", link: "../../../..", typ: tar.TypeSymlink},
					{name: "a/outside/secret", body: "pwned"},
				}
			},
			// ".." stops at the root: the file lands inside it.
			verify: wantFile("outside/secret", "pwned"),
		},
		{
			name: "file replaces a symlink instead of writing through it",
			entries: func(sb *sandbox) []tarEntry {
				return []tarEntry{{name: "f", link: filepath.Join(sb.outside, "secret"), typ: tar.TypeSymlink}, {name: "f", body: "mine"}}
			},
			verify: wantFile("f", "mine"),
		},
		{
			name: "hardlink to /etc/passwd",
			entries: func(*sandbox) []tarEntry {
				return []tarEntry{{name: "pw", link: "/etc/passwd", typ: tar.TypeLink}}
			},
			wantErr: true,
		},
		{
			name: "hardlink with dotdot",
			entries: func(*sandbox) []tarEntry {
				return []tarEntry{{name: "pw", link: "../outside/secret", typ: tar.TypeLink}}
			},
			wantErr: true,
		},
		{
			name: "hardlink through a symlink out",
			entries: func(sb *sandbox) []tarEntry {
				return []tarEntry{{name: "l", link: sb.outside, typ: tar.TypeSymlink}, {name: "pw", link: "l/secret", typ: tar.TypeLink}}
			},
			wantErr: true,
		},
		{
			name: "hardlink to a symlink links the symlink",
			entries: func(sb *sandbox) []tarEntry {
				return []tarEntry{{name: "l", link: filepath.Join(sb.outside, "secret"), typ: tar.TypeSymlink}, {name: "h", link: "l", typ: tar.TypeLink}}
			},
			verify: func(t *testing.T, sb *sandbox) {
				fi, err := os.Lstat(filepath.Join(sb.root, "h"))
				if err != nil || fi.Mode()&os.ModeSymlink == 0 {
					t.Fatalf("h: %v %v", fi, err)
				}
			},
		},
		{
			name: "writing over a hardlink does not change its other name",
			entries: func(*sandbox) []tarEntry {
				return []tarEntry{{name: "a", body: "original"}, {name: "b", link: "a", typ: tar.TypeLink}, {name: "b", body: "changed"}}
			},
			verify: func(t *testing.T, sb *sandbox) {
				wantFile("a", "original")(t, sb)
				wantFile("b", "changed")(t, sb)
			},
		},
		{
			name: "device nodes are skipped, fifos kept",
			entries: func(*sandbox) []tarEntry {
				return []tarEntry{
					{name: "null", typ: tar.TypeChar, major: 1},
					{name: "sda", typ: tar.TypeBlock, major: 8},
					{name: "zero", typ: tar.TypeChar},
					{name: "fifo", typ: tar.TypeFifo},
				}
			},
			verify: func(t *testing.T, sb *sandbox) {
				for _, n := range []string{"null", "sda", "zero"} {
					if _, err := os.Lstat(filepath.Join(sb.root, n)); !os.IsNotExist(err) {
						t.Errorf("%s exists: %v", n, err)
					}
				}
				fi, err := os.Lstat(filepath.Join(sb.root, "fifo"))
				if err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
					t.Errorf("fifo: %v %v", fi, err)
				}
			},
		},
		{
			name: "setuid bit and ownership kept",
			entries: func(*sandbox) []tarEntry {
				return []tarEntry{{name: "bin/su", body: "#!", mode: 0o4755, uid: 1000, gid: 1001}}
			},
			verify: func(t *testing.T, sb *sandbox) {
				fi, err := os.Lstat(filepath.Join(sb.root, "bin/su"))
				if err != nil {
					t.Fatal(err)
				}
				st := fi.Sys().(*syscall.Stat_t)
				if fi.Mode()&os.ModeSetuid == 0 || fi.Mode().Perm() != 0o755 || st.Uid != 1000 || st.Gid != 1001 {
					t.Fatalf("got mode %v uid %d gid %d", fi.Mode(), st.Uid, st.Gid)
				}
			},
		},
		{
			name:  "whiteouts become overlay whiteouts",
			layer: true,
			entries: func(*sandbox) []tarEntry {
				return []tarEntry{
					{name: "etc", typ: tar.TypeDir},
					{name: "etc/.wh.passwd", body: ""},
					{name: "var/lib", typ: tar.TypeDir},
					{name: "var/lib/.wh..wh..opq", body: ""},
					{name: "var/lib/kept", body: "k"},
					{name: ".wh..wh.plnk", typ: tar.TypeDir},
				}
			},
			verify: func(t *testing.T, sb *sandbox) {
				fi, err := os.Lstat(filepath.Join(sb.root, "etc/passwd"))
				if err != nil || !isWhiteout(fi) {
					t.Fatalf("etc/passwd is no whiteout: %v %v", fi, err)
				}
				v := make([]byte, 4)
				n, err := unix.Lgetxattr(filepath.Join(sb.root, "var/lib"), opaqueXattr, v)
				if err != nil || string(v[:n]) != "y" {
					t.Fatalf("var/lib not opaque: %q %v", v[:n], err)
				}
				wantFile("var/lib/kept", "k")(t, sb)
				if _, err := os.Lstat(filepath.Join(sb.root, ".wh..wh.plnk")); !os.IsNotExist(err) {
					t.Fatalf("aufs metadata extracted: %v", err)
				}
			},
		},
		{
			name:  "whiteout through a symlink out",
			layer: true,
			entries: func(sb *sandbox) []tarEntry {
				return []tarEntry{{name: "l", link: sb.outside, typ: tar.TypeSymlink}, {name: "l/.wh.secret"}}
			},
			wantErr: true,
		},
		{
			name:  "opaque marker through a symlink out",
			layer: true,
			entries: func(sb *sandbox) []tarEntry {
				return []tarEntry{{name: "l", link: "../outside", typ: tar.TypeSymlink}, {name: "l/.wh..wh..opq"}}
			},
			wantErr: true,
		},
		{
			name:  "whiteout of dotdot is ignored",
			layer: true,
			entries: func(*sandbox) []tarEntry {
				return []tarEntry{{name: "d", typ: tar.TypeDir}, {name: "d/.wh.."}, {name: "d/.wh..."}}
			},
		},
		{
			name: "whiteout names are plain files outside layers",
			entries: func(*sandbox) []tarEntry {
				return []tarEntry{{name: ".wh.foo", body: "f"}}
			},
			verify: wantFile(".wh.foo", "f"),
		},
		{
			name: "trusted xattrs from the tarball are ignored",
			entries: func(*sandbox) []tarEntry {
				return []tarEntry{{name: "d", typ: tar.TypeDir}}
			},
		},
		{
			name: "directory replaces a symlink to outside",
			entries: func(sb *sandbox) []tarEntry {
				return []tarEntry{{name: "d", link: sb.outside, typ: tar.TypeSymlink}, {name: "d", typ: tar.TypeDir, mode: 0o700}, {name: "d/secret", body: "inside"}}
			},
			verify: wantFile("d/secret", "inside"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sb := newSandbox(t)
			data := makeTar(t, tt.entries(sb)...)
			_, err := extractTar(sb.root, "", bytes.NewReader(data), extractOptions{layer: tt.layer})
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			sb.check(t)
			if tt.verify != nil {
				tt.verify(t, sb)
			}
		})
	}
}

func TestExtractPAXXattrs(t *testing.T) {
	requireRoot(t)
	sb := newSandbox(t)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755, PAXRecords: map[string]string{
		"SCHILY.xattr." + opaqueXattr: "y",
		"SCHILY.xattr.user.note":      "hello",
	}})
	tw.Close()
	if _, err := extractTar(sb.root, "", &buf, extractOptions{layer: true}); err != nil {
		t.Fatal(err)
	}
	v := make([]byte, 8)
	if n, err := unix.Lgetxattr(filepath.Join(sb.root, "d"), opaqueXattr, v); err == nil {
		t.Fatalf("a tenant set %s=%q", opaqueXattr, v[:n])
	}
	// user.* xattrs are kept where the filesystem supports them.
	if n, err := unix.Lgetxattr(filepath.Join(sb.root, "d"), "user.note", v); err == nil && string(v[:n]) != "hello" {
		t.Fatalf("user.note = %q", v[:n])
	}
}

func TestExtractIntoBase(t *testing.T) {
	requireRoot(t)
	sb := newSandbox(t)
	os.MkdirAll(filepath.Join(sb.root, "run"), 0o755)
	os.Symlink("/run", filepath.Join(sb.root, "varrun"))
	data := makeTar(t, tarEntry{name: "x", body: "1"}, tarEntry{name: "up", link: "../../..", typ: tar.TypeSymlink}, tarEntry{name: "up/outside/secret", body: "pwned"})
	if err := ExtractInto(sb.root, "/varrun", bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	sb.check(t)
	wantFile("run/x", "1")(t, sb)
	// "up" resolves to the rootfs' root: up/outside/secret lands inside.
	wantFile("outside/secret", "pwned")(t, sb)
	if err := ExtractInto(sb.root, "/varrun/x", bytes.NewReader(data)); err == nil {
		t.Fatal("extracting into a file succeeded")
	}
}

func wantFile(rel, content string) func(t *testing.T, sb *sandbox) {
	return func(t *testing.T, sb *sandbox) {
		t.Helper()
		got, err := os.ReadFile(filepath.Join(sb.root, rel))
		if err != nil || string(got) != content {
			t.Fatalf("%s = %q, %v; want %q", rel, got, err, content)
		}
	}
}

// FuzzExtract feeds arbitrary tarballs to the extractor, as a layer and as
// docker cp input: nothing outside the target may change and no device
// node may appear. The seeds are the malicious cases above.
func FuzzExtract(f *testing.F) {
	if os.Geteuid() != 0 {
		f.Skip("needs root")
	}
	seeds := [][]tarEntry{
		{{name: "../../escape", body: "x"}},
		{{name: "/abs/file", body: "y"}},
		{{name: "link", link: "../outside", typ: tar.TypeSymlink}, {name: "link/secret", body: "pwned"}},
		{{name: "link", link: "/", typ: tar.TypeSymlink}, {name: "link/../outside/secret", body: "pwned"}},
		{{name: "a", link: "b/c", typ: tar.TypeSymlink}, {name: "b/c", link: "../../..", typ: tar.TypeSymlink}, {name: "a/outside/secret", body: "p"}},
		{{name: "pw", link: "../outside/secret", typ: tar.TypeLink}},
		{{name: "l", link: "..", typ: tar.TypeSymlink}, {name: "pw", link: "l/outside/secret", typ: tar.TypeLink}},
		{{name: "null", typ: tar.TypeChar, major: 1}, {name: "fifo", typ: tar.TypeFifo}},
		{{name: "etc/.wh.passwd"}, {name: "d/.wh..wh..opq"}, {name: "l", link: "..", typ: tar.TypeSymlink}, {name: "l/.wh.outside"}},
		{{name: "a", body: "1"}, {name: "b", link: "a", typ: tar.TypeLink}, {name: "b", body: "2"}},
		{{name: "d", link: "..", typ: tar.TypeSymlink}, {name: "d", typ: tar.TypeDir}, {name: "d/x", body: "z"}},
	}
	for _, s := range seeds {
		f.Add(makeTar(f, s...), true)
		f.Add(makeTar(f, s...), false)
	}
	f.Fuzz(func(t *testing.T, data []byte, layer bool) {
		if p := os.Getenv("FUZZ_TRACE"); p != "" {
			os.WriteFile(p, data, 0o644)
		}
		sb := newSandbox(t)
		extractTar(sb.root, "", bytes.NewReader(data), extractOptions{layer: layer})
		sb.check(t)
	})
}
