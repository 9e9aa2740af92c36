package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestVolumeExportImport drives kra volume export and import as a user
// would: a volume filled by a container, exported to a directory (the
// drive) encrypted with a key file, changed a little and exported again
// (only the changed chunks are written), imported into a new volume and
// read back from a container; a wrong key, another tenant and a running
// container are refused with clear errors.
func TestVolumeExportImport(t *testing.T) {
	k := newKraUp(t)
	tmp := t.TempDir()
	drive, keyFile := filepath.Join(tmp, "drive"), filepath.Join(tmp, "volume.key")
	if err := os.WriteFile(keyFile, []byte("0123456789abcdef0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	k.mustDocker("volume", "create", "data")
	k.mustDocker("run", "--rm", "-v", "data:/data", "busybox", "sh", "-c",
		`set -e; mkdir -p /data/sub/deep /data/empty; dd if=/dev/urandom of=/data/big bs=1024 count=6144 2>/dev/null;
		 dd if=/dev/urandom of=/data/sub/deep/blob bs=1024 count=300 2>/dev/null; echo hello > /data/sub/a.txt;
		 chmod 600 /data/sub/a.txt; chmod 1777 /data/empty; ln -s sub/a.txt /data/link; : > /data/zero`)
	// What a container sees of a volume: every path with its type, mode,
	// size and mtime, and every file's checksum.
	listing := func(vol string) string {
		t.Helper()
		return k.mustDocker("run", "--rm", "-v", vol+":/data", "busybox", "sh", "-c",
			`cd /data && find . | sort | while read -r p; do stat -c '%n %F %a %s %Y %u' "$p"; done && find . -type f | sort | xargs md5sum`)
	}

	written := regexp.MustCompile(`(\d+) new chunks written`)
	export := func() int {
		t.Helper()
		out := k.must(tmp, "volume", "export", "data", drive, "--key-file", keyFile)
		m := written.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("kra volume export said: %s", out)
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	first := export()
	if first < 100 {
		t.Errorf("the first export wrote %d chunks of a 6 MiB volume", first)
	}
	// A little change in the middle of the big file, and a new small file.
	k.mustDocker("run", "--rm", "-v", "data:/data", "busybox", "sh", "-c",
		`printf 'changed!' | dd of=/data/big bs=1 seek=3000000 conv=notrunc 2>/dev/null; echo new > /data/sub/new.txt`)
	if second := export(); second < 1 || second > 3 {
		t.Errorf("the second export, after an 8-byte change and a 4-byte file, wrote %d chunks", second)
	}
	want := listing("data")
	if !strings.Contains(want, "./sub/new.txt") || !strings.Contains(want, "./link symbolic link") {
		t.Fatalf("the volume's listing lacks files: %s", want)
	}

	// Import into a new volume and read it back.
	k.mustDocker("volume", "create", "copy")
	out := k.must(tmp, "volume", "import", drive, "copy", "--key-file", keyFile)
	if !strings.Contains(out, "imported") {
		t.Errorf("kra volume import said: %s", out)
	}
	if got := listing("copy"); got != want {
		t.Errorf("the imported volume differs:\n%s\nwant:\n%s", got, want)
	}
	// Importing again sends no chunk.
	if out := k.must(tmp, "volume", "import", drive, "copy", "--key-file", keyFile); !strings.Contains(out, " 0 chunks sent") {
		t.Errorf("a second import of the same export: %s", out)
	}

	// A wrong key.
	bad := filepath.Join(tmp, "bad.key")
	os.WriteFile(bad, []byte("not the key that made it"), 0o600)
	if out, err := k.run(tmp, "volume", "import", drive, "copy", "--key-file", bad); err == nil || !strings.Contains(out, "wrong key") {
		t.Errorf("import with a wrong key: %v %s", err, out)
	}
	// A volume that does not exist.
	if out, err := k.run(tmp, "volume", "export", "nosuch", filepath.Join(tmp, "d2"), "--key-file", keyFile); err == nil || !strings.Contains(out, "no such volume: nosuch") {
		t.Errorf("export of a volume that does not exist: %v %s", err, out)
	}
	if _, err := os.Stat(filepath.Join(tmp, "d2", "macro-delta.json")); err == nil {
		t.Error("a failed export left a store behind")
	}
	// The drive holds nothing in the clear: no file's content, no name.
	filepath.WalkDir(drive, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := os.ReadFile(p)
		for _, clear := range []string{"hello\n", "a.txt", "new.txt", "blob"} {
			if strings.Contains(string(b), clear) || strings.Contains(p, clear) {
				t.Errorf("%s holds %q in the clear", p, clear)
			}
		}
		return nil
	})

	// Another tenant sees no volume of alice's, either way.
	k.mustAdmin("tenant", "create", "bob")
	bobToken := strings.TrimSpace(k.mustAdmin("token", "create", "--tenant", "bob"))
	bob := &kraUp{tenantCloud: k.tenantCloud, kra: k.kra}
	for _, e := range k.env {
		if strings.HasPrefix(e, "KR_ACCESS_TOKEN=") {
			e = "KR_ACCESS_TOKEN=" + bobToken
		}
		bob.env = append(bob.env, e)
	}
	if out, err := bob.run(tmp, "volume", "export", "data", filepath.Join(tmp, "bobdrive"), "--key-file", keyFile); err == nil || !strings.Contains(out, "no such volume: data") {
		t.Errorf("bob exports alice's volume: %v %s", err, out)
	}
	if out, err := bob.run(tmp, "volume", "import", drive, "copy", "--key-file", keyFile); err == nil || !strings.Contains(out, "no such volume: copy") {
		t.Errorf("bob imports into alice's volume: %v %s", err, out)
	}

	// A running container that mounts the volume: 409, and nothing changes.
	k.mustDocker("run", "-d", "--name", "user", "-v", "copy:/data", "busybox", "sleep", "1000")
	t.Cleanup(func() { k.docker("rm", "-f", "user") })
	if out, err := k.run(tmp, "volume", "import", drive, "copy", "--key-file", keyFile); err == nil || !strings.Contains(out, "in use by running containers [user]") {
		t.Errorf("import into a volume in use: %v %s", err, out)
	}
	k.mustDocker("rm", "-f", "user")
	if got := listing("copy"); got != want {
		t.Errorf("the volume changed after a refused import:\n%s", got)
	}
}
