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
	"path/filepath"
	"strings"
	"time"
)

// ProgressEvent is one progress line of a pull or load, in the terms the
// docker CLI prints: ID is a short layer ID ("" for image-wide lines).
type ProgressEvent struct {
	ID      string
	Status  string // "Pulling fs layer", "Downloading", "Extracting", "Pull complete", ...
	Current int64
	Total   int64
}

// blobSource produces the blob of a layer as a file in the store's tmp
// directory (downloaded or spooled), which ensureLayer moves into blobs/.
type blobSource func(ctx context.Context) (path, digest, mediaType string, err error)

// pin keeps layers from being swept while an ingest uses them; the returned
// func releases them.
func (s *Store) pin(diffIDs []string) func() {
	s.mu.Lock()
	for _, d := range diffIDs {
		s.pinned[d]++
	}
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		var free []string
		for _, d := range diffIDs {
			if s.pinned[d]--; s.pinned[d] <= 0 {
				delete(s.pinned, d)
				free = append(free, d)
			}
		}
		s.dropUnusedLayersLocked(free)
	}
}

// dropUnusedLayersLocked removes the extracted layers among diffIDs that
// no image uses and no ingest holds: what an ingest that failed (or was
// refused by its tenant's quota) extracted. Callers hold s.mu.
func (s *Store) dropUnusedLayersLocked(diffIDs []string) {
	if len(diffIDs) == 0 {
		return
	}
	used := map[string]bool{}
	for _, rec := range s.images {
		for _, l := range rec.Layers {
			used[l.DiffID] = true
		}
	}
	var blobs []string
	for _, d := range diffIDs {
		m, ok := s.layers[d]
		if !ok || used[d] || s.pinned[d] > 0 {
			continue
		}
		if err := s.removeLayerDir(d); err != nil {
			s.log.Warn("remove layer", "diffID", d, "err", err)
			continue
		}
		delete(s.layers, d)
		blobs = append(blobs, m.Blob)
	}
	if len(blobs) == 0 {
		return
	}
	usedBlobs := s.usedBlobsLocked()
	for _, b := range blobs {
		if b != "" && !usedBlobs[b] {
			os.Remove(s.blobPath(b))
		}
	}
}

// haveLayer reports whether the layer is extracted (and its meta).
func (s *Store) haveLayer(diffID string) (layerMeta, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	m, ok := s.layers[diffID]
	return m, ok
}

// ensureLayer extracts a layer once: concurrent ingests of the same diffID
// wait for one extraction. It verifies the blob's digest (when known) and
// the diffID, and commits the layer directory by rename. The caller pinned
// diffID. extracting reports compressed bytes consumed.
//
// An extracted layer is reused without reading src only when owned says
// the tenant already has it (an image of its own uses it). Otherwise the
// caller must show the bytes: src is read and must be that layer
// (verifyLayer), so that naming a digest never hands a tenant another
// tenant's layer. The bytes are then dropped: the layer is stored once.
func (s *Store) ensureLayer(ctx context.Context, diffID string, owned bool, src blobSource, extracting func(cur, total int64)) (layerMeta, bool, error) {
	if !strings.HasPrefix(diffID, "sha256:") || len(diffID) != 71 || !fullIDRe.MatchString(diffID) {
		return layerMeta{}, false, fmt.Errorf("invalid diffID %q", diffID)
	}
	if m, ok := s.haveLayer(diffID); ok {
		if owned {
			return m, true, nil
		}
		return m, true, s.verifyLayer(ctx, m, src)
	}
	ran := false
	v, err, _ := s.extract.Do(diffID, func() (any, error) {
		if m, ok := s.haveLayer(diffID); ok {
			return m, nil
		}
		ran = true
		blob, digest, mediaType, err := src(ctx)
		if err != nil {
			return nil, err
		}
		defer os.Remove(blob) // a no-op once renamed
		m, err := s.extractLayer(ctx, diffID, blob, digest, mediaType, extracting)
		if err != nil {
			return nil, err
		}
		return m, nil
	})
	if err != nil {
		return layerMeta{}, false, err
	}
	m := v.(layerMeta)
	if !ran && !owned {
		// Extracted by another ingest meanwhile: show the bytes too.
		return m, true, s.verifyLayer(ctx, m, src)
	}
	return m, false, nil
}

