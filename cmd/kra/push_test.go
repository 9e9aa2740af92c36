package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/macro-cloud/macro/client"
	"github.com/macro-cloud/macro/internal/testimages"
)

// testImage is an image whose layers hold one file each, layerN.txt with
// the content given: the same contents give the same digests.
func testImage(oci bool, contents ...string) (v1.Image, error) {
	mt, ct, lt := types.DockerManifestSchema2, types.DockerConfigJSON, types.DockerLayer
	if oci {
		mt, ct, lt = types.OCIManifestSchema1, types.OCIConfigJSON, types.OCILayer
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, mt), ct)
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return nil, err
	}
	for i, c := range contents {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		name := fmt.Sprintf("layer%d.txt", i)
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(c)), Typeflag: tar.TypeReg, Format: tar.FormatPAX})
		tw.Write([]byte(c))
		tw.Close()
		data := b.Bytes()
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }, tarball.WithMediaType(lt))
		if err != nil {
			return nil, err
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			return nil, err
		}
	}
	return img, nil
}

// writeTestImage writes testImage(contents) to path as format: docker (a
// docker save archive), oci (a layout directory) or ociarchive (its tar).
func writeTestImage(format, path, ref string, contents ...string) error {
	img, err := testImage(format != "docker", contents...)
	if err != nil {
		return err
	}
	switch format {
	case "docker":
		return testimages.WriteDockerArchiveFile(path, img, ref)
	case "ociarchive":
		return testimages.WriteOCIArchiveFile(path, img, ref)
	case "oci":
		p, err := layout.Write(path, empty.Index)
		if err != nil {
			return err
		}
		return p.AppendImage(img, layout.WithAnnotations(map[string]string{annotationRefName: ref}))
	}
	return fmt.Errorf("unknown format %q", format)
}

// cmdMkimage is the testscript command mkimage FORMAT PATH REF CONTENT...
func cmdMkimage(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 3 {
		ts.Fatalf("usage: mkimage docker|oci|ociarchive PATH REF CONTENT...")
	}
	ts.Check(writeTestImage(args[0], ts.MkAbs(args[1]), args[2], args[3:]...))
}

// memFS is an imageFS of files in memory.
type memFS map[string][]byte

