package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// PullOptions are the options of Pull.
type PullOptions struct {
	Auth     *authn.AuthConfig // nil: anonymous
	Platform *v1.Platform      // nil: the store's platform (linux/GOARCH)
	Progress func(ProgressEvent)
}

// pullJobs is how many layers are downloaded at once (dockerd's default).
const pullJobs = 3

// RegistryError is an error of a registry, with the status the Docker API
// answers it with.
type RegistryError struct {
	Status int
	Msg    string
	err    error
}

func (e *RegistryError) Error() string   { return e.Msg }
func (e *RegistryError) HTTPStatus() int { return e.Status }
func (e *RegistryError) Unwrap() error   { return e.err }
func (e *RegistryError) Is(target error) bool {
	return target == ErrNotFound && e.Status == http.StatusNotFound
}

// Pull fetches ref from its registry (Docker Hub by default), resolving a
// multi-platform index to opts.Platform, and stores it. Progress events
// come in the order dockerd sends them; the first one ("Pulling from ...")
// only after the manifest was found, so that an error before it can still
// be answered with an HTTP status. The image becomes the tenant's. A
// reference through this cloud's own registry is not pulled: it names
// the tenant's image, which is up to date or does not exist.
func (v *TenantView) Pull(ctx context.Context, ref string, opts PullOptions) (Image, error) {
	s := v.s
	progress := opts.Progress
	if progress == nil {
		progress = func(ProgressEvent) {}
	}
	var mu sync.Mutex
	emit := func(e ProgressEvent) {
		mu.Lock()
		defer mu.Unlock()
		progress(e)
	}
	parsed, err := v.parse(ref)
	if err != nil {
		return Image{}, err
	}
	if parsed.local {
		img, err := v.Lookup(ctx, ref)
		if err != nil {
			return Image{}, &RegistryError{Status: http.StatusNotFound, err: ErrNotFound, Msg: fmt.Sprintf("manifest for %s not found: manifest unknown: manifest unknown", ref)}
		}
		if img.Manifest != "" {
			progress(ProgressEvent{Status: "Digest: " + img.Manifest})
		}
		progress(ProgressEvent{Status: "Status: Image is up to date for " + ref})
		return img, nil
	}
	rref, err := parsed.remote(s.isInsecure(parsed.registry))
	if err != nil {
		return Image{}, invalidRef(ref)
	}
	platform := s.platform
	if opts.Platform != nil && opts.Platform.OS != "" {
		platform = *opts.Platform
	}
	auth := authn.Anonymous
	if a := opts.Auth; a != nil && (a.Username != "" || a.Password != "" || a.Auth != "" || a.IdentityToken != "" || a.RegistryToken != "") {
		auth = authn.FromConfig(*a)
	}
	ropts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuth(auth),
		remote.WithPlatform(platform),
		remote.WithUserAgent("macro"),
	}
	desc, err := remote.Get(rref, ropts...)
	if err != nil {
		return Image{}, pullError(err, parsed)
	}
	var (
		img      v1.Image
		rawIndex []byte
	)
	if desc.MediaType.IsIndex() {
		rawIndex = desc.Manifest
		idx, err := desc.ImageIndex()
		if err != nil {
			return Image{}, pullError(err, parsed)
		}
		img, err = imageForPlatform(idx, platform)
		if err != nil {
			return Image{}, pullError(err, parsed)
		}
	} else if desc.MediaType.IsSchema1() {
		return Image{}, &RegistryError{Status: 500, Msg: fmt.Sprintf("[DEPRECATION NOTICE] Docker Image Format v1 and Docker Image manifest version 2, schema 1 support is disabled by default and will be removed in an upcoming release. Suggest the author of %s to upgrade the image to the OCI Format or Docker Image manifest v2, schema 2.", parsed)}
	} else {
		img, err = desc.Image()
		if err != nil {
			return Image{}, pullError(err, parsed)
		}
	}
	rawManifest, err := img.RawManifest()
	if err != nil {
		return Image{}, pullError(err, parsed)
	}
	manifest, err := img.Manifest()
	if err != nil {
		return Image{}, pullError(err, parsed)
	}
	rawConfig, err := img.RawConfigFile()
	if err != nil {
		return Image{}, pullError(err, parsed)
	}
	if sum := sha256.Sum256(rawConfig); "sha256:"+hex.EncodeToString(sum[:]) != manifest.Config.Digest.String() {
		return Image{}, fmt.Errorf("pull %s: config digest mismatch", parsed)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return Image{}, pullError(err, parsed)
	}
	if len(cfg.RootFS.DiffIDs) != len(manifest.Layers) {
		return Image{}, fmt.Errorf("pull %s: the manifest has %d layers, the config %d", parsed, len(manifest.Layers), len(cfg.RootFS.DiffIDs))
	}

	tagOrDigest := parsed.tag
	if parsed.digest != "" {
		tagOrDigest = parsed.digest
	}
	emit(ProgressEvent{ID: tagOrDigest, Status: "Pulling from " + parsed.repo})

	diffIDs := make([]string, len(cfg.RootFS.DiffIDs))
	for i, d := range cfg.RootFS.DiffIDs {
		diffIDs[i] = d.String()
	}
	defer s.pin(diffIDs)()
	owned := s.tenantLayers(v.name)

	layers := make([]layerRef, len(manifest.Layers))
	var todo []int
	for i, l := range manifest.Layers {
		short := shortID(l.Digest.Hex)
		if m, ok := s.haveLayer(diffIDs[i]); ok && owned[diffIDs[i]] {
			layers[i] = layerRef{DiffID: m.DiffID, Blob: m.Blob, MediaType: m.MediaType, BlobSize: m.BlobSize}
			emit(ProgressEvent{ID: short, Status: "Already exists"})
			continue
		}
		emit(ProgressEvent{ID: short, Status: "Pulling fs layer"})
		todo = append(todo, i)
	}
	repo := rref.Context()
	sem := make(chan struct{}, pullJobs)
	errs := make([]error, len(manifest.Layers))
	var wg sync.WaitGroup
	for _, i := range todo {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				errs[i] = ctx.Err()
				return
			}
			defer func() { <-sem }()
			desc := manifest.Layers[i]
			short := shortID(desc.Digest.Hex)
			src := func(ctx context.Context) (string, string, string, error) {
				path, err := s.download(ctx, repo, desc, ropts, func(cur, total int64) {
					emit(ProgressEvent{ID: short, Status: "Downloading", Current: cur, Total: total})
				})
				if err != nil {
					return "", "", "", err
				}
				emit(ProgressEvent{ID: short, Status: "Verifying Checksum"})
				emit(ProgressEvent{ID: short, Status: "Download complete"})
				return path, desc.Digest.String(), string(desc.MediaType), nil
			}
			m, _, err := s.ensureLayer(ctx, diffIDs[i], owned[diffIDs[i]], src, func(cur, total int64) {
				emit(ProgressEvent{ID: short, Status: "Extracting", Current: cur, Total: total})
			})
			if err != nil {
				errs[i] = err
				return
			}
			layers[i] = layerRef{DiffID: m.DiffID, Blob: m.Blob, MediaType: m.MediaType, BlobSize: m.BlobSize}
			emit(ProgressEvent{ID: short, Status: "Pull complete"})
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return Image{}, pullError(err, parsed)
	}
	if err := ctx.Err(); err != nil {
		return Image{}, err
	}

	ni := newImage{tenant: v.name, config: rawConfig, manifest: rawManifest, index: rawIndex, layers: layers}
	if parsed.digest == "" {
		ni.tags = []string{parsed.tagged()}
	}
	ni.digests = []string{parsed.familiarName() + "@" + desc.Digest.String()}
	id, changed, err := s.commit(ni)
	if err != nil {
		return Image{}, err
	}
	emit(ProgressEvent{Status: "Digest: " + desc.Digest.String()})
	if changed {
		emit(ProgressEvent{Status: "Status: Downloaded newer image for " + parsed.String()})
	} else {
		emit(ProgressEvent{Status: "Status: Image is up to date for " + parsed.String()})
	}
	return v.Lookup(ctx, id)
}

