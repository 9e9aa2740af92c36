package main

// The images `kra push` reads: a docker save archive (the local docker
// engine's, through GET /images/get, or a file), an OCI image layout
// directory, or an OCI archive (a tar of one). An archive is read in
// place: its tar is indexed once and each file is a section of it.

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"runtime"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/macro-cloud/macro/client"
)

// maxMetaFile bounds a JSON file of an archive (manifest.json, index.json,
// a config, a manifest).
const maxMetaFile = 16 << 20

// errBadArchive marks what is wrong with an archive or a layout.
var errBadArchive = errors.New("not a valid image archive")

func badArchive(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errBadArchive, fmt.Sprintf(format, a...))
}

// imageFS is the files of an archive or a layout.
type imageFS interface {
	// open opens a file by its slash-separated path; a missing one is
	// fs.ErrNotExist.
	open(name string) (io.ReadCloser, error)
}

// readFile reads a whole (small) file of fsys.
func readFile(fsys imageFS, name string) ([]byte, error) {
	rc, err := fsys.open(name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxMetaFile+1))
	if err != nil {
		return nil, badArchive("%s: %v", name, err)
	}
	if len(b) > maxMetaFile {
		return nil, badArchive("%s is larger than %d bytes", name, maxMetaFile)
	}
	return b, nil
}

// --- a tar read in place ---

// tarFS indexes a tar file: regular files by cleaned name, as sections of
// the file; symbolic and hard links within the archive resolved.
type tarFS struct {
	f     *os.File
	files map[string]tarEntry
}

type tarEntry struct {
	offset, size int64
	link         string // a link's target (cleaned), when this is a link
}

// openTar indexes the tar file at p.
func openTar(p string) (*tarFS, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	t, err := indexTar(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return t, nil
}

// indexTar reads the headers of the tar in f.
func indexTar(f *os.File) (*tarFS, error) {
	t := &tarFS{f: f, files: map[string]tarEntry{}}
	cr := &offsetReader{r: f, s: f}
	tr := tar.NewReader(cr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if len(t.files) == 0 {
				return nil, badArchive("not a tar file")
			}
			return nil, badArchive("a damaged tar file (%v)", err)
		}
		name := cleanName(h.Name)
		if name == "" {
			continue
		}
		switch h.Typeflag {
		case tar.TypeReg:
			// The reader is at the start of the entry's data.
			t.files[name] = tarEntry{offset: cr.n, size: h.Size}
		case tar.TypeSymlink:
			if path.IsAbs(h.Linkname) {
				continue
			}
			t.files[name] = tarEntry{link: cleanName(path.Join(path.Dir(name), h.Linkname))}
		case tar.TypeLink:
			t.files[name] = tarEntry{link: cleanName(h.Linkname)}
		}
	}
	if len(t.files) == 0 {
		return nil, badArchive("an empty tar file")
	}
	return t, nil
}

// cleanName is the archive path of a member, "" for one outside it.
func cleanName(n string) string {
	n = path.Clean("/" + strings.TrimPrefix(n, "./"))
	return strings.TrimPrefix(n, "/")
}

// offsetReader tells where in the tar file archive/tar is, which after
// Next is where the entry's data starts (it reads headers in whole blocks
// and nothing of the data ahead). It seeks, so that the data of entries
// is skipped, not read.
type offsetReader struct {
	r io.Reader
	s io.Seeker
	n int64
}

func (o *offsetReader) Read(b []byte) (int, error) {
	n, err := o.r.Read(b)
	o.n += int64(n)
	return n, err
}

func (o *offsetReader) Seek(off int64, whence int) (int64, error) {
	n, err := o.s.Seek(off, whence)
	if err == nil {
		o.n = n
	}
	return n, err
}

// section is a file of a tar: readable, seekable, sized; closing it does
// not close the tar.
type section struct{ *io.SectionReader }

func (section) Close() error { return nil }

func (t *tarFS) open(name string) (io.ReadCloser, error) {
	n := cleanName(name)
	for hops := 0; hops < 16; hops++ {
		e, ok := t.files[n]
		if !ok {
			return nil, fmt.Errorf("%s: %w", name, fs.ErrNotExist)
		}
		if e.link == "" {
			return section{io.NewSectionReader(t.f, e.offset, e.size)}, nil
		}
		n = e.link
	}
	return nil, badArchive("%s: too many links", name)
}

func (t *tarFS) Close() error { return t.f.Close() }

// --- a directory ---

// dirFS is an OCI layout directory; nothing outside it is opened.
type dirFS struct{ root *os.Root }

func (d dirFS) open(name string) (io.ReadCloser, error) {
	f, err := d.root.Open(cleanName(name))
	if err != nil {
		return nil, err
	}
	if st, err := f.Stat(); err == nil && !st.Mode().IsRegular() {
		f.Close()
		return nil, badArchive("%s is not a regular file", name)
	}
	return f, nil
}

// --- images ---

