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

	"github.com/macro-cloud/macro/internal/atomicfile"
	"github.com/macro-cloud/macro/types"
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
	// LocalRegistries are host[:port] names of this cloud's own registry:
	// a reference through one of them ("HOST:PORT/foo:1") is the tenant's
	// own "foo:1", never pulled from anywhere.
	LocalRegistries []string
}

// Store is the node's image store. It is safe for concurrent use.
type Store struct {
	dir      string
	log      *slog.Logger
	insecure []string
	platform v1.Platform
	local    []string

	mu      sync.RWMutex
	images  map[string]*record // by ID
	tenants map[string]*tenantIndex
	layers  map[string]layerMeta // by diffID
	pinned  map[string]int       // diffIDs of layers in use by ongoing pulls and loads
	inUse   func(tenant, imageID string) []string
	quota   func(ctx context.Context, tenant string) (int64, error) // see SetQuota
	extract singleflight.Group

	// In a cluster (cluster.go): the hook every commit publishes through,
	// what each tenant had at its last save, whether this commit is a
	// replica or the index's own (quiet: not published), and the layers
	// of each tenant's images in the whole cluster.
	publish       func(IndexChange) error
	saved         map[string]savedNames
	replica       bool
	quiet         bool
	clusterLayers func(tenant string) map[string]int64
}