// download fetches a layer blob into a temporary file, checking its digest.
func (s *Store) download(ctx context.Context, repo name.Repository, desc v1.Descriptor, ropts []remote.Option, report func(cur, total int64)) (string, error) {
	layer, err := remote.Layer(repo.Digest(desc.Digest.String()), ropts...)
	if err != nil {
		return "", err
	}
	rc, err := layer.Compressed()
	if err != nil {
		return "", err
	}
	defer rc.Close()
	f, err := s.tmpFile("pull-")
	if err != nil {
		return "", err
	}
	h := sha256.New()
	cr := &countingReader{r: rc, total: desc.Size, report: report, ctx: ctx}
	_, err = io.Copy(io.MultiWriter(f, h), cr)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != desc.Digest.String() {
			err = fmt.Errorf("filesystem layer verification failed for digest %s", desc.Digest)
		}
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// imageForPlatform picks the image of an index for platform, the way
// dockerd does (OS and architecture must match; a variant when asked).
func imageForPlatform(idx v1.ImageIndex, platform v1.Platform) (v1.Image, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var best *v1.Descriptor
	for i, d := range im.Manifests {
		p := d.Platform
		if p == nil {
			if d.MediaType.IsIndex() {
				child, err := idx.ImageIndex(d.Digest)
				if err != nil {
					return nil, err
				}
				if img, err := imageForPlatform(child, platform); err == nil {
					return img, nil
				}
			}
			continue
		}
		if p.OS != platform.OS || p.Architecture != platform.Architecture {
			continue
		}
		if platform.Variant != "" && p.Variant != "" && p.Variant != platform.Variant {
			continue
		}
		if best == nil || (platform.Variant != "" && p.Variant == platform.Variant) {
			best = &im.Manifests[i]
		}
	}
	if best == nil {
		return nil, &RegistryError{Status: http.StatusNotFound, Msg: fmt.Sprintf("no matching manifest for %s in the manifest list entries", platformString(platform))}
	}
	if best.MediaType.IsIndex() {
		child, err := idx.ImageIndex(best.Digest)
		if err != nil {
			return nil, err
		}
		return imageForPlatform(child, platform)
	}
	return idx.Image(best.Digest)
}

func platformString(p v1.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

func (s *Store) isInsecure(registry string) bool {
	for _, r := range s.insecure {
		if r == registry {
			return true
		}
	}
	return false
}

// pullError words an error of a pull as dockerd 20.10 does.
func pullError(err error, ref reference) error {
	var re *RegistryError
	if errors.As(err, &re) {
		return err
	}
	var te *transport.Error
	if errors.As(err, &te) {
		code, msg := "", ""
		if len(te.Errors) > 0 {
			code, msg = string(te.Errors[0].Code), te.Errors[0].Message
		}
		cause := strings.ToLower(strings.ReplaceAll(code, "_", " ")) + ": " + msg
		switch {
		case code == string(transport.DeniedErrorCode) || code == string(transport.UnauthorizedErrorCode) ||
			(code == "" && (te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden)):
			if code == "" {
				cause = "denied: requested access to the resource is denied"
			}
			return &RegistryError{Status: http.StatusNotFound, err: ErrNotFound, Msg: fmt.Sprintf("pull access denied for %s, repository does not exist or may require 'docker login': %s", ref.familiarName(), cause)}
		case code == string(transport.ManifestUnknownErrorCode) || (code == "" && te.StatusCode == http.StatusNotFound):
			if code == "" {
				cause = "manifest unknown: manifest unknown"
			}
			return &RegistryError{Status: http.StatusNotFound, err: ErrNotFound, Msg: fmt.Sprintf("manifest for %s not found: %s", ref, cause)}
		case code == string(transport.NameUnknownErrorCode):
			return &RegistryError{Status: http.StatusNotFound, err: ErrNotFound, Msg: fmt.Sprintf("repository %s not found: %s", ref.familiarName(), cause)}
		}
		return &RegistryError{Status: http.StatusInternalServerError, Msg: err.Error(), err: err}
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		// `Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused`
		return &RegistryError{Status: http.StatusInternalServerError, Msg: firstLine(lastAttempt(err.Error(), ue.Error())), err: err}
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	return &RegistryError{Status: http.StatusInternalServerError, Msg: firstLine(err.Error()), err: err}
}

// lastAttempt is the error of the last endpoint tried, as dockerd reports
// it: a registry that may be reached over plain HTTP (insecure, localhost,
// 127.0.0.0/8, private addresses) is tried over https, then http, and
// fails with both ("Get \"https://...\": ...; Get \"http://...\": ...").
func lastAttempt(all, first string) string {
	i := strings.LastIndex(all, `Get "http://`)
	if i < 0 || !strings.Contains(all[:i], `"https://`) {
		return first
	}
	return all[i:]
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// Login checks credentials against a registry's /v2/ endpoint, as `docker
// login` does. server is a registry host[:port] or URL; "" is Docker Hub.
func (s *Store) Login(ctx context.Context, server string, auth authn.AuthConfig) error {
	host := server
	if u, err := url.Parse(server); err == nil && u.Host != "" {
		host = u.Host
	}
	host = strings.TrimSuffix(host, "/")
	if host == "" || host == "docker.io" || host == "index.docker.io" || strings.HasSuffix(host, "index.docker.io/v1") {
		host = name.DefaultRegistry
	}
	var opts []name.Option
	if s.isInsecure(host) {
		opts = append(opts, name.Insecure)
	}
	reg, err := name.NewRegistry(host, opts...)
	if err != nil {
		return &RegistryError{Status: http.StatusBadRequest, Msg: fmt.Sprintf("invalid registry %q: %v", server, err)}
	}
	tr, err := transport.NewWithContext(ctx, reg, authn.FromConfig(auth), http.DefaultTransport, []string{reg.Scope(transport.PullScope)})
	if err != nil {
		var te *transport.Error
		if errors.As(err, &te) && (te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden) {
			return &RegistryError{Status: http.StatusUnauthorized, Msg: firstLine(err.Error()), err: err}
		}
		return &RegistryError{Status: http.StatusInternalServerError, Msg: firstLine(err.Error()), err: err}
	}
	u := reg.Scheme() + "://" + reg.RegistryStr() + "/v2/"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		var te *transport.Error
		if errors.As(err, &te) && (te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden) {
			return &RegistryError{Status: http.StatusUnauthorized, Msg: firstLine(err.Error()), err: err}
		}
		return &RegistryError{Status: http.StatusInternalServerError, Msg: firstLine(err.Error()), err: err}
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return &RegistryError{Status: http.StatusUnauthorized, Msg: fmt.Sprintf("login attempt to %s failed with status: %d %s", u, resp.StatusCode, http.StatusText(resp.StatusCode))}
	}
	return nil
}