// verifyLayer checks that the blob src produces is layer m: the very blob
// it was extracted from, or one that decompresses to its diffID.
func (s *Store) verifyLayer(ctx context.Context, m layerMeta, src blobSource) error {
	blob, digest, _, err := src(ctx)
	if err != nil {
		return err
	}
	defer os.Remove(blob)
	f, err := os.Open(blob)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, &countingReader{r: f, ctx: ctx}); err != nil {
		return err
	}
	got := "sha256:" + hex.EncodeToString(h.Sum(nil))
	if digest != "" && got != digest {
		return fmt.Errorf("layer %s: digest mismatch: want %s, got %s", shortID(m.DiffID), digest, got)
	}
	if got == m.Blob {
		return nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	zr, err := decompress(&countingReader{r: f, ctx: ctx})
	if err != nil {
		return fmt.Errorf("layer %s: %w", shortID(m.DiffID), err)
	}
	defer zr.Close()
	dh := sha256.New()
	if _, err := io.Copy(dh, zr); err != nil {
		return fmt.Errorf("layer %s: %w", shortID(m.DiffID), err)
	}
	if got := "sha256:" + hex.EncodeToString(dh.Sum(nil)); got != m.DiffID {
		return fmt.Errorf("layer %s: diffID mismatch: the config says %s, the content is %s", shortID(m.DiffID), m.DiffID, got)
	}
	return nil
}

// tenantLayers is the set of diffIDs the tenant's images use.
func (s *Store) tenantLayers(tenant string) map[string]bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := map[string]bool{}
	if t := s.tenants[tenant]; t != nil {
		for id := range t.Images {
			if rec := s.images[id]; rec != nil {
				for _, l := range rec.Layers {
					out[l.DiffID] = true
				}
			}
		}
	}
	return out
}

