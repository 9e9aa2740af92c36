package image

import (
	"errors"
	"testing"
)

// Manifests are tenant input: any body either parses or is
// ErrManifestInvalid, and never panics.
func FuzzParseManifest(f *testing.F) {
	for _, seed := range []string{
		`{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":1,"digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000"},"layers":[]}`,
		`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1,"digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","platform":{"os":"linux","architecture":"amd64"}}]}`,
		`{"schemaVersion":1}`, `{`, `null`, `[]`,
		`{"schemaVersion":2,"config":{"digest":"sha256:../../etc"}}`,
	} {
		f.Add("", []byte(seed))
		f.Add("application/vnd.oci.image.index.v1+json", []byte(seed))
	}
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		p, err := parseManifest(contentType, body)
		if err != nil {
			if !errors.Is(err, ErrManifestInvalid) {
				t.Fatalf("error %v is not ErrManifestInvalid", err)
			}
			return
		}
		blobs, manifests := p.refs()
		for _, d := range append(blobs, manifests...) {
			if !ValidDigest(d) {
				t.Fatalf("parsed manifest refers to %q", d)
			}
		}
	})
}

// Registry repositories map to the tenant's familiar names.
func TestRepoFamiliar(t *testing.T) {
	for repo, want := range map[string]string{
		"foo":              "foo",
		"library/foo":      "foo",
		"foo/bar":          "foo/bar",
		"a/b/c":            "a/b/c",
		"example.com/team": "example.com/team",
	} {
		if got, err := repoFamiliar(repo); err != nil || got != want {
			t.Errorf("repoFamiliar(%q) = %q %v, want %q", repo, got, err, want)
		}
	}
	for _, bad := range []string{"", "Foo", "../x", "a//b", "a:1", "-a", "a/"} {
		if _, err := repoFamiliar(bad); !errors.Is(err, ErrNameInvalid) {
			t.Errorf("repoFamiliar(%q) = %v", bad, err)
		}
	}
}

// References through this cloud's own registry name the tenant's images.
func TestLocalRegistryNames(t *testing.T) {
	s := &Store{local: []string{"macro.example:7443"}}
	v := s.Tenant("alice").WithRegistryHost("10.0.0.1:7443")
	for ref, want := range map[string]string{
		"macro.example:7443/foo:1":  "foo",
		"10.0.0.1:7443/library/foo": "foo",
		"10.0.0.1:7443/team/app@sha256:" + "0123456789012345678901234567890123456789012345678901234567890123": "team/app",
	} {
		if repo, ok := v.Local(ref); !ok || repo != want {
			t.Errorf("Local(%q) = %q %v, want %q", ref, repo, ok, want)
		}
	}
	for _, ref := range []string{"foo:1", "docker.io/foo", "10.0.0.2:7443/foo", "localhost:5000/foo"} {
		if _, ok := v.Local(ref); ok {
			t.Errorf("Local(%q) is local", ref)
		}
	}
	if _, ok := s.Tenant("alice").Local("10.0.0.1:7443/foo"); ok {
		t.Error("a request's host leaks into another view")
	}
}