// srcImage is an image found in a source, with the names it has there.
type srcImage struct {
	names []string // as the source names it: "busybox:latest", "ghcr.io/a/b:1"
	img   client.PushImage
}

// readImages reads the images of a docker save archive or an OCI layout.
func readImages(fsys imageFS) ([]srcImage, error) {
	if b, err := readFile(fsys, "manifest.json"); err == nil {
		return readDockerArchive(fsys, b)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if b, err := readFile(fsys, "index.json"); err == nil {
		return readOCILayout(fsys, b)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return nil, badArchive("it has neither manifest.json (docker save) nor index.json (OCI layout)")
}

// dockerManifest is one entry of a docker save archive's manifest.json.
type dockerManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// parseDockerManifest parses manifest.json of a docker save archive.
func parseDockerManifest(b []byte) ([]dockerManifest, error) {
	var ms []dockerManifest
	if err := json.Unmarshal(b, &ms); err != nil {
		return nil, badArchive("manifest.json: %v", err)
	}
	if len(ms) == 0 {
		return nil, badArchive("manifest.json lists no image")
	}
	for i, m := range ms {
		if m.Config == "" {
			return nil, badArchive("manifest.json: image %d has no config", i)
		}
		for _, l := range m.Layers {
			if cleanName(l) == "" {
				return nil, badArchive("manifest.json: image %d has a layer with no path", i)
			}
		}
	}
	return ms, nil
}

// parseConfig parses an image config and checks it has a layer per
// layer of the image.
func parseConfig(b []byte, layers int) (*v1.ConfigFile, error) {
	cfg, err := v1.ParseConfigFile(bytes.NewReader(b))
	if err != nil {
		return nil, badArchive("image config: %v", err)
	}
	if len(cfg.RootFS.DiffIDs) != layers {
		return nil, badArchive("the image config lists %d layers, the manifest %d", len(cfg.RootFS.DiffIDs), layers)
	}
	for _, d := range cfg.RootFS.DiffIDs {
		if d.Algorithm != "sha256" || len(d.Hex) != 64 {
			return nil, badArchive("image config: layer digest %q", d)
		}
	}
	return cfg, nil
}

var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

func readDockerArchive(fsys imageFS, manifest []byte) ([]srcImage, error) {
	ms, err := parseDockerManifest(manifest)
	if err != nil {
		return nil, err
	}
	var out []srcImage
	for _, m := range ms {
		raw, err := readFile(fsys, m.Config)
		if err != nil {
			return nil, badArchive("the config of %v: %v", m.RepoTags, err)
		}
		cfg, err := parseConfig(raw, len(m.Layers))
		if err != nil {
			return nil, err
		}
		img := client.PushImage{Config: raw}
		for i, lp := range m.Layers {
			rc, err := fsys.open(lp)
			if err != nil {
				return nil, badArchive("layer %s: %v", lp, err)
			}
			head := make([]byte, 4)
			n, _ := io.ReadFull(rc, head)
			rc.Close()
			l := client.PushLayer{DiffID: cfg.RootFS.DiffIDs[i], Open: func() (io.ReadCloser, error) { return fsys.open(lp) }}
			switch {
			case bytes.HasPrefix(head[:n], gzipMagic):
				l.Blob, l.MediaType = true, types.DockerLayer
			case bytes.HasPrefix(head[:n], zstdMagic):
				l.Blob, l.MediaType = true, types.OCILayerZStd
			}
			img.Layers = append(img.Layers, l)
		}
		out = append(out, srcImage{names: m.RepoTags, img: img})
	}
	return out, nil
}

// blobPath is where an OCI layout keeps a blob.
func blobPath(d v1.Hash) (string, error) {
	if d.Algorithm != "sha256" || len(d.Hex) != 64 {
		return "", badArchive("digest %q", d)
	}
	return "blobs/sha256/" + d.Hex, nil
}

func readBlob(fsys imageFS, d v1.Hash) ([]byte, error) {
	p, err := blobPath(d)
	if err != nil {
		return nil, err
	}
	b, err := readFile(fsys, p)
	if err != nil {
		return nil, badArchive("blob %s: %v", d, err)
	}
	return b, nil
}

// Annotations that name an image of an OCI layout.
const (
	annotationRefName       = "org.opencontainers.image.ref.name"
	annotationContainerName = "io.containerd.image.name"
)

func readOCILayout(fsys imageFS, index []byte) ([]srcImage, error) {
	idx, err := v1.ParseIndexManifest(bytes.NewReader(index))
	if err != nil {
		return nil, badArchive("index.json: %v", err)
	}
	var out []srcImage
	for _, d := range idx.Manifests {
		var names []string
		for _, k := range []string{annotationContainerName, annotationRefName} {
			if n := d.Annotations[k]; n != "" {
				names = append(names, n)
			}
		}
		img, err := readOCIImage(fsys, d, 0)
		if err != nil {
			return nil, err
		}
		if img != nil {
			out = append(out, srcImage{names: names, img: *img})
		}
	}
	if len(out) == 0 {
		return nil, badArchive("index.json lists no image for linux/%s", runtime.GOARCH)
	}
	return out, nil
}

// readOCIImage reads the image d names: an image manifest, or the
// linux/GOARCH one of an index. nil for anything else.
func readOCIImage(fsys imageFS, d v1.Descriptor, depth int) (*client.PushImage, error) {
	if depth > 2 {
		return nil, badArchive("indexes nested too deep")
	}
	switch d.MediaType {
	case types.OCIImageIndex, types.DockerManifestList:
		b, err := readBlob(fsys, d.Digest)
		if err != nil {
			return nil, err
		}
		idx, err := v1.ParseIndexManifest(bytes.NewReader(b))
		if err != nil {
			return nil, badArchive("index %s: %v", d.Digest, err)
		}
		var pick *v1.Descriptor
		for i, c := range idx.Manifests {
			if c.Platform == nil && len(idx.Manifests) == 1 {
				pick = &idx.Manifests[i]
			}
			if c.Platform != nil && c.Platform.OS == "linux" && c.Platform.Architecture == runtime.GOARCH && pick == nil {
				pick = &idx.Manifests[i]
			}
		}
		if pick == nil {
			return nil, nil
		}
		return readOCIImage(fsys, *pick, depth+1)
	case types.OCIManifestSchema1, types.DockerManifestSchema2:
	default:
		return nil, nil
	}
	raw, err := readBlob(fsys, d.Digest)
	if err != nil {
		return nil, err
	}
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, badArchive("manifest %s: %v", d.Digest, err)
	}
	cfgRaw, err := readBlob(fsys, m.Config.Digest)
	if err != nil {
		return nil, err
	}
	cfg, err := parseConfig(cfgRaw, len(m.Layers))
	if err != nil {
		return nil, err
	}
	img := &client.PushImage{Config: cfgRaw, Manifest: raw, ManifestMediaType: d.MediaType}
	for i, l := range m.Layers {
		p, err := blobPath(l.Digest)
		if err != nil {
			return nil, err
		}
		img.Layers = append(img.Layers, client.PushLayer{
			DiffID: cfg.RootFS.DiffIDs[i], Blob: true, Digest: l.Digest, Size: l.Size, MediaType: l.MediaType,
			Open: func() (io.ReadCloser, error) { return fsys.open(p) },
		})
	}
	return img, nil
}

// --- names ---

// canonical is the full name of an image reference (index.docker.io/
// library/busybox:latest for busybox), "" when it is not one.
func canonical(ref string) string {
	r, err := name.ParseReference(ref)
	if err != nil {
		return ""
	}
	return r.Name()
}

// destination is where an image named ref goes in the tenant's registry:
// its repository without a registry host (and without Docker Hub's
// library/), and its tag.
func destination(ref string) (repo, tag string, err error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return "", "", fmt.Errorf("invalid image name %q", ref)
	}
	t, ok := r.(name.Tag)
	if !ok {
		return "", "", fmt.Errorf("%s: push a tag, not a digest", ref)
	}
	repo = t.Context().RepositoryStr()
	if t.Context().RegistryStr() == name.DefaultRegistry {
		repo = strings.TrimPrefix(repo, "library/")
	}
	return repo, t.TagStr(), nil
}