func (s *Store) extractLayer(ctx context.Context, diffID, blob, digest, mediaType string, extracting func(cur, total int64)) (layerMeta, error) {
	f, err := os.Open(blob)
	if err != nil {
		return layerMeta{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return layerMeta{}, err
	}
	tmp, err := os.MkdirTemp(filepath.Join(s.dir, "tmp"), "layer-")
	if err != nil {
		return layerMeta{}, err
	}
	defer os.RemoveAll(tmp)
	fsDir := filepath.Join(tmp, "fs")
	if err := os.Mkdir(fsDir, 0o755); err != nil {
		return layerMeta{}, err
	}
	blobHash := sha256.New()
	cr := &countingReader{r: io.TeeReader(f, blobHash), total: st.Size(), report: extracting, ctx: ctx}
	zr, err := decompress(cr)
	if err != nil {
		return layerMeta{}, fmt.Errorf("layer %s: %w", shortID(diffID), err)
	}
	defer zr.Close()
	diffHash := sha256.New()
	tr := io.TeeReader(zr, diffHash)
	size, err := extractTar(fsDir, "", tr, extractOptions{layer: true, noChown: os.Geteuid() != 0})
	if err != nil {
		return layerMeta{}, fmt.Errorf("layer %s: %w", shortID(diffID), err)
	}
	// The tar ends before the stream does (padding): hash all of it.
	if _, err := io.Copy(io.Discard, tr); err != nil {
		return layerMeta{}, fmt.Errorf("layer %s: %w", shortID(diffID), err)
	}
	if _, err := io.Copy(io.Discard, cr); err != nil {
		return layerMeta{}, err
	}
	if got := "sha256:" + hex.EncodeToString(diffHash.Sum(nil)); got != diffID {
		return layerMeta{}, fmt.Errorf("layer %s: diffID mismatch: the config says %s, the content is %s", shortID(diffID), diffID, got)
	}
	gotBlob := "sha256:" + hex.EncodeToString(blobHash.Sum(nil))
	if digest != "" && gotBlob != digest {
		return layerMeta{}, fmt.Errorf("layer %s: digest mismatch: want %s, got %s", shortID(diffID), digest, gotBlob)
	}
	if extracting != nil {
		extracting(st.Size(), st.Size())
	}
	m := layerMeta{DiffID: diffID, Size: size, Blob: gotBlob, MediaType: mediaType, BlobSize: st.Size()}
	meta, err := json.Marshal(m)
	if err != nil {
		return layerMeta{}, err
	}
	if err := os.WriteFile(filepath.Join(tmp, "meta.json"), meta, 0o644); err != nil {
		return layerMeta{}, err
	}
	if err := os.Chmod(blob, 0o644); err != nil {
		return layerMeta{}, err
	}
	if err := os.Rename(blob, s.blobPath(gotBlob)); err != nil {
		return layerMeta{}, err
	}
	if err := os.Chmod(tmp, 0o711); err != nil {
		return layerMeta{}, err
	}
	if err := os.Rename(tmp, s.layerDir(diffID)); err != nil {
		if !errors.Is(err, os.ErrExist) && !isNotEmpty(err) {
			return layerMeta{}, err
		}
		// Committed meanwhile (by a previous run): that copy wins.
	}
	s.mu.Lock()
	s.layers[diffID] = m
	s.mu.Unlock()
	return m, nil
}

func isNotEmpty(err error) bool {
	var le *os.LinkError
	return errors.As(err, &le) && (strings.Contains(le.Err.Error(), "not empty") || strings.Contains(le.Err.Error(), "exists"))
}

// countingReader reports progress every 512 KiB and stops on cancellation.
type countingReader struct {
	r      io.Reader
	n      int64
	last   int64
	total  int64
	report func(cur, total int64)
	ctx    context.Context
}

func (c *countingReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.report != nil && (c.n-c.last >= 512<<10 || (err == io.EOF && c.n != c.last)) {
		c.last = c.n
		c.report(c.n, c.total)
	}
	return n, err
}

// newImage is an image ready to be committed.
type newImage struct {
	tenant    string
	config    []byte
	manifest  []byte // optional
	index     []byte // optional: the index it was resolved from
	layers    []layerRef
	tags      []string // familiar "name:tag"
	digests   []string // familiar "name@sha256:..."
	parent    string
	keepIndex bool
	replica   bool // a copy of an image the cluster has (WithReplica)
	// also, when set, changes the tenant's index in the same write
	// (a push records its registry tag with the image).
	also func(t *tenantIndex)
}

// commit writes the image's blobs, then its record, then the tenant's
// ownership and references: before the last step the image does not
// exist for the tenant (and a record no tenant owns is swept on Open). It
// returns the ID and whether any reference moved (or the image is new to
// the tenant).
func (s *Store) commit(img newImage) (string, bool, error) {
	id, _, err := s.writeBlob("", bytes.NewReader(img.config))
	if err != nil {
		return "", false, err
	}
	var manifestDigest, indexDigest string
	if img.manifest != nil {
		if manifestDigest, _, err = s.writeBlob("", bytes.NewReader(img.manifest)); err != nil {
			return "", false, err
		}
	}
	if img.index != nil {
		if indexDigest, _, err = s.writeBlob("", bytes.NewReader(img.index)); err != nil {
			return "", false, err
		}
	}
	cfg, extra, err := parseConfig(img.config)
	if err != nil {
		return "", false, fmt.Errorf("image config: %w", err)
	}
	var limit int64
	if !img.replica {
		if limit, err = s.quotaOf(img.tenant); err != nil {
			return "", false, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range img.layers {
		if _, ok := s.layers[l.DiffID]; !ok {
			return "", false, fmt.Errorf("layer %s vanished", l.DiffID)
		}
	}
	if err := s.checkQuotaLocked(s.tenantLocked(img.tenant), img.layers, limit); err != nil {
		// Refused: the blobs written above go unless something has them.
		used := s.usedBlobsLocked()
		for _, b := range []string{id, manifestDigest, indexDigest} {
			if b != "" && !used[b] {
				os.Remove(s.blobPath(b))
			}
		}
		return "", false, err
	}
	now := time.Now().UTC()
	rec := s.images[id]
	newRec := rec == nil
	if newRec {
		rec = &record{ID: id, Manifest: manifestDigest, Index: indexDigest, Layers: img.layers, Parent: img.parent, Added: now, config: *cfg, extra: extra}
	} else if rec.Manifest == "" && manifestDigest != "" {
		rec.Manifest, rec.Index = manifestDigest, indexDigest
	}
	if err := s.saveRecord(rec); err != nil {
		return "", false, err
	}
	s.images[id] = rec
	t := s.tenantForWrite(img.tenant)
	own, owned := t.Images[id]
	changed := !owned
	if !owned {
		own = ownership{Added: now}
	}
	for _, tg := range img.tags {
		if t.Tags[tg] != id {
			changed = true
			own.LastTagTime = now
			t.Tags[tg] = id
			t.TagTime[tg] = now
		}
	}
	t.Images[id] = own
	for _, d := range img.digests {
		t.Digests[d] = id
	}
	if img.also != nil {
		img.also(t)
	}
	s.replica = img.replica
	err = s.saveTenant(t)
	s.replica = false
	if err != nil {
		// Not committed: forget the in-memory changes by reloading the
		// tenant's file.
		s.reloadTenantLocked(img.tenant)
		if newRec && !s.ownedLocked(id) {
			s.deleteContentLocked(id)
		}
		return "", false, err
	}
	return id, changed, nil
}

// tmpFile creates a file in the store's tmp directory.
func (s *Store) tmpFile(prefix string) (*os.File, error) {
	return os.CreateTemp(filepath.Join(s.dir, "tmp"), prefix)
}
