package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The registry's view of the store (the registry package serves it as the
// OCI distribution API).
//
// Names: a registry repository is a name in the tenant's namespace, the
// one `docker images` shows. Pushing HOST:PORT/foo/bar:1 makes the tenant's
// image foo/bar:1 (HOST:PORT/library/foo:1 is foo:1, as library/foo is foo
// on Docker Hub), so `docker run foo/bar:1` runs it, and so does
// `docker run HOST:PORT/foo/bar:1` (see TenantView.WithRegistryHost). The
// other way round, every tagged image of the tenant can be pulled from the
// registry under its familiar name (busybox:latest as busybox:latest).
//
// Only blobs and manifests the tenant pushed, mounted, or has through its
// own images exist for it; mounts across repositories work within the
// tenant and never across tenants.
//
// A manifest PUT by tag that is runnable on this node (an image for the
// node's platform, or an index with one) becomes a normal image of the
// tenant: its layers are extracted, then the image, its tag and the
// registry tag are committed in one write, so a failed push leaves no
// image. Anything else (other platforms, artifacts) is kept as pushed and
// served back, but is no image: its tag hides a Docker tag of that name.

// Errors of the registry view, told apart by the registry's error codes.
var (
	ErrBlobUnknown         = errors.New("blob unknown to registry")
	ErrManifestUnknown     = errors.New("manifest unknown")
	ErrManifestBlobUnknown = errors.New("manifest references a manifest or blob unknown to registry")
	ErrManifestInvalid     = errors.New("manifest invalid")
	ErrDigestInvalid       = errors.New("provided digest did not match uploaded content")
	ErrNameInvalid         = errors.New("invalid repository name")
	ErrNameUnknown         = errors.New("repository name not known to registry")
)

// maxManifestSize bounds a manifest body.
const maxManifestSize = 4 << 20

// registryGrace is how long blobs and manifests that nothing tagged
// refers to are kept (a push uploads its blobs before its manifest).
const registryGrace = 24 * time.Hour

var (
	repoNameRe = regexp.MustCompile(`^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$`)
	tagRe      = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)
	digestRe   = regexp.MustCompile(`^sha256:[a-f0-9]{64}$`)
)

// pushedManifest is a manifest a tenant put through the registry.
type pushedManifest struct {
	MediaType string
	Size      int64
	Refs      []string  // blobs and manifests it refers to
	Time      time.Time // when it was last put
}

// pushedTag is a registry tag: the manifest it names and, when that
// manifest was runnable here, the image it made. It stands only while the
// Docker tag of the same name still names that image (or, with no image,
// while there is no Docker tag of that name).
type pushedTag struct {
	Digest  string
	ImageID string `json:",omitempty"`
}

// ValidDigest says d is a sha256 digest in canonical form.
func ValidDigest(d string) bool { return digestRe.MatchString(d) }

// ValidRepository says name is a repository name of the registry API.
func ValidRepository(name string) bool {
	return len(name) <= 255 && repoNameRe.MatchString(name)
}

// repoFamiliar is the familiar name (as docker images shows it) of a
// registry repository of the tenant.
func repoFamiliar(repo string) (string, error) {
	if !ValidRepository(repo) {
		return "", fmt.Errorf("%w: %s", ErrNameInvalid, repo)
	}
	r, err := parseRef(repo)
	if err != nil || r.tag != "latest" || r.digest != "" {
		return "", fmt.Errorf("%w: %s", ErrNameInvalid, repo)
	}
	return r.familiarName(), nil
}

// registryBlobsLocked is every blob the tenant can read through the
// registry, with the ones its images hold. Callers hold s.mu.
func (s *Store) registryBlobsLocked(t *tenantIndex) map[string]bool {
	out := map[string]bool{}
	for d := range t.Blobs {
		out[d] = true
	}
	for d := range t.Manifests {
		out[d] = true
	}
	for id := range t.Images {
		rec := s.images[id]
		if rec == nil {
			continue
		}
		out[rec.ID] = true
		if rec.Manifest != "" {
			out[rec.Manifest] = true
		}
		for _, l := range rec.Layers {
			out[l.Blob] = true
		}
	}
	return out
}

