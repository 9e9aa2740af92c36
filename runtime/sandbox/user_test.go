package sandbox

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestResolveUser(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n# comment\napp:x:1000:1000::/home/app:/bin/sh\nbad:x:nope:1::/:/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(root, "etc/group"), []byte("root:x:0:\napp:x:1000:\nextra:x:2000:app\nwheel:x:10:root,app\n"), 0o644)
	for _, tc := range []struct {
		spec    string
		want    execUser
		wantErr bool
	}{
		{"", execUser{0, 0, []uint32{10}, "/root"}, false},
		{"root", execUser{0, 0, []uint32{10}, "/root"}, false},
		{"app", execUser{1000, 1000, []uint32{2000, 10}, "/home/app"}, false},
		{"1000", execUser{1000, 1000, []uint32{2000, 10}, "/home/app"}, false},
		{"app:extra", execUser{1000, 2000, []uint32{10}, "/home/app"}, false},
		{"1000:10", execUser{1000, 10, []uint32{2000}, "/home/app"}, false},
		{"55", execUser{55, 0, nil, "/"}, false},
		{"55:66", execUser{55, 66, nil, "/"}, false},
		{"nosuch", execUser{}, true},
		{"app:nosuch", execUser{}, true},
		{"bad", execUser{}, true},
	} {
		got, err := resolveUser(root, tc.spec)
		if (err != nil) != tc.wantErr {
			t.Errorf("%q: err %v", tc.spec, err)
			continue
		}
		if err == nil && (got.UID != tc.want.UID || got.GID != tc.want.GID || got.Home != tc.want.Home || !slices.Equal(got.Groups, tc.want.Groups)) {
			t.Errorf("%q: got %+v want %+v", tc.spec, got, tc.want)
		}
	}
}

// A tenant's /etc/passwd that is a symlink to a host path must resolve
// inside the rootfs, not on the host.
func TestResolveUserSymlinkStaysInRoot(t *testing.T) {
	host := t.TempDir()
	hostFile := filepath.Join(host, "passwd")
	os.WriteFile(hostFile, []byte("evil:x:7:7::/:/bin/sh\n"), 0o644)
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.Symlink(hostFile, filepath.Join(root, "etc/passwd"))
	if u, err := resolveUser(root, "evil"); err == nil {
		t.Fatalf("resolved host user: %+v", u)
	}
	os.Remove(filepath.Join(root, "etc/passwd"))
	os.Symlink("../../../../../../../../"+hostFile, filepath.Join(root, "etc/passwd"))
	if u, err := resolveUser(root, "evil"); err == nil {
		t.Fatalf("resolved host user through ..: %+v", u)
	}
}
