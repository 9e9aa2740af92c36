package image

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/singleflight"
)

// ErrNotFound is returned (wrapped) when an image does not exist.
var ErrNotFound = errors.New("no such image")

// notFoundError is Docker's "No such image: busybox:latest".
type notFoundError struct{ ref string }

func (e notFoundError) Error() string        { return "No such image: " + e.ref }
func (e notFoundError) Is(target error) bool { return target == ErrNotFound }
func (e notFoundError) HTTPStatus() int      { return 404 }

// conflictError is a 409 with Docker's message.
type conflictError string

func (e conflictError) Error() string   { return string(e) }
func (e conflictError) HTTPStatus() int { return 409 }

// Image is an image of the store.
type Image struct {
	ID          string // "sha256:<config digest>"
	RepoTags    []string
	RepoDigests []string
	Created     time.Time
	Size        int64 // sum of the sizes of its layers
	SharedSize  int64 // size of its layers that other images use too
	Config      v1.ConfigFile
	Layers      []string // diffIDs, lowest first
	Parent      string
	LastTagTime time.Time
	Manifest    string // digest of the manifest it came with, if any
	// Fields of Docker's config format that v1.ConfigFile lacks.
	Comment         string
	ContainerConfig v1.Config
}

// Deleted is one line of `docker rmi`'s answer.
type Deleted struct {
	Untagged string `json:",omitempty"`
	Deleted  string `json:",omitempty"`
}

// Config configures a Store.
type Config struct {
	Dir string
	Log *slog.Logger
	// InsecureRegistries may be pulled from over plain HTTP (host[:port]).
	// localhost, 127.0.0.0/8 and private addresses always may.
	InsecureRegistries []string
	// Platform images are pulled for: linux/GOARCH by default.
	Platform v1.Platform
}

// Store is the node's image store. It is safe for concurrent use.
type Store struct {
	dir      string
	log      *slog.Logger
	insecure []string
	platform v1.Platform

	mu      sync.RWMutex
	images  map[string]*record // by ID
	index   repoIndex
	layers  map[string]layerMeta // by diffID
	pinned  map[string]int       // diffIDs of layers in use by ongoing pulls and loads
	inUse   func(imageID string) []string
	extract singleflight.Group
}

// record is an image as stored in images/<hex>.json.
type record struct {
	ID          string
	Manifest    string `json:",omitempty"` // manifest digest
	Index       string `json:",omitempty"` // index digest it was resolved from
	Layers      []layerRef
	Parent      string    `json:",omitempty"`
	Added       time.Time // when it entered the store
	LastTagTime time.Time `json:",omitzero"`

	config v1.ConfigFile
	extra  configExtra
}

// configExtra holds what Docker's image config has beyond v1.ConfigFile.
type configExtra struct {
	Comment         string    `json:"comment"`
	ContainerConfig v1.Config `json:"container_config"`
}

// layerRef is a layer of an image: its diffID and the blob it came as.
type layerRef struct {
	DiffID    string
	Blob      string // digest of the blob under blobs/
	MediaType string `json:",omitempty"`
	BlobSize  int64
}

// layerMeta is layers/<hex>/meta.json: an extracted layer and the blob it
// was extracted from.
type layerMeta struct {
	DiffID    string
	Size      int64 // bytes of its regular files
	Blob      string
	MediaType string `json:",omitempty"`
	BlobSize  int64
}

// repoIndex is repositories.json: familiar references to image IDs.
type repoIndex struct {
	Tags    map[string]string // "busybox:latest" → ID
	Digests map[string]string // "busybox@sha256:..." → ID
	TagTime map[string]time.Time
}

// Open opens (or creates) the store in dir.
func Open(dir string, log *slog.Logger) (*Store, error) {
	return New(Config{Dir: dir, Log: log})
}