func (m memFS) open(name string) (io.ReadCloser, error) {
	b, ok := m[cleanName(name)]
	if !ok {
		return nil, fmt.Errorf("%s: %w", name, fs.ErrNotExist)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func TestReadImages(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		format, ref string
		names       []string
		blobs       bool // layers pushed as they are, with the source's manifest
	}{
		{"docker", "app:1", []string{"app:1"}, false},
		{"oci", "app:2", []string{"app:2"}, true},
		{"ociarchive", "ghcr.io/acme/app:3", []string{"ghcr.io/acme/app:3", "3"}, true},
	} {
		t.Run(tt.format, func(t *testing.T) {
			p := filepath.Join(dir, tt.format)
			if err := writeTestImage(tt.format, p, tt.ref, "one", "two"); err != nil {
				t.Fatal(err)
			}
			src, err := openFileSource(p)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			if len(src.imgs) != 1 || !slices.Equal(src.imgs[0].names, tt.names) {
				t.Fatalf("images %+v", src.imgs)
			}
			im, _, err := src.image(t.Context(), tt.ref, nil)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := testImage(tt.format != "docker", "one", "two")
			wantCfg, _ := want.RawConfigFile()
			if !bytes.Equal(im.img.Config, wantCfg) || len(im.img.Layers) != 2 {
				t.Fatalf("config %s, %d layers", im.img.Config, len(im.img.Layers))
			}
			wantLayers, _ := want.Layers()
			for i, l := range im.img.Layers {
				diffID, _ := wantLayers[i].DiffID()
				if l.DiffID != diffID || l.Blob != tt.blobs {
					t.Errorf("layer %d: %+v", i, l)
				}
				rc, err := l.Open()
				if err != nil {
					t.Fatal(err)
				}
				got, _ := io.ReadAll(rc)
				rc.Close()
				var wrc io.ReadCloser
				if tt.blobs {
					wrc, _ = wantLayers[i].Compressed()
				} else {
					wrc, _ = wantLayers[i].Uncompressed()
				}
				wb, _ := io.ReadAll(wrc)
				if !bytes.Equal(got, wb) {
					t.Errorf("layer %d: %d bytes, want %d", i, len(got), len(wb))
				}
			}
			if tt.blobs {
				raw, _ := want.RawManifest()
				if !bytes.Equal(im.img.Manifest, raw) {
					t.Errorf("manifest %s", im.img.Manifest)
				}
			}
			if _, _, err := src.image(t.Context(), "other:1", nil); !errors.As(err, new(*imageNotFoundError)) {
				t.Errorf("another name: %v", err)
			}
		})
	}
	// skopeo's oci:DIR:TAG names an image by its tag only: pushed under
	// any name.
	p := filepath.Join(dir, "tagonly")
	if err := writeTestImage("oci", p, "v1", "x"); err != nil {
		t.Fatal(err)
	}
	src, err := openFileSource(p)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if _, _, err := src.image(t.Context(), "anything:else", nil); err != nil {
		t.Errorf("a tag-only image under another name: %v", err)
	}
}

func TestReadImagesBad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.tar")
	if err := writeTestImage("docker", good, "app:1", "one"); err != nil {
		t.Fatal(err)
	}
	text := filepath.Join(dir, "notes.txt")
	os.WriteFile(text, []byte(strings.Repeat("not a tar file\n", 100)), 0o644)
	empty := filepath.Join(dir, "empty.tar")
	os.WriteFile(empty, make([]byte, 1024), 0o644)
	b, _ := os.ReadFile(good)
	cut := filepath.Join(dir, "cut.tar")
	os.WriteFile(cut, b[:700], 0o644)
	for _, tt := range []struct{ path, want string }{
		{text, "not a tar file"},
		{empty, "an empty tar file"},
		{cut, "a damaged tar file"},
		{filepath.Join(dir, "nope.tar"), "no such file or directory"},
		{dir, "neither manifest.json"},
	} {
		_, err := openFileSource(tt.path)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", filepath.Base(tt.path), err, tt.want)
		}
	}

	cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:` + strings.Repeat("a", 64) + `"]}}`)
	for _, tt := range []struct {
		name string
		fs   memFS
		want string
	}{
		{"not JSON", memFS{"manifest.json": []byte("{")}, "manifest.json"},
		{"no image", memFS{"manifest.json": []byte("[]")}, "lists no image"},
		{"no config", memFS{"manifest.json": []byte(`[{"Layers":["l"]}]`)}, "has no config"},
		{"config missing", memFS{"manifest.json": []byte(`[{"Config":"c.json","Layers":["l"]}]`)}, "c.json"},
		{"layers mismatch", memFS{"manifest.json": []byte(`[{"Config":"c.json","Layers":["l","m"]}]`), "c.json": cfg}, "lists 1 layers, the manifest 2"},
		{"layer missing", memFS{"manifest.json": []byte(`[{"Config":"c.json","Layers":["l"]}]`), "c.json": cfg}, "layer l"},
		{"index not JSON", memFS{"index.json": []byte("[")}, "index.json"},
		{"index empty", memFS{"index.json": []byte(`{"schemaVersion":2,"manifests":[]}`)}, "lists no image"},
		{"blob missing", memFS{"index.json": []byte(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:` + strings.Repeat("b", 64) + `","size":1}]}`)}, "blob sha256:bbbb"},
		{"bad digest", memFS{"index.json": []byte(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"md5:12","size":1}]}`)}, "index.json"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readImages(tt.fs)
			if !errors.Is(err, errBadArchive) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("%v, want %q", err, tt.want)
			}
		})
	}
}

// FuzzReadImages feeds readImages what an archive may hold: it returns
// images or an error, never panics, and reads nothing outside the files.
func FuzzReadImages(f *testing.F) {
	cfg := `{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:` + strings.Repeat("a", 64) + `"]}}`
	f.Add([]byte(`[{"Config":"c.json","RepoTags":["a:1"],"Layers":["l.tar"]}]`), []byte(cfg), []byte(""))
	f.Add([]byte(`[{"Config":"../c.json","Layers":["/l.tar"]}]`), []byte(cfg), []byte("\x1f\x8b"))
	f.Add([]byte(""), []byte(cfg), []byte(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:`+strings.Repeat("c", 64)+`","size":1}]}`))
	f.Fuzz(func(t *testing.T, manifest, config, index []byte) {
		m := memFS{"c.json": config, "l.tar": []byte("layer"), "blobs/sha256/" + strings.Repeat("c", 64): index}
		if len(manifest) > 0 {
			m["manifest.json"] = manifest
		}
		m["index.json"] = index
		imgs, err := readImages(m)
		if err != nil {
			return
		}
		for _, im := range imgs {
			for _, l := range im.img.Layers {
				if l.DiffID.Algorithm != "sha256" || len(l.DiffID.Hex) != 64 {
					t.Fatalf("layer diffID %q", l.DiffID)
				}
			}
		}
	})
}

func TestComposeImages(t *testing.T) {
	env := func(k string) (string, bool) {
		v, ok := map[string]string{"TAG": "1.2", "EMPTY": ""}[k]
		return v, ok
	}
	for _, tt := range []struct {
		name, file string
		want       []string
		err        string
	}{
		{"images", "services:\n  web:\n    image: web:1\n  db:\n    image: redis:7\n  web2:\n    image: web:1\n", []string{"redis:7", "web:1"}, ""},
		{"built", "services:\n  api:\n    build: .\n", []string{"myproj-api"}, ""},
		{"built, named project", "name: Shop\nservices:\n  api:\n    build:\n      context: .\n", []string{"shop-api"}, ""},
		{"interpolated", "services:\n  a:\n    image: app:${TAG}\n  b:\n    image: app:${NOPE:-dev}\n  c:\n    image: $$x${EMPTY-unset}/b:$TAG\n", []string{"$x/b:1.2", "app:1.2", "app:dev"}, ""},
		{"required", "services:\n  a:\n    image: app:${NOPE:?set NOPE}\n", nil, "NOPE: set NOPE"},
		{"unclosed", "services:\n  a:\n    image: app:${TAG\n", nil, "no closing brace"},
		{"no image", "services:\n  a:\n    command: x\n", nil, ""},
		{"anchors", "x-img: &img app:1\nservices:\n  a:\n    image: *img\n", []string{"app:1"}, ""},
		{"not yaml", "services: [", nil, "not a compose file"},
		{"services not a map", "services: 3\n", nil, "not a compose file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseComposeImages([]byte(tt.file), "My Proj", env)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("%v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("%q %v, want %q", got, err, tt.want)
			}
		})
	}
}

// FuzzComposeImages: any compose file gives images or an error; what it
// gives holds no unexpanded ${.
func FuzzComposeImages(f *testing.F) {
	f.Add([]byte("services:\n  web:\n    image: web:${TAG:-1}\n  api:\n    build: .\n"))
	f.Add([]byte("name: x\nservices:\n  a:\n    image: $$a$b${c?d}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		env := func(k string) (string, bool) { return "v", k == "TAG" }
		imgs, err := parseComposeImages(b, "dir", env)
		if err != nil {
			return
		}
		for _, im := range imgs {
			if im == "" {
				t.Fatalf("an empty image in %q", imgs)
			}
		}
	})
}

func TestDestination(t *testing.T) {
	for _, tt := range []struct{ ref, repo, tag, err string }{
		{"busybox", "busybox", "latest", ""},
		{"docker.io/library/busybox:1", "busybox", "1", ""},
		{"acme/app:2", "acme/app", "2", ""},
		{"ghcr.io/acme/app:3", "acme/app", "3", ""},
		{"localhost:5000/app", "app", "latest", ""},
		{"app@sha256:" + strings.Repeat("0", 64), "", "", "push a tag, not a digest"},
		{"UPPER:1", "", "", "invalid image name"},
	} {
		repo, tag, err := destination(tt.ref)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: %v, want %q", tt.ref, err, tt.err)
			}
			continue
		}
		if err != nil || repo != tt.repo || tag != tt.tag {
			t.Errorf("%s: %s %s %v", tt.ref, repo, tag, err)
		}
	}
}

// The terminal view redraws a line per layer in place; plain output says
// each step once; more layers than the screen has lines: plain.
func TestPushView(t *testing.T) {
	var b strings.Builder
	clock := time.Unix(0, 0)
	v := newPushView(&b, 80, 24, 2)
	v.now = func() time.Time { return clock }
	v.update(client.PushProgress{Layer: 0, ID: "aaaaaaaaaaaa", Phase: client.PhaseWaiting})
	v.update(client.PushProgress{Layer: 1, ID: "bbbbbbbbbbbb", Phase: client.PhaseExists})
	clock = clock.Add(time.Second)
	v.update(client.PushProgress{Layer: 0, ID: "cccccccccccc", Phase: client.PhaseUploading, Current: 500_000, Total: 1_000_000})
	clock = clock.Add(time.Second)
	v.update(client.PushProgress{Layer: 0, Phase: client.PhaseUploading, Current: 750_000, Total: 1_000_000})
	v.finish()
	out := b.String()
	last := out[strings.LastIndex(out, "\x1b[2A"):]
	for _, want := range []string{"\x1b[2Kaaaaaaaaaaaa  pushing        [", "=>", "] 750kB/1MB  750kB/s\n", "\x1b[2Kbbbbbbbbbbbb  already exists\n"} {
		if !strings.Contains(last, want) {
			t.Errorf("last frame %q lacks %q", last, want)
		}
	}

	b.Reset()
	v = newPushView(&b, 0, 0, 1)
	v.now = func() time.Time { return clock }
	v.update(client.PushProgress{Layer: 0, ID: "aaaaaaaaaaaa", Phase: client.PhaseWaiting})
	v.update(client.PushProgress{Layer: 0, Phase: client.PhaseCompressing, Total: 2_000_000})
	v.update(client.PushProgress{Layer: 0, Phase: client.PhaseCompressing, Current: 1_000_000, Total: 2_000_000})
	clock = clock.Add(6 * time.Second)
	v.update(client.PushProgress{Layer: 0, Phase: client.PhaseCompressing, Current: 1_500_000, Total: 2_000_000})
	v.update(client.PushProgress{Layer: 0, Phase: client.PhaseUploading, Total: 900_000})
	clock = clock.Add(2 * time.Second)
	v.update(client.PushProgress{Layer: 0, Phase: client.PhasePushed, Current: 900_000, Total: 900_000})
	want := "aaaaaaaaaaaa: compressing 2MB\n" +
		"aaaaaaaaaaaa: compressing 1.5MB/2MB, 250kB/s\n" +
		"aaaaaaaaaaaa: pushing 900kB\n" +
		"aaaaaaaaaaaa: pushed 900kB in 2s (450kB/s)\n"
	if b.String() != want {
		t.Errorf("plain:\n%s\nwant:\n%s", b.String(), want)
	}

	if v := newPushView(io.Discard, 80, 10, 9); v.width != 0 {
		t.Errorf("9 layers on 10 lines: width %d, want plain", v.width)
	}
}