// StatBlob is the size of a blob the tenant has.
func (v *TenantView) StatBlob(ctx context.Context, digest string) (int64, error) {
	f, err := v.OpenBlob(ctx, digest)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// OpenBlob opens a blob the tenant has.
func (v *TenantView) OpenBlob(ctx context.Context, digest string) (*os.File, error) {
	if !ValidDigest(digest) {
		return nil, fmt.Errorf("%w: %s", ErrBlobUnknown, digest)
	}
	s := v.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.registryBlobsLocked(s.tenantLocked(v.name))[digest] {
		return nil, fmt.Errorf("%w: %s", ErrBlobUnknown, digest)
	}
	f, err := os.Open(s.blobPath(digest))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrBlobUnknown, digest)
	}
	return f, err
}

// MountBlob gives the tenant's repositories a blob the tenant has (a
// cross-repository mount, which never crosses tenants). It says whether
// the tenant has it.
func (v *TenantView) MountBlob(ctx context.Context, digest string) (bool, error) {
	if !ValidDigest(digest) {
		return false, nil
	}
	s := v.s
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tenantLocked(v.name)
	if !s.registryBlobsLocked(t)[digest] || !s.hasBlob(digest) {
		return false, nil
	}
	t = s.tenantForWrite(v.name)
	t.Blobs[digest] = time.Now().UTC()
	return true, s.saveTenant(t)
}

// TempFile creates a file in the store's tmp directory (on the same
// filesystem as its blobs): uploads are written there and handed to
// PutBlob. Files left there are removed when the store opens.
func (s *Store) TempFile(prefix string) (*os.File, error) { return s.tmpFile(prefix) }