// New opens the store described by cfg.
func New(cfg Config) (*Store, error) {
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	s := &Store{
		dir:      cfg.Dir,
		log:      log.With("subsystem", "image"),
		insecure: cfg.InsecureRegistries,
		platform: cfg.Platform,
		images:   map[string]*record{},
		layers:   map[string]layerMeta{},
		pinned:   map[string]int{},
		index:    repoIndex{Tags: map[string]string{}, Digests: map[string]string{}, TagTime: map[string]time.Time{}},
	}
	if s.platform.OS == "" {
		s.platform = v1.Platform{OS: "linux", Architecture: goruntime.GOARCH}
		if goruntime.GOARCH == "arm64" {
			s.platform.Variant = "v8"
		}
	}
	for _, d := range []string{"blobs/sha256", "layers", "images", "tmp"} {
		if err := os.MkdirAll(filepath.Join(s.dir, d), 0o711); err != nil {
			return nil, fmt.Errorf("image store: %w", err)
		}
	}
	// Work in progress of a previous run is garbage.
	if err := clearDir(filepath.Join(s.dir, "tmp")); err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	if err := s.loadState(); err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	s.sweepLayers()
	return s, nil
}

// SetInUse installs the hook that tells which containers use an image;
// images in use are not removed without force and never pruned.
func (s *Store) SetInUse(fn func(imageID string) (containerIDs []string)) {
	s.mu.Lock()
	s.inUse = fn
	s.mu.Unlock()
}

func (s *Store) loadState() error {
	if b, err := os.ReadFile(filepath.Join(s.dir, "repositories.json")); err == nil {
		if err := json.Unmarshal(b, &s.index); err != nil {
			return fmt.Errorf("repositories.json: %w", err)
		}
	} else if !os.IsNotExist(err) {
		return err
	}
	if s.index.Tags == nil {
		s.index.Tags = map[string]string{}
	}
	if s.index.Digests == nil {
		s.index.Digests = map[string]string{}
	}
	if s.index.TagTime == nil {
		s.index.TagTime = map[string]time.Time{}
	}
	ents, err := os.ReadDir(filepath.Join(s.dir, "layers"))
	if err != nil {
		return err
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(s.dir, "layers", e.Name(), "meta.json"))
		if err != nil {
			continue
		}
		var m layerMeta
		if json.Unmarshal(b, &m) == nil && m.DiffID == "sha256:"+e.Name() {
			s.layers[m.DiffID] = m
		}
	}
	ents, err = os.ReadDir(filepath.Join(s.dir, "images"))
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.dir, "images", e.Name()))
		if err != nil {
			return err
		}
		var rec record
		if err := json.Unmarshal(b, &rec); err != nil {
			s.log.Warn("unreadable image record", "file", e.Name(), "err", err)
			continue
		}
		cfg, extra, err := s.readConfig(rec.ID)
		if err != nil {
			s.log.Warn("image without config", "id", rec.ID, "err", err)
			continue
		}
		rec.config, rec.extra = *cfg, extra
		complete := true
		for _, l := range rec.Layers {
			if _, ok := s.layers[l.DiffID]; !ok {
				complete = false
			}
		}
		if !complete {
			s.log.Warn("image with missing layers", "id", rec.ID)
			continue
		}
		s.images[rec.ID] = &rec
	}
	// Tags of images that are gone are dropped.
	for ref, id := range s.index.Tags {
		if s.images[id] == nil {
			delete(s.index.Tags, ref)
		}
	}
	for ref, id := range s.index.Digests {
		if s.images[id] == nil {
			delete(s.index.Digests, ref)
		}
	}
	return nil
}

func (s *Store) readConfig(id string) (*v1.ConfigFile, configExtra, error) {
	b, err := os.ReadFile(s.blobPath(id))
	if err != nil {
		return nil, configExtra{}, err
	}
	return parseConfig(b)
}

func parseConfig(b []byte) (*v1.ConfigFile, configExtra, error) {
	var extra configExtra
	cfg, err := v1.ParseConfigFile(bytes.NewReader(b))
	if err != nil {
		return nil, extra, err
	}
	json.Unmarshal(b, &extra) // best effort: Docker's own fields
	return cfg, extra, nil
}

// sweepLayers removes extracted layers that no image uses and no pull holds.
func (s *Store) sweepLayers() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sweepLayersLocked()
}

