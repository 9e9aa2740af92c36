package compose

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
)

// Local file mounts (Kraud's feature): a bind mount of a local file or
// directory (./config:/etc/app) cannot reach a cloud's node, so kra uploads
// it into a volume and mounts that instead, and the same compose file works
// on a remote cloud. The volume is named after a hash of the contents
// (<namespace>_kra-files-<12 hex>): unchanged contents are not uploaded
// again, changed contents make a new volume, which changes the service's
// config-hash and so recreates its containers. The volumes carry the label
// kr.files.source (the local path); kra up removes those no container uses
// any more, kra down removes them all. Uploaded files are owned by root,
// with their local modes.

// Upload is one local path to upload.
type Upload struct {
	Source string // the local path, absolute
	Dir    bool   // a directory, mounted whole; else a file, mounted by subpath Base
	Base   string // the file's name in the volume
	Hash   string // of the contents (names, modes, data, link targets)
	Volume string // <namespace>_kra-files-<Hash[:12]>
	Image  string // the image of the first service that mounts it, for the helper container
}

// Uploads are a project's local file mounts by local path.
type Uploads map[string]Upload

// ScanUploads finds the bind mounts of p's services and hashes what they
// name. A path that does not exist is an error: there is nothing to upload.
func ScanUploads(p *types.Project) (Uploads, error) {
	out := Uploads{}
	for _, name := range serviceNames(p) {
		s := p.Services[name]
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			if _, ok := out[v.Source]; ok {
				continue
			}
			u, err := scan(v.Source)
			if err != nil {
				return nil, fmt.Errorf("service %s: volume %s: %w", name, v.Target, err)
			}
			u.Volume = p.Name + "_kra-files-" + u.Hash[:12]
			u.Image = ImageName(p, s)
			out[v.Source] = u
		}
	}
	return out, nil
}

func scan(source string) (Upload, error) {
	u := Upload{Source: source}
	st, err := os.Stat(source)
	if err != nil {
		return u, fmt.Errorf("local path to upload: %w", err)
	}
	h := sha256.New()
	u.Dir = st.IsDir()
	if !u.Dir {
		u.Base = filepath.Base(source)
		fmt.Fprintf(h, "file %q\n", u.Base)
	}
	if err := walk(source, u.Dir, u.Base, func(hdr *tar.Header, path string) error {
		fmt.Fprintf(h, "%c %q %o %q %d\n", hdr.Typeflag, hdr.Name, hdr.Mode, hdr.Linkname, hdr.Size)
		if hdr.Typeflag == tar.TypeReg {
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := io.Copy(h, f); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return u, err
	}
	u.Hash = hex.EncodeToString(h.Sum(nil))
	return u, nil
}

// walk calls fn for every entry to upload, in a stable order, with its tar
// header (names relative to the volume's root) and its local path.
func walk(source string, dir bool, base string, fn func(hdr *tar.Header, path string) error) error {
	if !dir {
		st, err := os.Lstat(source)
		if err != nil {
			return err
		}
		if !st.Mode().IsRegular() {
			// A symlink to a file: upload what it points to.
			if st, err = os.Stat(source); err != nil {
				return err
			}
		}
		hdr, err := header(st, base, "")
		if err != nil {
			return err
		}
		return fn(hdr, source)
	}
	var paths []string
	err := filepath.WalkDir(source, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path != source {
			paths = append(paths, path)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(paths)
	for _, path := range paths {
		st, err := os.Lstat(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(source, path)
		link := ""
		if st.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(path); err != nil {
				return err
			}
		}
		hdr, err := header(st, filepath.ToSlash(rel), link)
		if err != nil {
			return err
		}
		if err := fn(hdr, path); err != nil {
			return err
		}
	}
	return nil
}

func header(st fs.FileInfo, name, link string) (*tar.Header, error) {
	// Owned by root in the volume: a local user's IDs mean nothing on the
	// cloud; the modes say who may read.
	hdr := &tar.Header{Name: name, Mode: int64(st.Mode().Perm()), ModTime: st.ModTime().UTC().Truncate(1e9)}
	switch {
	case st.Mode().IsRegular():
		hdr.Typeflag = tar.TypeReg
		hdr.Size = st.Size()
	case st.IsDir():
		hdr.Typeflag = tar.TypeDir
		hdr.Name += "/"
	case st.Mode()&fs.ModeSymlink != 0:
		hdr.Typeflag = tar.TypeSymlink
		hdr.Linkname = link
	default:
		return nil, fmt.Errorf("%s: only files, directories and symlinks can be uploaded (%s)", name, st.Mode().Type())
	}
	return hdr, nil
}

// Tar writes the tar stream of u: a directory's contents at the root, or
// the file as Base.
func (u Upload) Tar(w io.Writer) error {
	tw := tar.NewWriter(w)
	err := walk(u.Source, u.Dir, u.Base, func(hdr *tar.Header, path string) error {
		// The hash covers the modification time only through the contents:
		// a touched file is not uploaded again.
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		n, err := io.Copy(tw, f)
		if err == nil && n != hdr.Size {
			err = fmt.Errorf("%s changed while it was uploaded", path)
		}
		return err
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// rewrite returns s with its local file mounts replaced by mounts of their
// volumes: the service as it runs, whose hash is the config-hash. A service
// without local file mounts is returned as it is, so its hash is the one
// docker compose computes.
func (u Uploads) rewrite(s types.ServiceConfig) (types.ServiceConfig, error) {
	has := false
	for _, v := range s.Volumes {
		has = has || v.Type == types.VolumeTypeBind
	}
	if !has {
		return s, nil
	}
	vols := make([]types.ServiceVolumeConfig, len(s.Volumes))
	for i, v := range s.Volumes {
		if v.Type == types.VolumeTypeBind {
			up, ok := u[v.Source]
			if !ok {
				return s, fmt.Errorf("service %s: %s was not uploaded", s.Name, v.Source)
			}
			v.Type = types.VolumeTypeVolume
			v.Source = up.Volume
			v.Bind = nil
			if !up.Dir {
				v.Volume = &types.ServiceVolumeVolume{Subpath: up.Base}
			}
		}
		vols[i] = v
	}
	s.Volumes = vols
	return s, nil
}

// describe is how the output names an upload: the path relative to the
// project's directory when it is inside it.
func (u Upload) describe(workDir string) string {
	if rel, err := filepath.Rel(workDir, u.Source); err == nil && !strings.HasPrefix(rel, "..") {
		if u.Dir {
			return "./" + rel + "/"
		}
		return "./" + rel
	}
	return u.Source
}
