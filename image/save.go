package image

import (
	"archive/tar"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"
)

// Save writes the images refs name as a docker-archive (the format of
// docker save: manifest.json, repositories, <config>.json and one
// uncompressed <diffid>/layer.tar per layer). A name without a tag saves
// every tag of the repository; an ID saves the image untagged. Only the
// tenant's images can be saved.
func (v *TenantView) Save(ctx context.Context, refs []string, w io.Writer) error {
	s := v.s
	type entry struct {
		rec  *record
		tags []string
	}
	var order []string
	entries := map[string]*entry{}
	layers := map[string]layerMeta{}
	s.mu.RLock()
	ti := s.tenantLocked(v.name)
	var expanded []string
	for _, ref := range refs {
		// A repository name without a tag saves all its tags.
		if r, err := v.parse(ref); err == nil && r.digest == "" && !hasExplicitTag(ref) && ti.Tags[r.tagged()] == "" {
			var tags []string
			for t := range ti.Tags {
				if strings.HasPrefix(t, r.familiarName()+":") {
					tags = append(tags, t)
				}
			}
			sort.Strings(tags)
			if len(tags) > 0 {
				expanded = append(expanded, tags...)
				continue
			}
		}
		expanded = append(expanded, ref)
	}
	for _, ref := range expanded {
		_, rec, named, err := v.resolveLocked(ref)
		if err != nil {
			s.mu.RUnlock()
			return err
		}
		e := entries[rec.ID]
		if e == nil {
			e = &entry{rec: rec}
			entries[rec.ID] = e
			order = append(order, rec.ID)
		}
		if named != nil && named.digest == "" {
			if hasExplicitTag(ref) {
				e.tags = append(e.tags, named.tagged())
			} else {
				tags, _ := refsOf(ti, rec.ID)
				for _, t := range tags {
					if strings.HasPrefix(t, named.familiarName()+":") {
						e.tags = append(e.tags, t)
					}
				}
			}
		}
		for _, l := range rec.Layers {
			layers[l.DiffID] = s.layers[l.DiffID]
		}
	}
	s.mu.RUnlock()
	// The layers must not go while they are written.
	var diffIDs []string
	for d := range layers {
		diffIDs = append(diffIDs, d)
	}
	defer s.pin(diffIDs)()

	tw := tar.NewWriter(w)
	written := map[string]bool{}
	var manifest []dockerManifestEntry
	repos := map[string]map[string]string{}
	for _, id := range order {
		e := entries[id]
		rawConfig, err := os.ReadFile(s.blobPath(id))
		if err != nil {
			return fmt.Errorf("save %s: %w", shortID(id), err)
		}
		created := e.rec.config.Created.Time
		cfgName := strings.TrimPrefix(id, "sha256:") + ".json"
		if err := writeTarBytes(tw, cfgName, rawConfig, created); err != nil {
			return err
		}
		me := dockerManifestEntry{Config: cfgName, RepoTags: dedupe(e.tags)}
		if me.RepoTags == nil {
			me.RepoTags = []string{}
		}
		var top string
		for _, l := range e.rec.Layers {
			top = strings.TrimPrefix(l.DiffID, "sha256:")
			p := top + "/layer.tar"
			me.Layers = append(me.Layers, p)
			if written[l.DiffID] {
				continue
			}
			written[l.DiffID] = true
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := tw.WriteHeader(&tar.Header{Name: top + "/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: created}); err != nil {
				return err
			}
			if err := writeTarBytes(tw, top+"/VERSION", []byte("1.0"), created); err != nil {
				return err
			}
			if err := s.writeLayerTar(tw, p, layers[l.DiffID], created); err != nil {
				return err
			}
		}
		for _, t := range me.RepoTags {
			i := strings.LastIndex(t, ":")
			if repos[t[:i]] == nil {
				repos[t[:i]] = map[string]string{}
			}
			repos[t[:i]][t[i+1:]] = top
		}
		manifest = append(manifest, me)
	}
	b, err := json.Marshal(manifest)
	if err != nil {
		return err
	}
	if err := writeTarBytes(tw, "manifest.json", b, time.Unix(0, 0)); err != nil {
		return err
	}
	if len(repos) > 0 {
		b, err := json.Marshal(repos)
		if err != nil {
			return err
		}
		if err := writeTarBytes(tw, "repositories", b, time.Unix(0, 0)); err != nil {
			return err
		}
	}
	return tw.Close()
}

// writeLayerTar writes the uncompressed layer as name: the blob itself when
// it is a plain tar, else decompressed through a temporary file (a tar
// header needs the size first).
func (s *Store) writeLayerTar(tw *tar.Writer, name string, m layerMeta, mtime time.Time) error {
	f, err := os.Open(s.blobPath(m.Blob))
	if err != nil {
		return fmt.Errorf("layer %s: %w", shortID(m.DiffID), err)
	}
	defer f.Close()
	if m.Blob != m.DiffID {
		zr, err := decompress(f)
		if err != nil {
			return err
		}
		tmp, err := s.tmpFile("save-")
		if err != nil {
			return err
		}
		defer os.Remove(tmp.Name())
		defer tmp.Close()
		if _, err := io.Copy(tmp, zr); err != nil {
			return err
		}
		zr.Close()
		if _, err := tmp.Seek(0, io.SeekStart); err != nil {
			return err
		}
		f = tmp
	}
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: st.Size(), ModTime: mtime}); err != nil {
		return err
	}
	_, err = io.Copy(tw, f)
	return err
}

func writeTarBytes(tw *tar.Writer, name string, data []byte, mtime time.Time) error {
	if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(data)), ModTime: mtime}); err != nil {
		return err
	}
	_, err := tw.Write(data)
	return err
}

// hasExplicitTag tells "busybox:1" and "localhost:5000/x:1" from "busybox"
// and "localhost:5000/x".
func hasExplicitTag(ref string) bool {
	last := ref[strings.LastIndex(ref, "/")+1:]
	return strings.Contains(last, ":")
}

func dedupe(s []string) []string {
	sort.Strings(s)
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