func (s *Store) sweepLayersLocked() []string {
	used := map[string]bool{}
	for _, rec := range s.images {
		for _, l := range rec.Layers {
			used[l.DiffID] = true
		}
	}
	var removed []string
	for d := range s.layers {
		if used[d] || s.pinned[d] > 0 {
			continue
		}
		if err := s.removeLayerDir(d); err != nil {
			s.log.Warn("remove layer", "diffID", d, "err", err)
			continue
		}
		if b := s.layers[d].Blob; b != "" {
			os.Remove(s.blobPath(b))
		}
		delete(s.layers, d)
		removed = append(removed, d)
	}
	ents, _ := os.ReadDir(filepath.Join(s.dir, "layers"))
	for _, e := range ents {
		if _, ok := s.layers["sha256:"+e.Name()]; !ok && s.pinned["sha256:"+e.Name()] == 0 {
			s.removeLayerDir("sha256:" + e.Name())
		}
	}
	return removed
}

func (s *Store) removeLayerDir(diffID string) error {
	p := s.layerDir(diffID)
	trash, err := os.MkdirTemp(filepath.Join(s.dir, "tmp"), "rm-")
	if err != nil {
		return err
	}
	if err := os.Rename(p, filepath.Join(trash, "layer")); err != nil && !os.IsNotExist(err) {
		return err
	}
	return os.RemoveAll(trash)
}

func (s *Store) blobPath(digest string) string {
	return filepath.Join(s.dir, "blobs", "sha256", strings.TrimPrefix(digest, "sha256:"))
}

func (s *Store) layerDir(diffID string) string {
	return filepath.Join(s.dir, "layers", strings.TrimPrefix(diffID, "sha256:"))
}

// LayerPath is the extracted directory of a layer (an overlayfs lower).
func (s *Store) LayerPath(diffID string) string { return filepath.Join(s.layerDir(diffID), "fs") }

// Lookup finds an image by name[:tag], name@digest, full or short ID.
func (s *Store) Lookup(ctx context.Context, ref string) (Image, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	rec, _, err := s.resolve(ref)
	if err != nil {
		return Image{}, err
	}
	return s.imageOf(rec), nil
}

// resolve finds the record ref names; byName says it was named by a
// reference rather than an ID.
func (s *Store) resolve(ref string) (rec *record, byName *reference, err error) {
	if fullIDRe.MatchString(ref) {
		if rec := s.images["sha256:"+strings.TrimPrefix(ref, "sha256:")]; rec != nil {
			return rec, nil, nil
		}
	}
	parsed, perr := parseRef(ref)
	if perr == nil {
		var id string
		if parsed.digest != "" {
			id = s.index.Digests[parsed.String()]
			if id == "" {
				// Any image of that repository whose manifest has that digest.
				for _, r := range s.images {
					if r.Manifest == parsed.digest || r.Index == parsed.digest {
						if s.hasRepo(r.ID, parsed.familiarName()) {
							id = r.ID
						}
					}
				}
			}
		} else {
			id = s.index.Tags[parsed.tagged()]
		}
		if rec := s.images[id]; rec != nil {
			return rec, &parsed, nil
		}
	}
	if hexRe.MatchString(ref) {
		prefix := "sha256:" + strings.TrimPrefix(ref, "sha256:")
		var found *record
		for id, r := range s.images {
			if strings.HasPrefix(id, prefix) {
				if found != nil {
					return nil, nil, notFoundError{ref} // ambiguous
				}
				found = r
			}
		}
		if found != nil {
			return found, nil, nil
		}
	}
	if perr != nil && !hexRe.MatchString(ref) {
		return nil, nil, perr
	}
	if perr == nil {
		return nil, nil, notFoundError{parsed.String()}
	}
	return nil, nil, notFoundError{ref}
}

func (s *Store) hasRepo(id, repo string) bool {
	for ref, rid := range s.index.Tags {
		if rid == id && strings.HasPrefix(ref, repo+":") {
			return true
		}
	}
	for ref, rid := range s.index.Digests {
		if rid == id && strings.HasPrefix(ref, repo+"@") {
			return true
		}
	}
	return false
}

