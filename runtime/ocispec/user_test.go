package ocispec

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

func TestResolveUser(t *testing.T) {
	root := fixtureRootfs(t)
	cases := []struct {
		user      string
		uid, gid  uint32
		gids      []uint32
		home      string
		wantError string
	}{
		{user: "", uid: 0, gid: 0, gids: []uint32{0, 10}, home: "/root"},
		{user: "root", uid: 0, gid: 0, gids: []uint32{0, 10}, home: "/root"},
		{user: "0", uid: 0, gid: 0, gids: []uint32{0, 10}, home: "/root"},
		{user: "app", uid: 1000, gid: 1000, gids: []uint32{1000, 10, 999}, home: "/home/app"},
		{user: "1000", uid: 1000, gid: 1000, gids: []uint32{1000, 10, 999}, home: "/home/app"},
		{user: "www-data", uid: 33, gid: 33, gids: []uint32{33}, home: "/var/www"},
		// An explicit group replaces the primary one and drops the
		// supplementary groups.
		{user: "app:staff", uid: 1000, gid: 50, gids: []uint32{50}, home: "/home/app"},
		{user: "app:50", uid: 1000, gid: 50, gids: []uint32{50}, home: "/home/app"},
		{user: "app:4242", uid: 1000, gid: 4242, gids: []uint32{4242}, home: "/home/app"},
		{user: "1000:1000", uid: 1000, gid: 1000, gids: []uint32{1000}, home: "/home/app"},
		// A uid without an entry is allowed: gid 0, home /.
		{user: "4242", uid: 4242, gid: 0, gids: []uint32{0}, home: "/"},
		{user: "4242:4242", uid: 4242, gid: 4242, gids: []uint32{4242}, home: "/"},
		{user: "nohome", uid: 1001, gid: 1001, gids: []uint32{1001}, home: "/"},
		{user: ":staff", uid: 0, gid: 50, gids: []uint32{50}, home: "/root"},
		{user: "nobody", wantError: "unable to find user nobody: no matching entries in passwd file"},
		{user: "app:nogroup", wantError: "unable to find group nogroup: no matching entries in group file"},
		{user: "-1", wantError: "uids and gids must be in range 0-2147483647"},
		{user: "app:-5", wantError: "uids and gids must be in range 0-2147483647"},
		{user: "99999999999", wantError: "uids and gids must be in range 0-2147483647"},
	}
	for _, tc := range cases {
		t.Run(tc.user, func(t *testing.T) {
			uid, gid, gids, home, err := ResolveUser(root, tc.user)
			if tc.wantError != "" {
				if err == nil || err.Error() != tc.wantError {
					t.Fatalf("err = %v, want %q", err, tc.wantError)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if uid != tc.uid || gid != tc.gid || !slices.Equal(gids, tc.gids) || home != tc.home {
				t.Fatalf("got %d:%d %v %q, want %d:%d %v %q", uid, gid, gids, home, tc.uid, tc.gid, tc.gids, tc.home)
			}
		})
	}
}

func TestResolveUserNoFiles(t *testing.T) {
	root := t.TempDir()
	uid, gid, gids, home, err := ResolveUser(root, "")
	if err != nil || uid != 0 || gid != 0 || !slices.Equal(gids, []uint32{0}) || home != "/" {
		t.Fatalf("got %d:%d %v %q %v", uid, gid, gids, home, err)
	}
	if _, _, _, _, err := ResolveUser(root, "123:456"); err != nil {
		t.Fatal(err)
	}
	if _, _, _, _, err := ResolveUser(root, "app"); err == nil {
		t.Fatal("a name resolved without a passwd file")
	}
}

// writeFile writes data at root/name, making directories.
func writeFile(t *testing.T, root, name, data string) {
	t.Helper()
	p := filepath.Join(root, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// An image's symlinks must never make the host's (or another directory's)
// passwd file be read.
func TestResolveUserSymlinksStayInRoot(t *testing.T) {
	top := t.TempDir()
	root := filepath.Join(top, "rootfs")
	writeFile(t, top, "outside/etc/passwd", "evil:x:0:0::/:/bin/sh\n")
	writeFile(t, top, "outside/etc/group", "evil:x:0:\n")
	writeFile(t, root, "inside/passwd", "good:x:7:7::/good:/bin/sh\n")
	cases := []struct {
		name     string
		link     string // at rootfs/etc/passwd
		etcLink  string // at rootfs/etc instead
		wantGood bool
	}{
		{name: "absolute to host", link: filepath.Join(top, "outside/etc/passwd")},
		{name: "relative escape", link: "../../../../../../outside/etc/passwd"},
		{name: "etc dir escape", etcLink: "../outside/etc"},
		{name: "absolute etc dir", etcLink: filepath.Join(top, "outside/etc")},
		{name: "absolute inside", link: "/inside/passwd", wantGood: true},
		{name: "dotdot inside", link: "../../../inside/passwd", wantGood: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			os.RemoveAll(filepath.Join(root, "etc"))
			if tc.etcLink != "" {
				if err := os.Symlink(tc.etcLink, filepath.Join(root, "etc")); err != nil {
					t.Fatal(err)
				}
			} else {
				os.MkdirAll(filepath.Join(root, "etc"), 0o755)
				if err := os.Symlink(tc.link, filepath.Join(root, "etc/passwd")); err != nil {
					t.Fatal(err)
				}
			}
			for _, open := range []struct {
				name string
				f    func(string, string) ([]byte, error)
			}{
				{"openat2", readInRoot},
				{"fallback", func(root, p string) ([]byte, error) {
					f, err := openInRootFallback(root, p)
					if err != nil {
						if os.IsNotExist(err) {
							return nil, nil
						}
						return nil, err
					}
					defer f.Close()
					st, _ := f.Stat()
					b := make([]byte, st.Size())
					_, err = f.Read(b)
					return b, err
				}},
			} {
				data, err := open.f(root, "/etc/passwd")
				if err != nil {
					t.Fatalf("%s: %v", open.name, err)
				}
				if strings.Contains(string(data), "evil") {
					t.Fatalf("%s: read a passwd outside the rootfs", open.name)
				}
				if got := strings.Contains(string(data), "good"); got != tc.wantGood {
					t.Fatalf("%s: read %q", open.name, data)
				}
			}
			_, _, _, _, err := ResolveUser(root, "evil")
			if err == nil {
				t.Fatal("resolved a user from outside the rootfs")
			}
		})
	}
}

func TestResolveUserRefusesSpecialFiles(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	if err := syscall.Mkfifo(filepath.Join(root, "etc/passwd"), 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	// Opening a FIFO for reading would block forever.
	if _, _, _, _, err := ResolveUser(root, "app"); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("err = %v", err)
	}
	if _, err := openInRootFallback(root, "/etc/passwd"); err == nil {
		t.Fatal("fallback opened a FIFO")
	}
	os.Remove(filepath.Join(root, "etc/passwd"))
	os.Mkdir(filepath.Join(root, "etc/passwd"), 0o755)
	if _, _, _, _, err := ResolveUser(root, ""); err == nil {
		t.Fatal("read a directory as passwd")
	}
}

func TestSecureJoin(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "a/b"), 0o755)
	os.Symlink("/a", filepath.Join(root, "abs"))
	os.Symlink("../../..", filepath.Join(root, "a/up"))
	os.Symlink("loop2", filepath.Join(root, "loop1"))
	os.Symlink("loop1", filepath.Join(root, "loop2"))
	cases := map[string]string{
		"":                "",
		"/":               "",
		"a/b":             "a/b",
		"/../../a":        "a",
		"abs/b":           "a/b",
		"a/up/etc/passwd": "etc/passwd",
		"a/missing/../x":  "a/x", // the rest of a missing path is cleaned lexically
		"abs/../abs/./b/": "a/b",
	}
	for in, want := range cases {
		got, err := SecureJoin(root, in)
		if err != nil {
			t.Errorf("SecureJoin(%q): %v", in, err)
			continue
		}
		if got != filepath.Join(root, want) {
			t.Errorf("SecureJoin(%q) = %q, want %q", in, got, filepath.Join(root, want))
		}
	}
	if _, err := SecureJoin(root, "loop1"); err == nil {
		t.Error("symlink loop resolved")
	}
}

func FuzzResolveUser(f *testing.F) {
	passwd, _ := os.ReadFile("testdata/rootfs/etc/passwd")
	group, _ := os.ReadFile("testdata/rootfs/etc/group")
	f.Add("app", passwd, group)
	f.Add("1000:staff", passwd, group)
	f.Add("", []byte("root:x:0:0:root:/root:/bin/sh\n"), []byte("wheel:x:10:root,,x\n"))
	f.Add("x:y:z", []byte("x:::\n\n  \t\n:x:1:2:3:4:5:6:7\n"), []byte("::::\ny:x:-3:\n"))
	f.Add("2147483648", []byte{}, []byte(nil))
	f.Fuzz(func(t *testing.T, user string, passwd, group []byte) {
		uid, gid, gids, home, err := resolveUser(user, passwd, group)
		if err != nil {
			return
		}
		if uid > maxID || gid > maxID {
			t.Fatalf("id out of range: %d:%d", uid, gid)
		}
		if len(gids) == 0 || gids[0] != gid {
			t.Fatalf("additional gids %v do not start with %d", gids, gid)
		}
		if home == "" {
			t.Fatal("empty home")
		}
	})
}