// PutBlob stores the file at path (in the store's tmp directory) as a
// blob of the tenant, if its content has the digest; the file is moved or
// removed. A blob the store already has is stored once.
func (v *TenantView) PutBlob(ctx context.Context, path, digest string) error {
	defer os.Remove(path)
	if !ValidDigest(digest) {
		return fmt.Errorf("%w: %s", ErrDigestInvalid, digest)
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	h := sha256.New()
	_, err = io.Copy(h, &countingReader{r: f, ctx: ctx})
	f.Close()
	if err != nil {
		return err
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != digest {
		return fmt.Errorf("%w: want %s, got %s", ErrDigestInvalid, digest, got)
	}
	s := v.s
	limit, err := s.quotaOf(v.name)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if fi, err := os.Stat(path); err == nil {
		if err := s.checkBlobQuotaLocked(s.tenantLocked(v.name), digest, fi.Size(), limit); err != nil {
			return err
		}
	}
	if !s.hasBlob(digest) {
		if err := os.Chmod(path, 0o644); err != nil {
			return err
		}
		if err := os.Rename(path, s.blobPath(digest)); err != nil {
			return err
		}
	}
	t := s.tenantForWrite(v.name)
	t.Blobs[digest] = time.Now().UTC()
	return s.saveTenant(t)
}

// parsedManifest is a manifest body understood.
type parsedManifest struct {
	mediaType types.MediaType
	image     *v1.Manifest      // an image manifest
	index     *v1.IndexManifest // an index
}

// refs are the digests a manifest refers to, whether or not they need to
// be here (non-distributable layers need not).
func (p parsedManifest) refs() (blobs, manifests []string) {
	if p.image != nil {
		blobs = append(blobs, p.image.Config.Digest.String())
		for _, l := range p.image.Layers {
			if l.MediaType.IsDistributable() {
				blobs = append(blobs, l.Digest.String())
			}
		}
	}
	if p.index != nil {
		for _, m := range p.index.Manifests {
			manifests = append(manifests, m.Digest.String())
		}
	}
	return blobs, manifests
}

// parseManifest parses a manifest body of the media type the client says
// it is (contentType, may be empty).
func parseManifest(contentType string, body []byte) (parsedManifest, error) {
	var head struct {
		SchemaVersion int             `json:"schemaVersion"`
		MediaType     types.MediaType `json:"mediaType"`
		Config        json.RawMessage `json:"config"`
		Manifests     json.RawMessage `json:"manifests"`
	}
	if err := json.Unmarshal(body, &head); err != nil {
		return parsedManifest{}, fmt.Errorf("%w: %v", ErrManifestInvalid, err)
	}
	ct := types.MediaType(strings.TrimSpace(strings.Split(contentType, ";")[0]))
	mt := head.MediaType
	switch {
	case mt == "" && ct != "" && ct != "application/json" && ct != "application/octet-stream":
		mt = ct
	case mt != "" && ct != "" && ct != mt && ct != "application/json" && ct != "application/octet-stream":
		return parsedManifest{}, fmt.Errorf("%w: the body is %s, the request says %s", ErrManifestInvalid, mt, ct)
	case mt == "" && head.Manifests != nil:
		mt = types.OCIImageIndex
	case mt == "":
		mt = types.OCIManifestSchema1
	}
	if head.SchemaVersion != 2 {
		return parsedManifest{}, fmt.Errorf("%w: schema version %d is not supported", ErrManifestInvalid, head.SchemaVersion)
	}
	p := parsedManifest{mediaType: mt}
	switch mt {
	case types.DockerManifestSchema2, types.OCIManifestSchema1:
		m, err := v1.ParseManifest(bytes.NewReader(body))
		if err != nil {
			return p, fmt.Errorf("%w: %v", ErrManifestInvalid, err)
		}
		if !ValidDigest(m.Config.Digest.String()) {
			return p, fmt.Errorf("%w: config digest %s", ErrManifestInvalid, m.Config.Digest)
		}
		for _, l := range m.Layers {
			if !ValidDigest(l.Digest.String()) {
				return p, fmt.Errorf("%w: layer digest %s", ErrManifestInvalid, l.Digest)
			}
		}
		p.image = m
	case types.DockerManifestList, types.OCIImageIndex:
		m, err := v1.ParseIndexManifest(bytes.NewReader(body))
		if err != nil {
			return p, fmt.Errorf("%w: %v", ErrManifestInvalid, err)
		}
		for _, c := range m.Manifests {
			if !ValidDigest(c.Digest.String()) {
				return p, fmt.Errorf("%w: manifest digest %s", ErrManifestInvalid, c.Digest)
			}
		}
		p.index = m
	default:
		return p, fmt.Errorf("%w: media type %s is not supported", ErrManifestInvalid, mt)
	}
	return p, nil
}

// PutManifest stores a manifest the tenant pushes to repo under ref (a tag
// or the manifest's digest) and returns its digest. See the comment at
// the top of this file for what becomes an image.
func (v *TenantView) PutManifest(ctx context.Context, repo, ref, contentType string, body []byte) (string, error) {
	fam, err := repoFamiliar(repo)
	if err != nil {
		return "", err
	}
	if len(body) > maxManifestSize {
		return "", fmt.Errorf("%w: larger than %d bytes", ErrManifestInvalid, maxManifestSize)
	}
	sum := sha256.Sum256(body)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	byDigest := strings.Contains(ref, ":")
	if byDigest && ref != digest {
		return "", fmt.Errorf("%w: the reference is %s, the manifest's digest %s", ErrDigestInvalid, ref, digest)
	}
	if !byDigest && !tagRe.MatchString(ref) {
		return "", fmt.Errorf("%w: invalid tag %q", ErrManifestInvalid, ref)
	}
	pm, err := parseManifest(contentType, body)
	if err != nil {
		return "", err
	}
	blobs, manifests := pm.refs()
	s := v.s
	s.mu.RLock()
	t := s.tenantLocked(v.name)
	have := s.registryBlobsLocked(t)
	var missing string
	for _, b := range blobs {
		if !have[b] || !s.hasBlob(b) {
			missing = b
			break
		}
	}
	if pm.image != nil && missing == "" {
		for _, d := range append([]v1.Descriptor{pm.image.Config}, pm.image.Layers...) {
			if !d.MediaType.IsDistributable() {
				continue
			}
			if st, err := os.Stat(s.blobPath(d.Digest.String())); err == nil && st.Size() != d.Size {
				s.mu.RUnlock()
				return "", fmt.Errorf("%w: %s has %d bytes, the manifest says %d", ErrManifestInvalid, d.Digest, st.Size(), d.Size)
			}
		}
	}
	for _, m := range manifests {
		if missing == "" && !v.hasManifestLocked(t, m) {
			missing = m
		}
	}
	s.mu.RUnlock()
	if missing != "" {
		return "", fmt.Errorf("%w: %s", ErrManifestBlobUnknown, missing)
	}

	// The image this manifest makes, when it runs here and is tagged.
	var ni *newImage
	if !byDigest {
		ni, err = v.runnable(ctx, pm, body, digest)
		if err != nil {
			return "", err
		}
	}
	key := fam + ":" + ref
	record := func(t *tenantIndex) {
		t.Manifests[digest] = pushedManifest{MediaType: string(pm.mediaType), Size: int64(len(body)), Refs: append(blobs, manifests...), Time: time.Now().UTC()}
		if byDigest {
			return
		}
		pt := pushedTag{Digest: digest}
		if ni != nil {
			pt.ImageID = "sha256:" + hex.EncodeToString(sha256Sum(ni.config))
		}
		t.Pushed[key] = pt
	}
	if ni != nil {
		// Held until the image is committed: an unpinned layer that no
		// image uses yet may be removed (see pin).
		diffIDs := make([]string, len(ni.layers))
		for i, l := range ni.layers {
			diffIDs[i] = l.DiffID
		}
		defer s.pin(diffIDs)()
		if err := v.ingestPushed(ctx, ni); err != nil {
			return "", err
		}
		ni.tags = []string{key}
		ni.digests = []string{fam + "@" + digest}
		ni.also = record
		if _, _, err := s.commit(*ni); err != nil {
			return "", err
		}
		return digest, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, _, err := s.writeBlob(digest, bytes.NewReader(body)); err != nil {
		return "", err
	}
	t = s.tenantForWrite(v.name)
	record(t)
	if !byDigest {
		// The name now stands for something that does not run here.
		delete(t.Tags, key)
		delete(t.TagTime, key)
	}
	if err := s.saveTenant(t); err != nil {
		s.reloadTenantLocked(v.name)
		return "", err
	}
	return digest, nil
}

func sha256Sum(b []byte) []byte {
	sum := sha256.Sum256(b)
	return sum[:]
}

// hasManifestLocked says the tenant has a manifest: pushed, or of one of
// its images.
func (v *TenantView) hasManifestLocked(t *tenantIndex, digest string) bool {
	if _, ok := t.Manifests[digest]; ok {
		return v.s.hasBlob(digest)
	}
	for id := range t.Images {
		if rec := v.s.images[id]; rec != nil && rec.Manifest == digest {
			return v.s.hasBlob(digest)
		}
	}
	return false
}

// readBlob reads a small blob (a manifest or config) of the store.
func (s *Store) readBlob(digest string, limit int64) ([]byte, error) {
	f, err := os.Open(s.blobPath(digest))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("blob %s is larger than %d bytes", digest, limit)
	}
	return b, nil
}

// runnable is the image a manifest makes on this node: an image manifest
// whose config is for the node's platform, or the child of an index that
// is. nil when there is none.
func (v *TenantView) runnable(ctx context.Context, pm parsedManifest, body []byte, digest string) (*newImage, error) {
	s := v.s
	var index []byte
	if pm.index != nil {
		var pick *v1.Descriptor
		for i, c := range pm.index.Manifests {
			p := c.Platform
			if !c.MediaType.IsImage() || p == nil || p.OS != s.platform.OS || p.Architecture != s.platform.Architecture {
				continue
			}
			if pick == nil || (s.platform.Variant != "" && p.Variant == s.platform.Variant) {
				pick = &pm.index.Manifests[i]
			}
		}
		if pick == nil {
			return nil, nil
		}
		child, err := s.readBlob(pick.Digest.String(), maxManifestSize)
		if err != nil {
			return nil, err
		}
		cp, err := parseManifest(string(pick.MediaType), child)
		if err != nil || cp.image == nil {
			return nil, fmt.Errorf("%w: child %s: %v", ErrManifestInvalid, pick.Digest, err)
		}
		index, pm, body = body, cp, child
	}
	m := pm.image
	if m == nil {
		return nil, nil
	}
	if m.Config.MediaType != types.DockerConfigJSON && m.Config.MediaType != types.OCIConfigJSON {
		return nil, nil // an artifact
	}
	rawConfig, err := s.readBlob(m.Config.Digest.String(), maxJSONFile)
	if err != nil {
		return nil, err
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(rawConfig))
	if err != nil {
		return nil, fmt.Errorf("%w: config: %v", ErrManifestInvalid, err)
	}
	if cfg.OS != s.platform.OS || cfg.Architecture != s.platform.Architecture {
		return nil, nil
	}
	var layers []v1.Descriptor
	for _, l := range m.Layers {
		if !l.MediaType.IsDistributable() {
			return nil, fmt.Errorf("%w: non-distributable layer %s", ErrManifestInvalid, l.Digest)
		}
		layers = append(layers, l)
	}
	if len(cfg.RootFS.DiffIDs) != len(layers) {
		return nil, fmt.Errorf("%w: the config has %d layers, the manifest %d", ErrManifestInvalid, len(cfg.RootFS.DiffIDs), len(layers))
	}
	ni := &newImage{tenant: v.name, config: rawConfig, manifest: body, index: index}
	for i, l := range layers {
		ni.layers = append(ni.layers, layerRef{DiffID: cfg.RootFS.DiffIDs[i].String(), Blob: l.Digest.String(), MediaType: string(l.MediaType), BlobSize: l.Size})
	}
	return ni, nil
}

// ingestPushed extracts the layers of a pushed image from the tenant's
// blobs (each once in the store; a layer the tenant has not got yet is
// checked against its blob even when another tenant has it).
func (v *TenantView) ingestPushed(ctx context.Context, ni *newImage) error {
	s := v.s
	diffIDs := make([]string, len(ni.layers))
	for i, l := range ni.layers {
		diffIDs[i] = l.DiffID
	}
	defer s.pin(diffIDs)()
	owned := s.tenantLayers(v.name)
	for _, l := range ni.layers {
		src := func(ctx context.Context) (string, string, string, error) {
			f, err := s.tmpFile("push-")
			if err != nil {
				return "", "", "", err
			}
			f.Close()
			os.Remove(f.Name())
			if err := os.Link(s.blobPath(l.Blob), f.Name()); err != nil {
				return "", "", "", fmt.Errorf("%w: %s", ErrManifestBlobUnknown, l.Blob)
			}
			return f.Name(), l.Blob, l.MediaType, nil
		}
		// A layer extracted from this very blob needs no second look.
		if m, ok := s.haveLayer(l.DiffID); ok && m.Blob == l.Blob {
			continue
		}
		if _, _, err := s.ensureLayer(ctx, l.DiffID, owned[l.DiffID], src, nil); err != nil {
			if errors.Is(err, context.Canceled) {
				return err
			}
			return fmt.Errorf("%w: %v", ErrManifestInvalid, err)
		}
	}
	return nil
}

// GetManifest returns a manifest of the tenant by tag or digest: what was
// pushed, or the manifest of a tagged image (made up from its record when
// it came without one, as docker load's images do).
func (v *TenantView) GetManifest(ctx context.Context, repo, ref string) (body []byte, mediaType, digest string, err error) {
	fam, err := repoFamiliar(repo)
	if err != nil {
		return nil, "", "", err
	}
	s := v.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	t := s.tenantLocked(v.name)
	unknown := fmt.Errorf("%w: %s:%s", ErrManifestUnknown, repo, ref)
	if strings.Contains(ref, ":") {
		if !ValidDigest(ref) {
			return nil, "", "", unknown
		}
		if v.hasManifestLocked(t, ref) {
			b, err := s.readBlob(ref, maxManifestSize)
			if err != nil {
				return nil, "", "", unknown
			}
			return b, manifestMediaType(b), ref, nil
		}
		for id := range t.Images {
			if rec := s.images[id]; rec != nil && rec.Manifest == "" {
				if b, mt, d, err := s.syntheticManifest(rec); err == nil && d == ref {
					return b, mt, d, nil
				}
			}
		}
		return nil, "", "", unknown
	}
	key := fam + ":" + ref
	id := t.Tags[key]
	if p, ok := t.Pushed[key]; ok && p.ImageID == id {
		b, err := s.readBlob(p.Digest, maxManifestSize)
		if err == nil {
			return b, manifestMediaType(b), p.Digest, nil
		}
	}
	rec := s.images[id]
	if rec == nil {
		return nil, "", "", unknown
	}
	return s.imageManifestLocked(rec)
}

// imageManifestLocked is the manifest of an image record: the one it came
// with when that names the blobs the store holds for it, else made up.
func (s *Store) imageManifestLocked(rec *record) ([]byte, string, string, error) {
	if rec.Manifest != "" {
		if b, err := s.readBlob(rec.Manifest, maxManifestSize); err == nil {
			if m, err := v1.ParseManifest(bytes.NewReader(b)); err == nil && m.Config.Digest.String() == rec.ID && len(m.Layers) == len(rec.Layers) {
				same := true
				for i, l := range m.Layers {
					same = same && l.Digest.String() == rec.Layers[i].Blob
				}
				if same {
					return b, manifestMediaType(b), rec.Manifest, nil
				}
			}
		}
	}
	return s.syntheticManifest(rec)
}

// syntheticManifest makes a manifest of an image record: Docker's schema 2
// unless a layer is OCI. It is deterministic, so its digest is stable.
func (s *Store) syntheticManifest(rec *record) ([]byte, string, string, error) {
	st, err := os.Stat(s.blobPath(rec.ID))
	if err != nil {
		return nil, "", "", err
	}
	oci := false
	for _, l := range rec.Layers {
		oci = oci || strings.HasPrefix(l.MediaType, "application/vnd.oci.")
	}
	m := v1.Manifest{SchemaVersion: 2, MediaType: types.DockerManifestSchema2}
	m.Config = v1.Descriptor{MediaType: types.DockerConfigJSON, Size: st.Size(), Digest: mustHash(rec.ID)}
	if oci {
		m.MediaType, m.Config.MediaType = types.OCIManifestSchema1, types.OCIConfigJSON
	}
	for _, l := range rec.Layers {
		mt := types.MediaType(l.MediaType)
		if mt == "" {
			mt = types.DockerLayer
		}
		size := l.BlobSize
		if fi, err := os.Stat(s.blobPath(l.Blob)); err == nil {
			size = fi.Size()
		} else {
			return nil, "", "", err
		}
		m.Layers = append(m.Layers, v1.Descriptor{MediaType: mt, Size: size, Digest: mustHash(l.Blob)})
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, "", "", err
	}
	return b, string(m.MediaType), "sha256:" + hex.EncodeToString(sha256Sum(b)), nil
}

func mustHash(d string) v1.Hash {
	h, err := v1.NewHash(d)
	if err != nil {
		return v1.Hash{Algorithm: "sha256"}
	}
	return h
}

// manifestMediaType reads the media type a manifest declares, or guesses
// it (an OCI manifest may leave it out).
func manifestMediaType(b []byte) string {
	var head struct {
		MediaType string          `json:"mediaType"`
		Manifests json.RawMessage `json:"manifests"`
	}
	json.Unmarshal(b, &head)
	switch {
	case head.MediaType != "":
		return head.MediaType
	case head.Manifests != nil:
		return string(types.OCIImageIndex)
	}
	return string(types.OCIManifestSchema1)
}

// Tags lists the tags of a repository of the tenant.
func (v *TenantView) Tags(ctx context.Context, repo string) ([]string, error) {
	fam, err := repoFamiliar(repo)
	if err != nil {
		return nil, err
	}
	s := v.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	t := s.tenantLocked(v.name)
	set := map[string]bool{}
	for key := range t.Tags {
		if tag, ok := strings.CutPrefix(key, fam+":"); ok && !strings.Contains(tag, "/") {
			set[tag] = true
		}
	}
	for key, p := range t.Pushed {
		if tag, ok := strings.CutPrefix(key, fam+":"); ok && p.ImageID == t.Tags[key] {
			set[tag] = true
		}
	}
	if len(set) == 0 {
		return nil, fmt.Errorf("%w: %s", ErrNameUnknown, repo)
	}
	out := make([]string, 0, len(set))
	for tag := range set {
		out = append(out, tag)
	}
	sort.Strings(out)
	return out, nil
}

// Repositories lists the tenant's repositories the registry can name.
func (v *TenantView) Repositories(ctx context.Context) []string {
	s := v.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	t := s.tenantLocked(v.name)
	set := map[string]bool{}
	add := func(key string) {
		name := key[:strings.LastIndex(key, ":")]
		if ValidRepository(name) {
			set[name] = true
		}
	}
	for key := range t.Tags {
		add(key)
	}
	for key, p := range t.Pushed {
		if p.ImageID == t.Tags[key] {
			add(key)
		}
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// CollectGarbage drops what tenants pushed that nothing tagged refers to
// any more (after a grace period for pushes in progress), and the blobs
// nothing refers to. It returns how many blobs went.
func (s *Store) CollectGarbage(ctx context.Context) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for _, t := range s.tenants {
		reach := map[string]bool{}
		var walk func(d string)
		walk = func(d string) {
			if reach[d] {
				return
			}
			reach[d] = true
			for _, r := range t.Manifests[d].Refs {
				walk(r)
			}
		}
		changed := false
		for key, p := range t.Pushed {
			if p.ImageID != t.Tags[key] {
				delete(t.Pushed, key) // the Docker tag moved on
				changed = true
				continue
			}
			walk(p.Digest)
		}
		for d, m := range t.Manifests {
			if !reach[d] && now.Sub(m.Time) > registryGrace {
				delete(t.Manifests, d)
				changed = true
			}
		}
		for d, when := range t.Blobs {
			if !reach[d] && now.Sub(when) > registryGrace {
				delete(t.Blobs, d)
				changed = true
			}
		}
		if changed {
			if err := s.saveTenant(t); err != nil {
				return 0, err
			}
		}
	}
	used := s.usedBlobsLocked()
	ents, err := os.ReadDir(s.blobPath("sha256:"))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range ents {
		// A blob written in the last hour may be an ingest's that is not
		// committed yet.
		if fi, err := e.Info(); err != nil || now.Sub(fi.ModTime()) < time.Hour {
			continue
		}
		if !used["sha256:"+e.Name()] {
			if err := os.Remove(s.blobPath("sha256:" + e.Name())); err == nil {
				n++
			}
		}
	}
	return n, nil
}

// Local says whether ref names an image through this cloud's own registry
// (see WithRegistryHost); repo is then its repository in the tenant's
// namespace, as the registry serves it ("HOST:PORT/foo" is "foo").
func (v *TenantView) Local(ref string) (repo string, ok bool) {
	r, err := v.parse(ref)
	if err != nil || !r.local {
		return "", false
	}
	return r.familiarName(), true
}