// imageOf builds the exported Image. Callers hold s.mu.
func (s *Store) imageOf(rec *record) Image {
	img := Image{
		ID:          rec.ID,
		RepoTags:    []string{},
		RepoDigests: []string{},
		Created:     rec.config.Created.Time,
		Config:      rec.config,
		Parent:      rec.Parent,
		LastTagTime: rec.LastTagTime,
		Manifest:    rec.Manifest,

		Comment:         rec.extra.Comment,
		ContainerConfig: rec.extra.ContainerConfig,
	}
	for ref, id := range s.index.Tags {
		if id == rec.ID {
			img.RepoTags = append(img.RepoTags, ref)
		}
	}
	for ref, id := range s.index.Digests {
		if id == rec.ID {
			img.RepoDigests = append(img.RepoDigests, ref)
		}
	}
	sort.Strings(img.RepoTags)
	sort.Strings(img.RepoDigests)
	users := map[string]int{}
	for _, r := range s.images {
		seen := map[string]bool{}
		for _, l := range r.Layers {
			if !seen[l.DiffID] {
				users[l.DiffID]++
				seen[l.DiffID] = true
			}
		}
	}
	seen := map[string]bool{}
	for _, l := range rec.Layers {
		img.Layers = append(img.Layers, l.DiffID)
		if seen[l.DiffID] {
			continue
		}
		seen[l.DiffID] = true
		size := s.layers[l.DiffID].Size
		img.Size += size
		if users[l.DiffID] > 1 {
			img.SharedSize += size
		}
	}
	return img
}

