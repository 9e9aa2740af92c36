package testimages

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// epoch is the modification time of every entry the package writes, so that
// the same inputs always give the same bytes (and digests).
var epoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// WriteDockerArchiveFile writes img to path in the format of `docker save`
// (see WriteDockerArchive).
func WriteDockerArchiveFile(path string, img v1.Image, tags ...string) error {
	return writeFile(path, func(w io.Writer) error { return WriteDockerArchive(w, img, tags...) })
}

// WriteOCIArchiveFile writes img to path as an OCI image-layout archive (see
// WriteOCIArchive).
func WriteOCIArchiveFile(path string, img v1.Image, ref string) error {
	return writeFile(path, func(w io.Writer) error { return WriteOCIArchive(w, img, ref) })
}

func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// WriteDockerArchive writes img as the classic `docker save` tarball:
// manifest.json, repositories, <config-hex>.json and one uncompressed
// <diffid-hex>/layer.tar per layer, tagged with tags ("busybox:latest").
func WriteDockerArchive(w io.Writer, img v1.Image, tags ...string) error {
	cfgName, err := img.ConfigName()
	if err != nil {
		return err
	}
	rawCfg, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	cfgPath := cfgName.Hex + ".json"
	if err := writeTarFile(tw, cfgPath, rawCfg); err != nil {
		return err
	}
	var layerPaths []string
	var top string
	for _, l := range layers {
		diffID, err := l.DiffID()
		if err != nil {
			return err
		}
		top = diffID.Hex
		if err := writeTarDir(tw, top+"/"); err != nil {
			return err
		}
		if err := writeTarFile(tw, top+"/VERSION", []byte("1.0")); err != nil {
			return err
		}
		p := top + "/layer.tar"
		if err := writeLayer(tw, p, l, false); err != nil {
			return err
		}
		layerPaths = append(layerPaths, p)
	}
	repos := map[string]map[string]string{}
	for _, tag := range tags {
		repo, tg, ok := strings.Cut(tag, ":")
		if !ok || strings.Contains(tg, "/") {
			return fmt.Errorf("docker archive: tag %q is not repo:tag", tag)
		}
		if repos[repo] == nil {
			repos[repo] = map[string]string{}
		}
		repos[repo][tg] = top
	}
	if tags == nil {
		tags = []string{}
	}
	manifest, err := json.Marshal([]map[string]any{{
		"Config":   cfgPath,
		"RepoTags": tags,
		"Layers":   layerPaths,
	}})
	if err != nil {
		return err
	}
	if err := writeTarFile(tw, "manifest.json", manifest); err != nil {
		return err
	}
	if len(repos) > 0 {
		b, err := json.Marshal(repos)
		if err != nil {
			return err
		}
		if err := writeTarFile(tw, "repositories", b); err != nil {
			return err
		}
	}
	return tw.Close()
}

// WriteOCIArchive writes img as a tar of an OCI image layout (oci-layout,
// index.json, blobs/sha256/...), the way `docker save` of Docker 25 and later
// names images: index.json's descriptor carries io.containerd.image.name (the
// full reference, docker.io/library/busybox:latest) and
// org.opencontainers.image.ref.name (the tag). Layers are stored as the image
// has them (compressed for images of this package).
func WriteOCIArchive(w io.Writer, img v1.Image, ref string) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("oci archive: %w", err)
	}
	full := tag.Name()
	if tag.RegistryStr() == name.DefaultRegistry {
		full = "docker.io/" + tag.RepositoryStr() + ":" + tag.TagStr()
	}
	rawManifest, err := img.RawManifest()
	if err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	mt, err := img.MediaType()
	if err != nil {
		return err
	}
	cfgName, err := img.ConfigName()
	if err != nil {
		return err
	}
	rawCfg, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	index, err := json.Marshal(v1.IndexManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIImageIndex,
		Manifests: []v1.Descriptor{{
			MediaType: mt,
			Digest:    digest,
			Size:      int64(len(rawManifest)),
			Annotations: map[string]string{
				"io.containerd.image.name":          full,
				"org.opencontainers.image.ref.name": tag.TagStr(),
			},
		}},
	})
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	files := []struct {
		name string
		data []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", index},
	}
	for _, f := range files {
		if err := writeTarFile(tw, f.name, f.data); err != nil {
			return err
		}
	}
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := writeTarDir(tw, d); err != nil {
			return err
		}
	}
	if err := writeTarFile(tw, "blobs/sha256/"+digest.Hex, rawManifest); err != nil {
		return err
	}
	if err := writeTarFile(tw, "blobs/sha256/"+cfgName.Hex, rawCfg); err != nil {
		return err
	}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		if err := writeLayer(tw, "blobs/sha256/"+d.Hex, l, true); err != nil {
			return err
		}
	}
	return tw.Close()
}

func writeTarDir(tw *tar.Writer, name string) error {
	return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX})
}

func writeTarFile(tw *tar.Writer, name string, data []byte) error {
	return writeTarStream(tw, name, int64(len(data)), bytes.NewReader(data))
}

func writeTarStream(tw *tar.Writer, name string, size int64, r io.Reader) error {
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
		return err
	}
	n, err := io.Copy(tw, r)
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("%s: wrote %d bytes, want %d", name, n, size)
	}
	return nil
}

// writeLayer writes the compressed or uncompressed bytes of l. The size of
// an uncompressed stream is not known in advance, so it is measured first.
func writeLayer(tw *tar.Writer, name string, l v1.Layer, compressed bool) error {
	open := l.Uncompressed
	if compressed {
		open = l.Compressed
	}
	rc, err := open()
	if err != nil {
		return err
	}
	size, err := io.Copy(io.Discard, rc)
	rc.Close()
	if err != nil {
		return err
	}
	if rc, err = open(); err != nil {
		return err
	}
	defer rc.Close()
	return writeTarStream(tw, name, size, rc)
}
