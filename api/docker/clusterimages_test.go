package docker

import (
	"testing"

	"github.com/macro-cloud/macro/image"
	"github.com/macro-cloud/macro/types"
)

var indexNamesImage = types.ClusterImage{
	ID:          "sha256:5f0c4b0f8e8a5b2d4e0a1c9b8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e",
	RepoTags:    []string{"busybox:latest", "foo/bar:1"},
	RepoDigests: []string{"busybox@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},
}

func TestIndexNames(t *testing.T) {
	names := indexNamesView(t)
	for _, tc := range []struct {
		ref  string
		want bool
	}{
		{"busybox", true},
		{"busybox:latest", true},
		{"docker.io/library/busybox", true},
		{"library/busybox:latest", true},
		{"busybox@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", true},
		{"foo/bar:1", true},
		{"docker.io/foo/bar:1", true},
		{"foo/bar", false},
		{"busybox:1", false},
		{"5f0c4b0f", true},
		{"sha256:5f0c4b0f8e8a5b2d4e0a1c9b8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e", true},
		{"5f0", false}, // too short for an ID
		{"other", false},
		{"", false},
		{"registry.example:7443/foo/bar:1", true}, // this cloud's registry
		{"elsewhere.example/foo/bar:1", false},
	} {
		fam, ok := names.Familiar(tc.ref)
		if got := indexNames(indexNamesImage, tc.ref, fam, ok); got != tc.want {
			t.Errorf("indexNames(%q) = %v, want %v", tc.ref, got, tc.want)
		}
	}
}

// FuzzIndexNames: any reference a tenant sends is matched against the
// index without a panic.
func FuzzIndexNames(f *testing.F) {
	for _, s := range []string{"busybox", "a/b:c", "x@sha256:1", "sha256:", ":", "/", "@", "docker.io/", "library/"} {
		f.Add(s)
	}
	names := indexNamesView(f)
	f.Fuzz(func(t *testing.T, ref string) {
		fam, ok := names.Familiar(ref)
		indexNames(indexNamesImage, ref, fam, ok)
	})
}

func indexNamesView(t testing.TB) *image.TenantView {
	st, err := image.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return st.Tenant("alice").WithRegistryHost("registry.example:7443")
}