// List returns every image, newest first.
func (s *Store) List(ctx context.Context) ([]Image, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Image, 0, len(s.images))
	for _, rec := range s.images {
		out = append(out, s.imageOf(rec))
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.After(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// LayersSize is the disk space of all extracted layers, each counted once
// (docker system df).
func (s *Store) LayersSize(ctx context.Context) int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var n int64
	for _, l := range s.layers {
		n += l.Size
	}
	return n
}

// Tag makes target ("repo[:tag]") name the image src names.
func (s *Store) Tag(ctx context.Context, src, target string) error {
	tag, err := normalizeTag(target)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, _, err := s.resolve(src)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	old := s.index.Tags[tag]
	s.index.Tags[tag] = rec.ID
	s.index.TagTime[tag] = now
	if err := s.saveIndex(); err != nil {
		if old == "" {
			delete(s.index.Tags, tag)
		} else {
			s.index.Tags[tag] = old
		}
		return err
	}
	rec.LastTagTime = now
	return s.saveRecord(rec)
}

// Remove deletes a reference or an image with Docker's rules: a name
// untags, and deletes the image when it was its last reference; an ID
// deletes the image, which needs force when several repositories name it.
// An image that containers use is not deleted: without force that is a
// conflict, with force its references go and it stays, dangling.
func (s *Store) Remove(ctx context.Context, ref string, force, noPrune bool) ([]Deleted, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, named, err := s.resolve(ref)
	if err != nil {
		return nil, err
	}
	id := rec.ID
	var users []string
	if s.inUse != nil {
		users = s.inUse(id)
	}
	tags, digests := s.refsOf(id)
	var out []Deleted
	if named != nil {
		if !force && s.singleRepo(tags, digests) && len(users) > 0 {
			return nil, conflictError(fmt.Sprintf("conflict: unable to remove repository reference %q (must force) - container %s is using its referenced image %s", ref, shortID(users[0]), shortID(id)))
		}
		key := named.String()
		if named.digest == "" {
			delete(s.index.Tags, key)
			delete(s.index.TagTime, key)
		} else {
			delete(s.index.Digests, key)
		}
		out = append(out, Deleted{Untagged: key})
		// Digest references of the repository go with its last tag.
		if named.digest == "" {
			repo := named.familiarName()
			still := false
			for _, t := range tags {
				if t != key && strings.HasPrefix(t, repo+":") {
					still = true
				}
			}
			if !still {
				for _, d := range digests {
					if strings.HasPrefix(d, repo+"@") {
						delete(s.index.Digests, d)
						out = append(out, Deleted{Untagged: d})
					}
				}
			}
		}
		if err := s.saveIndex(); err != nil {
			return nil, err
		}
		if tags, digests := s.refsOf(id); len(tags)+len(digests) > 0 || len(users) > 0 {
			return out, nil
		}
	} else {
		if !s.singleRepo(tags, digests) && !force {
			return nil, conflictError(fmt.Sprintf("conflict: unable to delete %s (must be forced) - image is referenced in multiple repositories", shortID(id)))
		}
		if len(users) > 0 && !force {
			return nil, conflictError(fmt.Sprintf("conflict: unable to delete %s (must be forced) - image is being used by stopped container %s", shortID(id), shortID(users[0])))
		}
		for _, t := range tags {
			delete(s.index.Tags, t)
			delete(s.index.TagTime, t)
			out = append(out, Deleted{Untagged: t})
		}
		for _, d := range digests {
			delete(s.index.Digests, d)
			out = append(out, Deleted{Untagged: d})
		}
		if err := s.saveIndex(); err != nil {
			return nil, err
		}
		if len(users) > 0 {
			return out, nil // forced: untagged, kept for its containers
		}
	}
	deleted, err := s.deleteImageLocked(id)
	return append(out, deleted...), err
}

// refsOf lists the tags and digest references of an image, sorted.
func (s *Store) refsOf(id string) (tags, digests []string) {
	for ref, rid := range s.index.Tags {
		if rid == id {
			tags = append(tags, ref)
		}
	}
	for ref, rid := range s.index.Digests {
		if rid == id {
			digests = append(digests, ref)
		}
	}
	sort.Strings(tags)
	sort.Strings(digests)
	return tags, digests
}

// singleRepo is Docker's isSingleReference: at most one tag, and all
// references in one repository.
func (s *Store) singleRepo(tags, digests []string) bool {
	if len(tags) > 1 {
		return false
	}
	repo := ""
	for _, t := range tags {
		repo = t[:strings.LastIndex(t, ":")]
	}
	for _, d := range digests {
		r := d[:strings.LastIndex(d, "@")]
		if repo == "" {
			repo = r
		} else if r != repo {
			return false
		}
	}
	return true
}

// deleteImageLocked removes the image record, its unshared blobs and
// layers. Callers hold s.mu and have removed its references.
func (s *Store) deleteImageLocked(id string) ([]Deleted, error) {
	rec := s.images[id]
	if rec == nil {
		return nil, nil
	}
	if err := os.Remove(filepath.Join(s.dir, "images", strings.TrimPrefix(id, "sha256:")+".json")); err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	delete(s.images, id)
	out := []Deleted{{Deleted: id}}
	// Blobs still used by other images stay.
	usedBlobs := map[string]bool{}
	usedLayers := map[string]bool{}
	for _, r := range s.images {
		usedBlobs[r.ID] = true
		usedBlobs[r.Manifest] = true
		usedBlobs[r.Index] = true
		for _, l := range r.Layers {
			usedBlobs[l.Blob] = true
			usedLayers[l.DiffID] = true
		}
	}
	blobs := []string{rec.ID, rec.Manifest, rec.Index}
	for _, l := range rec.Layers {
		blobs = append(blobs, l.Blob)
	}
	for _, b := range blobs {
		if b != "" && !usedBlobs[b] {
			os.Remove(s.blobPath(b))
		}
	}
	chain := chainIDs(rec.Layers)
	for i := len(rec.Layers) - 1; i >= 0; i-- {
		d := rec.Layers[i].DiffID
		if usedLayers[d] || s.pinned[d] > 0 {
			continue
		}
		if _, ok := s.layers[d]; !ok {
			continue
		}
		if err := s.removeLayerDir(d); err != nil {
			return out, err
		}
		delete(s.layers, d)
		usedLayers[d] = true // listed once
		out = append(out, Deleted{Deleted: chain[i]})
	}
	return out, nil
}

// chainIDs are the layer IDs Docker reports: chain(0) = diffID(0),
// chain(n) = sha256(chain(n-1) + " " + diffID(n)).
func chainIDs(layers []layerRef) []string {
	out := make([]string, len(layers))
	for i, l := range layers {
		if i == 0 {
			out[i] = l.DiffID
			continue
		}
		sum := sha256.Sum256([]byte(out[i-1] + " " + l.DiffID))
		out[i] = "sha256:" + hex.EncodeToString(sum[:])
	}
	return out
}

// PruneReport is the answer of Prune.
type PruneReport struct {
	Deleted        []Deleted
	SpaceReclaimed int64
}

// Prune removes dangling images (no tag) that no container uses; with all,
// every image that no container uses. keep, when set, spares images.
func (s *Store) Prune(ctx context.Context, all bool, keep func(Image) bool) (PruneReport, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var rep PruneReport
	before := int64(0)
	for _, l := range s.layers {
		before += l.Size
	}
	ids := make([]string, 0, len(s.images))
	for id := range s.images {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		rec := s.images[id]
		if rec == nil {
			continue
		}
		tags, digests := s.refsOf(id)
		if !all && len(tags) > 0 {
			continue
		}
		if s.inUse != nil && len(s.inUse(id)) > 0 {
			continue
		}
		if keep != nil && keep(s.imageOf(rec)) {
			continue
		}
		for _, t := range tags {
			delete(s.index.Tags, t)
			delete(s.index.TagTime, t)
			rep.Deleted = append(rep.Deleted, Deleted{Untagged: t})
		}
		for _, d := range digests {
			delete(s.index.Digests, d)
			rep.Deleted = append(rep.Deleted, Deleted{Untagged: d})
		}
		if err := s.saveIndex(); err != nil {
			return rep, err
		}
		del, err := s.deleteImageLocked(id)
		rep.Deleted = append(rep.Deleted, del...)
		if err != nil {
			return rep, err
		}
	}
	s.sweepLayersLocked()
	after := int64(0)
	for _, l := range s.layers {
		after += l.Size
	}
	rep.SpaceReclaimed = before - after
	return rep, nil
}

// HistoryEntry is one line of `docker history`.
type HistoryEntry struct {
	ID        string // the image ID on the top entry, "<missing>" below
	Created   time.Time
	CreatedBy string
	Comment   string
	Size      int64
	Tags      []string
}

// History lists how an image was built, newest first.
func (s *Store) History(ctx context.Context, ref string) ([]HistoryEntry, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	rec, _, err := s.resolve(ref)
	if err != nil {
		return nil, err
	}
	img := s.imageOf(rec)
	var out []HistoryEntry
	layer := 0
	hist := rec.config.History
	if len(hist) == 0 {
		// No history: one entry per layer.
		for range rec.Layers {
			hist = append(hist, v1.History{Created: rec.config.Created})
		}
	}
	for _, h := range hist {
		e := HistoryEntry{ID: "<missing>", Created: h.Created.Time, CreatedBy: h.CreatedBy, Comment: h.Comment}
		if !h.EmptyLayer && layer < len(rec.Layers) {
			e.Size = s.layers[rec.Layers[layer].DiffID].Size
			layer++
		}
		out = append(out, e)
	}
	slices.Reverse(out)
	if len(out) > 0 {
		out[0].ID = rec.ID
		out[0].Tags = img.RepoTags
	}
	return out, nil
}

// saveIndex writes repositories.json. Callers hold s.mu.
func (s *Store) saveIndex() error {
	b, err := json.MarshalIndent(s.index, "", "\t")
	if err != nil {
		return err
	}
	return s.writeFileAtomic(filepath.Join(s.dir, "repositories.json"), b)
}

// saveRecord writes images/<hex>.json. Callers hold s.mu.
func (s *Store) saveRecord(rec *record) error {
	b, err := json.MarshalIndent(rec, "", "\t")
	if err != nil {
		return err
	}
	return s.writeFileAtomic(filepath.Join(s.dir, "images", strings.TrimPrefix(rec.ID, "sha256:")+".json"), b)
}

// writeFileAtomic writes through a temporary file and a rename.
func (s *Store) writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), "w-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// writeBlob stores data under its digest (which it checks when given).
func (s *Store) writeBlob(digest string, r io.Reader) (string, int64, error) {
	f, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), "blob-")
	if err != nil {
		return "", 0, err
	}
	defer os.Remove(f.Name())
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", n, err
	}
	got := "sha256:" + hex.EncodeToString(h.Sum(nil))
	if digest != "" && got != digest {
		return "", n, fmt.Errorf("blob digest mismatch: want %s, got %s", digest, got)
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return "", n, err
	}
	return got, n, os.Rename(f.Name(), s.blobPath(got))
}

func (s *Store) hasBlob(digest string) bool {
	_, err := os.Stat(s.blobPath(digest))
	return err == nil
}

func clearDir(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

func randHex() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}
