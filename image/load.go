package image

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Media types of layers as docker save writes them.
const (
	mediaTypeDockerTar = "application/vnd.docker.image.rootfs.diff.tar"
	maxJSONFile        = 32 << 20
)

// Load reads a docker-archive (docker save) or an OCI image-layout archive
// and stores its images as the tenant's. It returns what was loaded: tags
// ("busybox:latest") and, for untagged images, IDs ("sha256:...").
func (v *TenantView) Load(ctx context.Context, r io.Reader, progress func(ProgressEvent)) ([]string, error) {
	s := v.s
	if progress == nil {
		progress = func(ProgressEvent) {}
	}
	sp, err := s.spool(ctx, r)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(sp.dir)
	if _, ok := sp.files["manifest.json"]; ok {
		return s.loadDocker(ctx, v.name, sp, progress)
	}
	if _, ok := sp.files["index.json"]; ok {
		return s.loadOCI(ctx, v.name, sp, progress)
	}
	return nil, &RegistryError{Status: 400, Msg: "invalid tar file: no manifest.json or index.json found (is it a docker save or OCI image layout archive?)"}
}

// spool is an archive unpacked into numbered files, so that its entries can
// be read in any order without trusting its paths.
type spool struct {
	dir   string
	files map[string]string // clean name → file in dir
	links map[string]string // clean name → clean target name (symlinks)
}

func (s *Store) spool(ctx context.Context, r io.Reader) (*spool, error) {
	dir, err := os.MkdirTemp(filepath.Join(s.dir, "tmp"), "load-")
	if err != nil {
		return nil, err
	}
	sp := &spool{dir: dir, files: map[string]string{}, links: map[string]string{}}
	tr := tar.NewReader(r)
	n := 0
	for {
		if err := ctx.Err(); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			os.RemoveAll(dir)
			return nil, &RegistryError{Status: 400, Msg: fmt.Sprintf("invalid tar file: %v", err), err: err}
		}
		name := cleanRel(hdr.Name)
		switch hdr.Typeflag {
		case tar.TypeReg, tar.TypeRegA:
			n++
			p := filepath.Join(dir, fmt.Sprint(n))
			f, err := os.Create(p)
			if err != nil {
				os.RemoveAll(dir)
				return nil, err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				os.RemoveAll(dir)
				return nil, fmt.Errorf("read archive: %w", err)
			}
			sp.files[name] = p
			delete(sp.links, name)
		case tar.TypeSymlink:
			sp.links[name] = cleanRel(path.Join(path.Dir(name), hdr.Linkname))
		case tar.TypeLink:
			sp.links[name] = cleanRel(hdr.Linkname)
		}
	}
	return sp, nil
}

// path resolves an archive name to its spooled file.
func (sp *spool) path(name string) (string, error) {
	name = cleanRel(name)
	for range 16 {
		if p, ok := sp.files[name]; ok {
			return p, nil
		}
		t, ok := sp.links[name]
		if !ok {
			break
		}
		name = t
	}
	return "", fmt.Errorf("archive has no file %s", name)
}

func (sp *spool) readJSON(name string, v any) error {
	p, err := sp.path(name)
	if err != nil {
		return err
	}
	b, err := sp.read(p)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

func (sp *spool) read(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxJSONFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxJSONFile {
		return nil, errors.New("metadata file too large")
	}
	return b, nil
}

type dockerManifestEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
	Parent   string `json:",omitempty"`
}

func (s *Store) loadDocker(ctx context.Context, tenant string, sp *spool, progress func(ProgressEvent)) ([]string, error) {
	var entries []dockerManifestEntry
	if err := sp.readJSON("manifest.json", &entries); err != nil {
		return nil, &RegistryError{Status: 400, Msg: fmt.Sprintf("invalid docker archive: %v", err), err: err}
	}
	var loaded []string
	for _, e := range entries {
		cp, err := sp.path(e.Config)
		if err != nil {
			return loaded, err
		}
		rawConfig, err := sp.read(cp)
		if err != nil {
			return loaded, err
		}
		var tags []string
		for _, t := range e.RepoTags {
			tag, err := normalizeTag(t)
			if err != nil {
				return loaded, fmt.Errorf("invalid tag %q in archive: %w", t, err)
			}
			tags = append(tags, tag)
		}
		var layers []layerSrc
		for _, l := range e.Layers {
			p, err := sp.path(l)
			if err != nil {
				return loaded, err
			}
			layers = append(layers, layerSrc{path: p})
		}
		id, err := s.loadImage(ctx, tenant, rawConfig, nil, layers, tags, progress)
		if err != nil {
			return loaded, err
		}
		if len(tags) == 0 {
			loaded = append(loaded, id)
		}
		loaded = append(loaded, tags...)
	}
	return loaded, nil
}

// layerSrc is a layer file of an archive.
type layerSrc struct {
	path      string
	digest    string // known blob digest (OCI), or ""
	mediaType string
}