// record is an image as stored in images/<hex>.json: content, shared by
// the tenants that own it.
type record struct {
	ID       string
	Manifest string `json:",omitempty"` // manifest digest
	Index    string `json:",omitempty"` // index digest it was resolved from
	Layers   []layerRef
	Parent   string    `json:",omitempty"`
	Added    time.Time // when it entered the store
	// LastTagTime is read from stores written before tenancy only (it is
	// the tenant's now: ownership.LastTagTime).
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
	Size      int64 // bytes of its files and symlinks, as dockerd counts a layer
	Blob      string
	MediaType string `json:",omitempty"`
	BlobSize  int64
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
		local:    cfg.LocalRegistries,
		images:   map[string]*record{},
		tenants:  map[string]*tenantIndex{},
		layers:   map[string]layerMeta{},
		pinned:   map[string]int{},
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

// Platform is the platform images are pulled for and pushed images must
// have to become runnable images.
func (s *Store) Platform() v1.Platform { return s.platform }

// SetInUse installs the hook that tells which containers use an image.
//
// Deprecated: tenant-less: fn sees every tenant's containers, and their
// IDs would show in another tenant's conflict messages. Use
// SetInUseByTenant.
func (s *Store) SetInUse(fn func(imageID string) (containerIDs []string)) {
	if fn == nil {
		s.SetInUseByTenant(nil)
		return
	}
	s.SetInUseByTenant(func(_, imageID string) []string { return fn(imageID) })
}

// SetInUseByTenant installs the hook that tells which containers of a
// tenant use an image; images in use are not removed without force and
// never pruned.
func (s *Store) SetInUseByTenant(fn func(tenant, imageID string) (containerIDs []string)) {
	s.mu.Lock()
	s.inUse = fn
	s.mu.Unlock()
}

func (s *Store) usersLocked(tenant, id string) []string {
	if s.inUse == nil {
		return nil
	}
	return s.inUse(tenant, id)
}

func (s *Store) loadState() error {
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
	if err := s.loadTenants(); err != nil {
		return err
	}
	// Names and ownerships of images that are gone are dropped.
	for _, t := range s.tenants {
		changed := false
		for id := range t.Images {
			if s.images[id] == nil {
				delete(t.Images, id)
				changed = true
			}
		}
		for ref, id := range t.Tags {
			if _, ok := t.Images[id]; !ok {
				delete(t.Tags, ref)
				delete(t.TagTime, ref)
				changed = true
			}
		}
		for ref, id := range t.Digests {
			if _, ok := t.Images[id]; !ok {
				delete(t.Digests, ref)
				changed = true
			}
		}
		if changed {
			if err := s.saveTenant(t); err != nil {
				return err
			}
		}
	}
	// A record no tenant owns was being committed when the store stopped.
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range s.images {
		if !s.ownedLocked(id) {
			s.log.Info("removing an image no tenant owns", "id", id)
			if err := s.deleteContentLocked(id); err != nil {
				return err
			}
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
	var removed, blobs []string
	for d, m := range s.layers {
		if used[d] || s.pinned[d] > 0 {
			continue
		}
		if err := s.removeLayerDir(d); err != nil {
			s.log.Warn("remove layer", "diffID", d, "err", err)
			continue
		}
		delete(s.layers, d)
		removed = append(removed, d)
		blobs = append(blobs, m.Blob)
	}
	usedBlobs := s.usedBlobsLocked()
	for _, b := range blobs {
		if b != "" && !usedBlobs[b] {
			os.Remove(s.blobPath(b))
		}
	}
	ents, _ := os.ReadDir(filepath.Join(s.dir, "layers"))
	for _, e := range ents {
		if _, ok := s.layers["sha256:"+e.Name()]; !ok && s.pinned["sha256:"+e.Name()] == 0 {
			s.removeLayerDir("sha256:" + e.Name())
		}
	}
	return removed
}

// usedBlobsLocked is every blob something refers to: image records
// (config, manifest, index, layer blobs), extracted layers and what
// tenants pushed to the registry.
func (s *Store) usedBlobsLocked() map[string]bool {
	used := map[string]bool{}
	for _, r := range s.images {
		used[r.ID] = true
		used[r.Manifest] = true
		used[r.Index] = true
		for _, l := range r.Layers {
			used[l.Blob] = true
		}
	}
	for _, m := range s.layers {
		used[m.Blob] = true
	}
	for _, t := range s.tenants {
		for d := range t.Blobs {
			used[d] = true
		}
		for d := range t.Manifests {
			used[d] = true
		}
	}
	delete(used, "")
	return used
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

// Lookup finds an image of the default tenant.
//
// Deprecated: tenant-less, for the default tenant. Use
// Tenant(t).Lookup, or LookupID for an ID resolved earlier in its tenant.
func (s *Store) Lookup(ctx context.Context, ref string) (Image, error) {
	return s.Tenant(types.DefaultTenant).Lookup(ctx, ref)
}

// List lists the default tenant's images.
//
// Deprecated: tenant-less, for the default tenant. Use Tenant(t).List.
func (s *Store) List(ctx context.Context) ([]Image, error) {
	return s.Tenant(types.DefaultTenant).List(ctx)
}

// LookupID finds an image by its full ID whatever tenant owns it: for the
// node agent, which runs pods whose image was resolved in their tenant
// when they were created. The Image has no names (names are a tenant's).
func (s *Store) LookupID(ctx context.Context, id string) (Image, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	rec, err := s.recordByIDLocked(id)
	if err != nil {
		return Image{}, err
	}
	return s.imageOf(nil, rec), nil
}

func (s *Store) recordByIDLocked(id string) (*record, error) {
	if fullIDRe.MatchString(id) {
		if rec := s.images["sha256:"+strings.TrimPrefix(id, "sha256:")]; rec != nil {
			return rec, nil
		}
	}
	return nil, notFoundError{id}
}

// Lookup finds an image of the tenant by name[:tag], name@digest, full or
// short ID.
func (v *TenantView) Lookup(ctx context.Context, ref string) (Image, error) {
	s := v.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	t, rec, _, err := v.resolveLocked(ref)
	if err != nil {
		return Image{}, err
	}
	return s.imageOf(t, rec), nil
}

// parse parses a reference of the tenant: a reference through this
// cloud's own registry ("HOST:PORT/foo:1") names the tenant's "foo:1".
func (v *TenantView) parse(ref string) (reference, error) {
	r, err := parseRef(ref)
	if err != nil {
		return r, err
	}
	if v.isLocal(r.registry) {
		rest := r.repo
		if r.digest != "" {
			rest += "@" + r.digest
		} else {
			rest += ":" + r.tag
		}
		local, err := parseRef(rest)
		if err != nil {
			return r, err
		}
		local.local = true
		return local, nil
	}
	return r, nil
}

// isLocal says registry names this cloud's own registry.
func (v *TenantView) isLocal(registry string) bool {
	return slices.Contains(v.s.local, registry) || slices.Contains(v.local, registry)
}

// WithRegistryHost is the view in which references through host (the
// host[:port] a client reached this cloud by, which serves the registry
// too) name the tenant's own images, as the store's LocalRegistries do.
func (v *TenantView) WithRegistryHost(hosts ...string) *TenantView {
	c := *v
	for _, h := range hosts {
		if h != "" {
			c.local = append(slices.Clip(c.local), strings.ToLower(h))
		}
	}
	return &c
}

// resolveLocked finds the record ref names in the tenant; byName says it
// was named by a reference rather than an ID. Callers hold s.mu.
func (v *TenantView) resolveLocked(ref string) (t *tenantIndex, rec *record, byName *reference, err error) {
	s := v.s
	t = s.tenantLocked(v.name)
	owned := func(id string) *record {
		if _, ok := t.Images[id]; ok {
			return s.images[id]
		}
		return nil
	}
	if fullIDRe.MatchString(ref) {
		if rec := owned("sha256:" + strings.TrimPrefix(ref, "sha256:")); rec != nil {
			return t, rec, nil, nil
		}
	}
	parsed, perr := v.parse(ref)
	if perr == nil {
		var id string
		if parsed.digest != "" {
			id = t.Digests[parsed.String()]
			if id == "" {
				// Any image of that repository whose manifest has that digest.
				for rid := range t.Images {
					r := s.images[rid]
					if r != nil && (r.Manifest == parsed.digest || r.Index == parsed.digest) && hasRepo(t, rid, parsed.familiarName()) {
						id = rid
					}
				}
			}
		} else {
			id = t.Tags[parsed.tagged()]
		}
		if rec := owned(id); rec != nil {
			return t, rec, &parsed, nil
		}
	}
	if hexRe.MatchString(ref) {
		prefix := "sha256:" + strings.TrimPrefix(ref, "sha256:")
		var found *record
		for id := range t.Images {
			if strings.HasPrefix(id, prefix) {
				if found != nil {
					return t, nil, nil, notFoundError{ref} // ambiguous
				}
				found = s.images[id]
			}
		}
		if found != nil {
			return t, found, nil, nil
		}
	}
	if perr != nil && !hexRe.MatchString(ref) {
		return t, nil, nil, perr
	}
	if perr == nil {
		return t, nil, nil, notFoundError{parsed.String()}
	}
	return t, nil, nil, notFoundError{ref}
}

func hasRepo(t *tenantIndex, id, repo string) bool {
	for ref, rid := range t.Tags {
		if rid == id && strings.HasPrefix(ref, repo+":") {
			return true
		}
	}
	for ref, rid := range t.Digests {
		if rid == id && strings.HasPrefix(ref, repo+"@") {
			return true
		}
	}
	return false
}

// imageOf builds the exported Image as tenant t sees it (nil: no names,
// sizes shared with nothing). Callers hold s.mu.
func (s *Store) imageOf(t *tenantIndex, rec *record) Image {
	img := Image{
		ID:          rec.ID,
		RepoTags:    []string{},
		RepoDigests: []string{},
		Created:     rec.config.Created.Time,
		Config:      rec.config,
		Parent:      rec.Parent,
		Manifest:    rec.Manifest,

		Comment:         rec.extra.Comment,
		ContainerConfig: rec.extra.ContainerConfig,
	}
	users := map[string]int{}
	if t != nil {
		img.LastTagTime = t.Images[rec.ID].LastTagTime
		img.RepoTags, img.RepoDigests = refsOf(t, rec.ID)
		if img.RepoTags == nil {
			img.RepoTags = []string{}
		}
		if img.RepoDigests == nil {
			img.RepoDigests = []string{}
		}
		// Shared with the tenant's other images only: what other
		// tenants have is invisible.
		for id := range t.Images {
			r := s.images[id]
			if r == nil {
				continue
			}
			seen := map[string]bool{}
			for _, l := range r.Layers {
				if !seen[l.DiffID] {
					users[l.DiffID]++
					seen[l.DiffID] = true
				}
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

// List returns every image of the tenant, newest first.
func (v *TenantView) List(ctx context.Context) ([]Image, error) {
	s := v.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	t := s.tenantLocked(v.name)
	out := make([]Image, 0, len(t.Images))
	for id := range t.Images {
		if rec := s.images[id]; rec != nil {
			out = append(out, s.imageOf(t, rec))
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.After(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// LayersSize is the disk space of the tenant's extracted layers, each
// counted once (docker system df).
func (v *TenantView) LayersSize(ctx context.Context) int64 {
	s := v.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.tenantLayersSizeLocked(s.tenantLocked(v.name))
}

func (s *Store) tenantLayersSizeLocked(t *tenantIndex) int64 {
	seen := map[string]bool{}
	var n int64
	for id := range t.Images {
		if rec := s.images[id]; rec != nil {
			for _, l := range rec.Layers {
				if !seen[l.DiffID] {
					seen[l.DiffID] = true
					n += s.layers[l.DiffID].Size
				}
			}
		}
	}
	return n
}

// Tag makes target ("repo[:tag]") name the image src names.
func (v *TenantView) Tag(ctx context.Context, src, target string) error {
	tr, err := v.parse(target)
	if err != nil {
		return err
	}
	if tr.digest != "" {
		return badRefError(fmt.Sprintf("refusing to create a tag with a digest reference: %s", target))
	}
	tag := tr.tagged()
	s := v.s
	s.mu.Lock()
	defer s.mu.Unlock()
	_, rec, _, err := v.resolveLocked(src)
	if err != nil {
		return err
	}
	t := s.tenantForWrite(v.name)
	now := time.Now().UTC()
	old, oldTime := t.Tags[tag], t.TagTime[tag]
	own := t.Images[rec.ID]
	t.Tags[tag] = rec.ID
	t.TagTime[tag] = now
	o := own
	o.LastTagTime = now
	t.Images[rec.ID] = o
	if err := s.saveTenant(t); err != nil {
		if old == "" {
			delete(t.Tags, tag)
			delete(t.TagTime, tag)
		} else {
			t.Tags[tag], t.TagTime[tag] = old, oldTime
		}
		t.Images[rec.ID] = own
		return err
	}
	return nil
}

// Remove deletes a reference or an image of the tenant with Docker's
// rules: a name untags, and deletes the image when it was its last
// reference; an ID deletes the image, which needs force when several
// repositories name it. An image that containers use is not deleted:
// without force that is a conflict, with force its references go and it
// stays, dangling. Deleting is dropping the tenant's ownership: the
// content goes once no tenant owns it, and what is deleted is reported as
// the tenant sees it.
func (v *TenantView) Remove(ctx context.Context, ref string, force, noPrune bool) ([]Deleted, error) {
	s := v.s
	s.mu.Lock()
	defer s.mu.Unlock()
	_, rec, named, err := v.resolveLocked(ref)
	if err != nil {
		return nil, err
	}
	t := s.tenantForWrite(v.name)
	id := rec.ID
	users := s.usersLocked(v.name, id)
	tags, digests := refsOf(t, id)
	var out []Deleted
	if named != nil {
		if !force && singleRepo(tags, digests) && len(users) > 0 {
			return nil, conflictError(fmt.Sprintf("conflict: unable to remove repository reference %q (must force) - container %s is using its referenced image %s", ref, shortID(users[0]), shortID(id)))
		}
		key := named.String()
		if named.digest == "" {
			delete(t.Tags, key)
			delete(t.TagTime, key)
		} else {
			delete(t.Digests, key)
		}
		out = append(out, Deleted{Untagged: key})
		// Digest references of the repository go with its last tag.
		if named.digest == "" {
			repo := named.familiarName()
			still := false
			for _, tg := range tags {
				if tg != key && strings.HasPrefix(tg, repo+":") {
					still = true
				}
			}
			if !still {
				for _, d := range digests {
					if strings.HasPrefix(d, repo+"@") {
						delete(t.Digests, d)
						out = append(out, Deleted{Untagged: d})
					}
				}
			}
		}
		if tags, digests := refsOf(t, id); len(tags)+len(digests) > 0 || len(users) > 0 {
			return out, s.saveTenant(t)
		}
	} else {
		if !singleRepo(tags, digests) && !force {
			return nil, conflictError(fmt.Sprintf("conflict: unable to delete %s (must be forced) - image is referenced in multiple repositories", shortID(id)))
		}
		if len(users) > 0 && !force {
			return nil, conflictError(fmt.Sprintf("conflict: unable to delete %s (must be forced) - image is being used by stopped container %s", shortID(id), shortID(users[0])))
		}
		for _, tg := range tags {
			delete(t.Tags, tg)
			delete(t.TagTime, tg)
			out = append(out, Deleted{Untagged: tg})
		}
		for _, d := range digests {
			delete(t.Digests, d)
			out = append(out, Deleted{Untagged: d})
		}
		if len(users) > 0 {
			return out, s.saveTenant(t) // forced: untagged, kept for its containers
		}
	}
	deleted, err := s.disownLocked(t, id)
	return append(out, deleted...), err
}

// refsOf lists the tags and digest references of an image in a tenant,
// sorted.
func refsOf(t *tenantIndex, id string) (tags, digests []string) {
	for ref, rid := range t.Tags {
		if rid == id {
			tags = append(tags, ref)
		}
	}
	for ref, rid := range t.Digests {
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
func singleRepo(tags, digests []string) bool {
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

// disownLocked drops the tenant's ownership of an image whose references
// are gone, saves the tenant, and deletes the content when no tenant owns
// it any more. The answer is what the tenant sees deleted: the image and
// the layers none of its other images use. Callers hold s.mu.
func (s *Store) disownLocked(t *tenantIndex, id string) ([]Deleted, error) {
	rec := s.images[id]
	if _, ok := t.Images[id]; !ok || rec == nil {
		return nil, nil
	}
	delete(t.Images, id)
	if err := s.saveTenant(t); err != nil {
		t.Images[id] = ownership{Added: time.Now().UTC()}
		return nil, err
	}
	out := []Deleted{{Deleted: id}}
	kept := map[string]bool{}
	for oid := range t.Images {
		if r := s.images[oid]; r != nil {
			for _, l := range r.Layers {
				kept[l.DiffID] = true
			}
		}
	}
	chain := chainIDs(rec.Layers)
	for i := len(rec.Layers) - 1; i >= 0; i-- {
		d := rec.Layers[i].DiffID
		if kept[d] {
			continue
		}
		kept[d] = true // listed once
		out = append(out, Deleted{Deleted: chain[i]})
	}
	if s.ownedLocked(id) {
		return out, nil
	}
	return out, s.deleteContentLocked(id)
}

// deleteContentLocked removes an image record that no tenant owns, its
// blobs and its layers that nothing else uses. Callers hold s.mu.
func (s *Store) deleteContentLocked(id string) error {
	rec := s.images[id]
	if rec == nil {
		return nil
	}
	if err := os.Remove(filepath.Join(s.dir, "images", strings.TrimPrefix(id, "sha256:")+".json")); err != nil && !os.IsNotExist(err) {
		return err
	}
	delete(s.images, id)
	usedLayers := map[string]bool{}
	for _, r := range s.images {
		for _, l := range r.Layers {
			usedLayers[l.DiffID] = true
		}
	}
	for _, l := range rec.Layers {
		d := l.DiffID
		if usedLayers[d] || s.pinned[d] > 0 {
			continue
		}
		if _, ok := s.layers[d]; !ok {
			continue
		}
		if err := s.removeLayerDir(d); err != nil {
			return err
		}
		delete(s.layers, d)
		usedLayers[d] = true
	}
	// Blobs still used by other images, layers or pushes stay.
	usedBlobs := s.usedBlobsLocked()
	blobs := []string{rec.ID, rec.Manifest, rec.Index}
	for _, l := range rec.Layers {
		blobs = append(blobs, l.Blob)
	}
	for _, b := range blobs {
		if b != "" && !usedBlobs[b] {
			os.Remove(s.blobPath(b))
		}
	}
	return nil
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

// Prune removes the tenant's dangling images (no tag) that no container
// uses; with all, every image that no container uses. keep, when set,
// spares images. The space reclaimed is the tenant's.
func (v *TenantView) Prune(ctx context.Context, all bool, keep func(Image) bool) (PruneReport, error) {
	s := v.s
	s.mu.Lock()
	defer s.mu.Unlock()
	var rep PruneReport
	t := s.tenantForWrite(v.name)
	before := s.tenantLayersSizeLocked(t)
	ids := make([]string, 0, len(t.Images))
	for id := range t.Images {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		rec := s.images[id]
		if rec == nil {
			continue
		}
		tags, digests := refsOf(t, id)
		if !all && len(tags) > 0 {
			continue
		}
		if len(s.usersLocked(v.name, id)) > 0 {
			continue
		}
		if keep != nil && keep(s.imageOf(t, rec)) {
			continue
		}
		for _, tg := range tags {
			delete(t.Tags, tg)
			delete(t.TagTime, tg)
			rep.Deleted = append(rep.Deleted, Deleted{Untagged: tg})
		}
		for _, d := range digests {
			delete(t.Digests, d)
			rep.Deleted = append(rep.Deleted, Deleted{Untagged: d})
		}
		del, err := s.disownLocked(t, id)
		rep.Deleted = append(rep.Deleted, del...)
		if err != nil {
			return rep, err
		}
	}
	if err := s.saveTenant(t); err != nil {
		return rep, err
	}
	s.sweepLayersLocked()
	rep.SpaceReclaimed = before - s.tenantLayersSizeLocked(t)
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

// History lists how an image of the tenant was built, newest first.
func (v *TenantView) History(ctx context.Context, ref string) ([]HistoryEntry, error) {
	s := v.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	t, rec, _, err := v.resolveLocked(ref)
	if err != nil {
		return nil, err
	}
	img := s.imageOf(t, rec)
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

// saveRecord writes images/<hex>.json. Callers hold s.mu.
func (s *Store) saveRecord(rec *record) error {
	b, err := json.MarshalIndent(rec, "", "\t")
	if err != nil {
		return err
	}
	return s.writeFileAtomic(filepath.Join(s.dir, "images", strings.TrimPrefix(rec.ID, "sha256:")+".json"), b)
}

// writeFileAtomic writes a record or index whole (internal/atomicfile).
func (s *Store) writeFileAtomic(path string, data []byte) error {
	return atomicfile.Write(path, data, 0o644)
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
