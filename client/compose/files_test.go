package compose

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestScanHash: the hash follows names, modes, contents and link targets,
// not modification times; the tar holds what the hash covers.
func TestScanHash(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "conf")
	os.MkdirAll(filepath.Join(src, "sub"), 0o755)
	os.WriteFile(filepath.Join(src, "a.conf"), []byte("a=1\n"), 0o644)
	os.WriteFile(filepath.Join(src, "sub", "run.sh"), []byte("#!/bin/sh\n"), 0o755)
	os.Symlink("a.conf", filepath.Join(src, "link"))
	hash := func() string {
		t.Helper()
		u, err := scan(src)
		if err != nil {
			t.Fatal(err)
		}
		return u.Hash
	}
	h0 := hash()
	if h0 != hash() {
		t.Fatal("the hash of the same tree differs")
	}
	later := time.Now().Add(time.Hour)
	os.Chtimes(filepath.Join(src, "a.conf"), later, later)
	if hash() != h0 {
		t.Errorf("touching a file changed the hash")
	}
	for _, change := range []struct {
		name string
		do   func()
	}{
		{"contents", func() { os.WriteFile(filepath.Join(src, "a.conf"), []byte("a=2\n"), 0o644) }},
		{"mode", func() { os.Chmod(filepath.Join(src, "a.conf"), 0o600) }},
		{"link target", func() { os.Remove(filepath.Join(src, "link")); os.Symlink("sub", filepath.Join(src, "link")) }},
		{"new file", func() { os.WriteFile(filepath.Join(src, "sub", "b"), nil, 0o644) }},
	} {
		before := hash()
		change.do()
		if hash() == before {
			t.Errorf("changing the %s did not change the hash", change.name)
		}
	}

	u, err := scan(src)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := u.Tar(&buf); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	tr := tar.NewReader(&buf)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		if hdr.Uid != 0 || hdr.Gid != 0 {
			t.Errorf("%s is owned by %d:%d, want root", hdr.Name, hdr.Uid, hdr.Gid)
		}
		got[hdr.Name] = string(hdr.Typeflag) + " " + hdr.Linkname + " " + string(data)
	}
	want := map[string]string{
		"a.conf":     "0  a=2\n",
		"link":       "2 sub ",
		"sub/":       "5  ",
		"sub/b":      "0  ",
		"sub/run.sh": "0  #!/bin/sh\n",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("tar entry %s = %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("tar entries %v", got)
	}
}

// TestScanFile: a single file is uploaded under its own name; a fifo is
// refused by name.
func TestScanFile(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "nginx.conf")
	os.WriteFile(f, []byte("events {}\n"), 0o644)
	u, err := scan(f)
	if err != nil || u.Dir || u.Base != "nginx.conf" {
		t.Fatalf("scan of a file: %+v %v", u, err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Skip(err)
	}
	if _, err := scan(dir); err == nil || err.Error() != "fifo: only files, directories and symlinks can be uploaded (p---------)" {
		t.Errorf("scan of a directory with a fifo: %v", err)
	}
}