// pick finds the image named want among imgs. An archive or layout with
// one image that has no name, or only a tag for a name (skopeo's
// oci:DIR:TAG), pushes it under the name asked for; a name of an OCI
// layout that is only a tag matches want's tag.
func pick(imgs []srcImage, want string) (*srcImage, error) {
	cw := canonical(want)
	if cw == "" {
		return nil, fmt.Errorf("invalid image name %q", want)
	}
	for i, im := range imgs {
		for _, n := range im.names {
			if canonical(n) == cw {
				return &imgs[i], nil
			}
		}
	}
	if len(imgs) == 1 && !fullyNamed(imgs[0]) {
		return &imgs[0], nil
	}
	if _, tag, err := destination(want); err == nil {
		for i, im := range imgs {
			for _, n := range im.names {
				if n == tag {
					return &imgs[i], nil
				}
			}
		}
	}
	var have []string
	for _, im := range imgs {
		have = append(have, im.names...)
	}
	return nil, &imageNotFoundError{name: want, have: have}
}

// fullyNamed says the image has a name that is a reference, not a bare tag.
func fullyNamed(im srcImage) bool {
	for _, n := range im.names {
		if strings.ContainsAny(n, ":/") {
			return true
		}
	}
	return false
}

// imageNotFoundError says an image is not in the source.
type imageNotFoundError struct {
	name, where string
	have        []string
}

func (e *imageNotFoundError) Error() string {
	s := fmt.Sprintf("no image %s", e.name)
	if e.where != "" {
		s += " in " + e.where
	}
	if len(e.have) > 0 {
		s += fmt.Sprintf(" (it has %s)", strings.Join(e.have, ", "))
	}
	return s
}