// loadImage ingests one image of an archive.
func (s *Store) loadImage(ctx context.Context, tenant string, rawConfig, rawManifest []byte, layers []layerSrc, tags []string, progress func(ProgressEvent)) (string, error) {
	cfg, err := v1.ParseConfigFile(bytes.NewReader(rawConfig))
	if err != nil {
		return "", &RegistryError{Status: 400, Msg: fmt.Sprintf("invalid image config: %v", err), err: err}
	}
	if len(cfg.RootFS.DiffIDs) != len(layers) {
		return "", &RegistryError{Status: 400, Msg: fmt.Sprintf("invalid archive: the config has %d layers, the manifest %d", len(cfg.RootFS.DiffIDs), len(layers))}
	}
	diffIDs := make([]string, len(layers))
	refs := make([]layerRef, len(layers))
	for i, d := range cfg.RootFS.DiffIDs {
		diffIDs[i] = d.String()
		refs[i].DiffID = diffIDs[i]
	}
	defer s.pin(diffIDs)()
	owned := s.tenantLayers(tenant)
	chain := chainIDs(refs)
	for i, l := range layers {
		short := shortID(chain[i])
		src := func(ctx context.Context) (string, string, string, error) {
			// The spooled file becomes the blob: move it (hardlink when
			// another entry of the archive shares it).
			f, err := s.tmpFile("blob-")
			if err != nil {
				return "", "", "", err
			}
			f.Close()
			os.Remove(f.Name())
			if err := os.Link(l.path, f.Name()); err != nil {
				return "", "", "", err
			}
			mt := l.mediaType
			if mt == "" {
				mt = mediaTypeDockerTar
			}
			return f.Name(), l.digest, mt, nil
		}
		m, existed, err := s.ensureLayer(ctx, diffIDs[i], owned[diffIDs[i]], src, func(cur, total int64) {
			progress(ProgressEvent{ID: short, Status: "Loading layer", Current: cur, Total: total})
		})
		if err != nil {
			return "", err
		}
		_ = existed
		refs[i] = layerRef{DiffID: m.DiffID, Blob: m.Blob, MediaType: m.MediaType, BlobSize: m.BlobSize}
	}
	id, _, err := s.commit(newImage{tenant: tenant, config: rawConfig, manifest: rawManifest, layers: refs, tags: tags, replica: isReplica(ctx)})
	return id, err
}

func (s *Store) loadOCI(ctx context.Context, tenant string, sp *spool, progress func(ProgressEvent)) ([]string, error) {
	var index v1.IndexManifest
	if err := sp.readJSON("index.json", &index); err != nil {
		return nil, &RegistryError{Status: 400, Msg: fmt.Sprintf("invalid OCI layout: %v", err), err: err}
	}
	var loaded []string
	for _, d := range index.Manifests {
		tags := refNames(d.Annotations)
		id, err := s.loadOCIDescriptor(ctx, tenant, sp, d, tags, progress, 0)
		if err != nil {
			return loaded, err
		}
		if len(tags) == 0 {
			loaded = append(loaded, id)
		}
		loaded = append(loaded, tags...)
	}
	return loaded, nil
}

// refNames reads the image name of an index.json entry: containerd's full
// name, or an OCI ref.name that is a full reference (a bare tag names no
// repository and is ignored).
func refNames(ann map[string]string) []string {
	for _, key := range []string{"io.containerd.image.name", "org.opencontainers.image.ref.name"} {
		v := ann[key]
		if v == "" || (key == "org.opencontainers.image.ref.name" && !strings.ContainsAny(v, "/:")) {
			continue
		}
		if t, err := normalizeTag(v); err == nil {
			return []string{t}
		}
	}
	return nil
}

func (s *Store) loadOCIDescriptor(ctx context.Context, tenant string, sp *spool, d v1.Descriptor, tags []string, progress func(ProgressEvent), depth int) (string, error) {
	if depth > 4 {
		return "", errors.New("invalid OCI layout: indexes nested too deep")
	}
	blob := func(h v1.Hash) (string, error) { return sp.path("blobs/" + h.Algorithm + "/" + h.Hex) }
	p, err := blob(d.Digest)
	if err != nil {
		return "", err
	}
	raw, err := sp.read(p)
	if err != nil {
		return "", err
	}
	if d.MediaType.IsIndex() {
		im, err := v1.ParseIndexManifest(bytes.NewReader(raw))
		if err != nil {
			return "", err
		}
		// The child for this node's platform, else the first whose
		// blobs are in the archive.
		var pick *v1.Descriptor
		for i, c := range im.Manifests {
			if _, err := blob(c.Digest); err != nil {
				continue
			}
			if c.Platform != nil && c.Platform.OS == s.platform.OS && c.Platform.Architecture == s.platform.Architecture {
				pick = &im.Manifests[i]
				break
			}
			if pick == nil && (c.Platform == nil || c.Platform.OS != "unknown") {
				pick = &im.Manifests[i]
			}
		}
		if pick == nil {
			return "", errors.New("invalid OCI layout: no image in the index")
		}
		return s.loadOCIDescriptor(ctx, tenant, sp, *pick, tags, progress, depth+1)
	}
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return "", err
	}
	if m.MediaType != "" && !m.MediaType.IsImage() && m.MediaType != types.OCIManifestSchema1 {
		return "", fmt.Errorf("unsupported manifest media type %s", m.MediaType)
	}
	cp, err := blob(m.Config.Digest)
	if err != nil {
		return "", err
	}
	rawConfig, err := sp.read(cp)
	if err != nil {
		return "", err
	}
	var layers []layerSrc
	for _, l := range m.Layers {
		p, err := blob(l.Digest)
		if err != nil {
			return "", err
		}
		layers = append(layers, layerSrc{path: p, digest: l.Digest.String(), mediaType: string(l.MediaType)})
	}
	return s.loadImage(ctx, tenant, rawConfig, raw, layers, tags, progress)
}
