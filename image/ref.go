package image

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// dockerHub is how go-containerregistry names Docker Hub; Docker's
// familiar names leave it out ("busybox:latest").
const dockerHub = name.DefaultRegistry

var (
	fullIDRe = regexp.MustCompile(`^(sha256:)?[a-f0-9]{64}$`)
	hexRe    = regexp.MustCompile(`^(sha256:)?[a-f0-9]{1,64}$`)
)

// reference is a parsed image reference with Docker's normalisation.
type reference struct {
	registry string // index.docker.io, 127.0.0.1:5000
	repo     string // library/busybox
	tag      string // "" when digest is set and no tag was given
	digest   string // sha256:...
	insecure bool
	local    bool // named through this cloud's own registry (TenantView.parse)
}

// parseRef parses an image reference the way the docker daemon does:
// "busybox" is docker.io/library/busybox:latest.
func parseRef(s string) (reference, error) {
	if s == "" || strings.TrimSpace(s) != s {
		return reference{}, invalidRef(s)
	}
	r, err := name.ParseReference(s, name.WithDefaultTag(""))
	if err != nil {
		return reference{}, invalidRef(s)
	}
	ref := reference{registry: r.Context().RegistryStr(), repo: r.Context().RepositoryStr()}
	switch r := r.(type) {
	case name.Tag:
		ref.tag = r.TagStr()
		if ref.tag == "" {
			ref.tag = "latest"
		}
	case name.Digest:
		ref.digest = r.DigestStr()
	}
	return ref, nil
}

// invalidRefError is Docker's message for a reference it cannot parse.
type invalidRefError struct{ ref string }

func (e invalidRefError) Error() string   { return "invalid reference format" }
func (e invalidRefError) HTTPStatus() int { return 400 }

func invalidRef(s string) error {
	if strings.ToLower(s) != s {
		return badRefError("invalid reference format: repository name must be lowercase")
	}
	return invalidRefError{s}
}

type badRefError string

func (e badRefError) Error() string   { return string(e) }
func (e badRefError) HTTPStatus() int { return 400 }

// familiarName is the repository as Docker shows it: "busybox",
// "user/app", "127.0.0.1:5000/foo".
func (r reference) familiarName() string {
	if r.registry == dockerHub {
		return strings.TrimPrefix(r.repo, "library/")
	}
	return r.registry + "/" + r.repo
}

// String is the familiar form: "busybox:latest" or "busybox@sha256:...".
func (r reference) String() string {
	if r.digest != "" {
		return r.familiarName() + "@" + r.digest
	}
	return r.familiarName() + ":" + r.tag
}

// tagged is name:tag (familiar).
func (r reference) tagged() string { return r.familiarName() + ":" + r.tag }

// remote is the reference for go-containerregistry.
func (r reference) remote(insecure bool) (name.Reference, error) {
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	s := r.registry + "/" + r.repo
	if r.digest != "" {
		s += "@" + r.digest
	} else {
		s += ":" + r.tag
	}
	return name.ParseReference(s, opts...)
}

// normalizeTag parses a target of Tag: repo[:tag], the familiar string.
func normalizeTag(s string) (string, error) {
	r, err := parseRef(s)
	if err != nil {
		return "", err
	}
	if r.digest != "" {
		return "", badRefError(fmt.Sprintf("refusing to create a tag with a digest reference: %s", s))
	}
	return r.tagged(), nil
}

// shortID is the 12 hex characters Docker prints.
func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
