package testimages

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// BusyboxRef is the reference the busybox archives are tagged with.
const BusyboxRef = "busybox:latest"

// BusyboxBinary is the statically linked busybox of Debian's busybox-static.
const BusyboxBinary = "/bin/busybox"

// busyboxVersion changes whenever the layout of the image changes, so that
// cached archives of an older layout are not reused.
const busyboxVersion = "busybox-v2"

// DefaultPath is the PATH of the images built here (Docker's default).
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Users of the busybox image, as in its /etc/passwd.
const (
	AppUID = 1000 // user and group "app", home /home/app
)

const passwd = `root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
app:x:1000:1000:app:/home/app:/bin/sh
`

const group = `root:x:0:
daemon:x:1:
nogroup:x:65534:
app:x:1000:
`

// Busybox returns the path of a docker-archive tarball (`docker save`
// format) of busybox:latest: one layer with /bin/busybox from
// busybox-static, a symlink in /bin for each of its applets, /etc/passwd
// (root, daemon, nobody, app uid 1000), /etc/group, /tmp (1777), /root and
// /home/app; Cmd ["sh"]; linux/amd64. The test fails if it cannot be built.
func Busybox(t testing.TB) string {
	t.Helper()
	a, err := busyboxArchives()
	if err != nil {
		t.Fatalf("testimages: %v", err)
	}
	return a.docker
}

// BusyboxOCI returns the path of the same image as Busybox (same config,
// same image ID) as an OCI image-layout archive with OCI media types and a
// gzip-compressed layer, for `docker load` of OCI archives.
func BusyboxOCI(t testing.TB) string {
	t.Helper()
	a, err := busyboxArchives()
	if err != nil {
		t.Fatalf("testimages: %v", err)
	}
	return a.oci
}

// BusyboxImage returns the busybox image of Busybox as a v1.Image, for
// pushing to a registry.
func BusyboxImage(t testing.TB) v1.Image {
	t.Helper()
	tag, err := name.NewTag(BusyboxRef)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(Busybox(t), &tag)
	if err != nil {
		t.Fatalf("testimages: read busybox archive: %v", err)
	}
	return img
}

type archives struct{ docker, oci string }

var busyboxOnce = sync.OnceValues(func() (archives, error) {
	dir, err := CacheDir()
	if err != nil {
		return archives{}, err
	}
	var a archives
	a.docker, a.oci, err = BuildBusyboxArchives(dir, BusyboxBinary)
	return a, err
})

func busyboxArchives() (archives, error) { return busyboxOnce() }

// BuildBusyboxArchives builds (or finds in dir) the docker and OCI archives
// of the busybox image made from the busybox binary bin, and returns their
// paths.
func BuildBusyboxArchives(dir, bin string) (docker, oci string, err error) {
	key, err := hashFiles(busyboxVersion, bin)
	if err != nil {
		return "", "", fmt.Errorf("busybox: %w (install busybox-static: scripts/setup.sh)", err)
	}
	var imgs struct {
		once        sync.Once
		docker, oci v1.Image
		err         error
	}
	build := func() (v1.Image, v1.Image, error) {
		imgs.once.Do(func() { imgs.docker, imgs.oci, imgs.err = BuildBusybox(bin) })
		return imgs.docker, imgs.oci, imgs.err
	}
	docker, err = Cached(dir, "busybox-"+key+".tar", func(tmp string) error {
		img, _, err := build()
		if err != nil {
			return err
		}
		return WriteDockerArchiveFile(tmp, img, BusyboxRef)
	})
	if err != nil {
		return "", "", err
	}
	oci, err = Cached(dir, "busybox-"+key+".oci.tar", func(tmp string) error {
		_, img, err := build()
		if err != nil {
			return err
		}
		return WriteOCIArchiveFile(tmp, img, BusyboxRef)
	})
	return docker, oci, err
}

// BuildBusybox assembles the busybox image from the static busybox binary
// bin, twice: with Docker media types and with OCI media types. Both have the
// same config and layer content.
func BuildBusybox(bin string) (dockerImg, ociImg v1.Image, err error) {
	layer, err := busyboxLayer(bin)
	if err != nil {
		return nil, nil, err
	}
	cfg := &v1.ConfigFile{
		Architecture: "amd64",
		OS:           "linux",
		Created:      v1.Time{Time: epoch},
		RootFS:       v1.RootFS{Type: "layers"},
		Config: v1.Config{
			Cmd: []string{"sh"},
			Env: []string{DefaultPath},
		},
	}
	history := v1.History{Created: v1.Time{Time: epoch}, CreatedBy: "macro testimages: busybox-static " + bin}
	build := func(manifestType, configType, layerType types.MediaType) (v1.Image, error) {
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(layer)), nil
		}, tarball.WithMediaType(layerType), tarball.WithCompressedCaching)
		if err != nil {
			return nil, err
		}
		img := mutate.MediaType(empty.Image, manifestType)
		img = mutate.ConfigMediaType(img, configType)
		if img, err = mutate.ConfigFile(img, cfg.DeepCopy()); err != nil {
			return nil, err
		}
		return mutate.Append(img, mutate.Addendum{Layer: l, History: history})
	}
	if dockerImg, err = build(types.DockerManifestSchema2, types.DockerConfigJSON, types.DockerLayer); err != nil {
		return nil, nil, fmt.Errorf("busybox image: %w", err)
	}
	if ociImg, err = build(types.OCIManifestSchema1, types.OCIConfigJSON, types.OCILayer); err != nil {
		return nil, nil, fmt.Errorf("busybox image: %w", err)
	}
	return dockerImg, ociImg, nil
}

// busyboxLayer returns the uncompressed layer tar of the busybox image.
func busyboxLayer(bin string) ([]byte, error) {
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, fmt.Errorf("busybox: %w (install busybox-static: scripts/setup.sh)", err)
	}
	if err := checkStatic(bin); err != nil {
		return nil, err
	}
	out, err := exec.Command(bin, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("busybox --list: %w", err)
	}
	applets := strings.Fields(string(out))
	sort.Strings(applets)

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := func(name string, mode int64, uid int) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, Uid: uid, Gid: uid, ModTime: epoch, Format: tar.FormatPAX})
	}
	file := func(name string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	symlink := func(name, target string) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: epoch, Format: tar.FormatPAX})
	}
	steps := []func() error{
		func() error { return dir("bin", 0o755, 0) },
		func() error { return file("bin/busybox", 0o755, data) },
		func() error {
			for _, a := range applets {
				if a == "busybox" || strings.Contains(a, "/") {
					continue
				}
				if err := symlink("bin/"+a, "busybox"); err != nil {
					return err
				}
			}
			return nil
		},
		func() error { return dir("etc", 0o755, 0) },
		func() error { return file("etc/group", 0o644, []byte(group)) },
		func() error { return file("etc/passwd", 0o644, []byte(passwd)) },
		func() error { return dir("home", 0o755, 0) },
		func() error { return dir("home/app", 0o755, AppUID) },
		func() error { return dir("root", 0o700, 0) },
		func() error { return dir("tmp", 0o1777, 0) },
		func() error { return dir("usr", 0o755, 0) },
		func() error { return dir("usr/bin", 0o755, 0) },
		// For "#!/usr/bin/env sh" scripts.
		func() error { return symlink("usr/bin/env", "../../bin/busybox") },
		func() error { return dir("var", 0o755, 0) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, fmt.Errorf("busybox layer: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// checkStatic refuses a dynamically linked busybox (Debian's "busybox"
// package rather than "busybox-static"): it would not run inside an image
// without the host's libc.
func checkStatic(bin string) error {
	f, err := elf.Open(bin)
	if err != nil {
		return fmt.Errorf("busybox: %w", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("busybox: %s is dynamically linked; install busybox-static (scripts/setup.sh)", bin)
		}
	}
	return nil
}
