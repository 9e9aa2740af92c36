package image

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/macro-cloud/macro/types"
)

// Tenancy. Images and their names belong to a tenant; content does not.
// Blobs, image records (config, layer list) and extracted layers are
// stored once by digest and shared underneath: when two tenants have the
// same image ID, that is two ownerships of one record. A tenant sees only
// what it owns: another tenant's image, tag, digest reference or pushed
// blob answers "No such image" / 404 as if it did not exist, sizes and
// "Deleted" lines are computed over the tenant's own images, and a layer
// another tenant already has is only reused once the tenant has shown
// the bytes (see ensureLayer): knowing a digest is not enough.
//
// On disk each tenant has repositories/<tenant>.json (a tenantIndex). A
// store written before tenancy had one repositories.json: it is the
// default tenant's, and every image record of such a store is owned by
// the default tenant (migrateLegacyIndex).

// tenantIndex is repositories/<tenant>.json: what a tenant owns and how it
// names it.
type tenantIndex struct {
	name string

	Images  map[string]ownership // image ID → ownership
	Tags    map[string]string    // "busybox:latest" → ID
	Digests map[string]string    // "busybox@sha256:..." → ID
	TagTime map[string]time.Time

	// What the tenant pushed through the registry (push.go): blobs it
	// uploaded or mounted, manifests it put (of any kind: images of other
	// platforms, indexes, artifacts) and its registry tags.
	Blobs     map[string]time.Time      `json:",omitempty"` // digest → last touched
	Manifests map[string]pushedManifest `json:",omitempty"` // digest → manifest
	Pushed    map[string]pushedTag      `json:",omitempty"` // "foo/bar:1" → manifest
}

// ownership is a tenant's hold on an image record.
type ownership struct {
	Added       time.Time // when the tenant got it
	LastTagTime time.Time `json:",omitzero"`
}

func newTenantIndex(name string) *tenantIndex {
	t := &tenantIndex{name: name}
	t.init()
	return t
}

func (t *tenantIndex) init() {
	if t.Images == nil {
		t.Images = map[string]ownership{}
	}
	if t.Tags == nil {
		t.Tags = map[string]string{}
	}
	if t.Digests == nil {
		t.Digests = map[string]string{}
	}
	if t.TagTime == nil {
		t.TagTime = map[string]time.Time{}
	}
	if t.Blobs == nil {
		t.Blobs = map[string]time.Time{}
	}
	if t.Manifests == nil {
		t.Manifests = map[string]pushedManifest{}
	}
	if t.Pushed == nil {
		t.Pushed = map[string]pushedTag{}
	}
}

// empty says the index holds nothing (its file can go).
func (t *tenantIndex) empty() bool {
	return len(t.Images)+len(t.Tags)+len(t.Digests)+len(t.Blobs)+len(t.Manifests)+len(t.Pushed) == 0
}

// TenantView is the store as one tenant sees it. Every name it takes or
// returns is the tenant's; IDs of images the tenant does not own answer
// ErrNotFound.
type TenantView struct {
	s     *Store
	name  string
	local []string // more names of this cloud's registry (WithRegistryHost)
}

// Tenant is the store as tenant name sees it.
func (s *Store) Tenant(name string) *TenantView { return &TenantView{s: s, name: name} }

// Name is the tenant's name.
func (v *TenantView) Name() string { return v.name }

// tenantLocked returns the tenant's index, creating an empty one (not yet
// saved). Callers hold s.mu for writing, or for reading and do not keep
// an index that did not exist.
func (s *Store) tenantLocked(name string) *tenantIndex {
	if t := s.tenants[name]; t != nil {
		return t
	}
	return newTenantIndex(name)
}

// tenantForWrite returns the tenant's index, registering a new one.
// Callers hold s.mu for writing.
func (s *Store) tenantForWrite(name string) *tenantIndex {
	t := s.tenants[name]
	if t == nil {
		t = newTenantIndex(name)
		s.tenants[name] = t
	}
	return t
}

// ownersLocked counts the tenants owning an image.
func (s *Store) ownedLocked(id string) bool {
	for _, t := range s.tenants {
		if _, ok := t.Images[id]; ok {
			return true
		}
	}
	return false
}

var safeTenantFile = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,99}$`)

// tenantFile is the file name of a tenant's index: the name itself when it
// is a plain lowercase name, else "~" and its hex (no name can escape the
// directory or collide with another).
func tenantFile(name string) string {
	if safeTenantFile.MatchString(name) {
		return name + ".json"
	}
	return "~" + hex.EncodeToString([]byte(name)) + ".json"
}

func tenantFromFile(file string) (string, bool) {
	base, ok := strings.CutSuffix(file, ".json")
	if !ok {
		return "", false
	}
	if h, ok := strings.CutPrefix(base, "~"); ok {
		b, err := hex.DecodeString(h)
		return string(b), err == nil
	}
	return base, safeTenantFile.MatchString(base)
}

func (s *Store) reposDir() string { return filepath.Join(s.dir, "repositories") }

// saveTenant writes repositories/<tenant>.json (or removes it when the
// tenant holds nothing). Callers hold s.mu.
func (s *Store) saveTenant(t *tenantIndex) error {
	if err := s.publishLocked(t); err != nil {
		// The index refused: this store stays as it was.
		s.reloadTenantLocked(t.name)
		return err
	}
	if err := s.writeTenant(t); err != nil {
		return err
	}
	if s.saved != nil {
		s.saved[t.name] = namesOf(t)
	}
	return nil
}

func (s *Store) writeTenant(t *tenantIndex) error {
	p := filepath.Join(s.reposDir(), tenantFile(t.name))
	if t.empty() {
		delete(s.tenants, t.name)
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			return err
		}
		return nil
	}
	s.tenants[t.name] = t
	b, err := json.MarshalIndent(t, "", "\t")
	if err != nil {
		return err
	}
	return s.writeFileAtomic(p, b)
}

// loadTenants reads repositories/, after migrating a store written before
// tenancy. Image records are loaded.
func (s *Store) loadTenants() error {
	if err := os.MkdirAll(s.reposDir(), 0o711); err != nil {
		return err
	}
	if err := s.migrateLegacyIndex(); err != nil {
		return fmt.Errorf("migrate repositories.json: %w", err)
	}
	ents, err := os.ReadDir(s.reposDir())
	if err != nil {
		return err
	}
	for _, e := range ents {
		name, ok := tenantFromFile(e.Name())
		if !ok {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.reposDir(), e.Name()))
		if err != nil {
			return err
		}
		t := &tenantIndex{}
		if err := json.Unmarshal(b, t); err != nil {
			return fmt.Errorf("%s: %w", e.Name(), err)
		}
		t.name = name
		t.init()
		s.tenants[name] = t
	}
	return nil
}

// legacyIndex is repositories.json of a store written before tenancy.
type legacyIndex struct {
	Tags    map[string]string
	Digests map[string]string
	TagTime map[string]time.Time
}

// migrateLegacyIndex makes a tenant-less repositories.json the default
// tenant's, with every image record of the store owned by it. The new
// file is written before the old one goes, so a crash in between
// migrates again.
func (s *Store) migrateLegacyIndex() error {
	legacy := filepath.Join(s.dir, "repositories.json")
	b, err := os.ReadFile(legacy)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	target := filepath.Join(s.reposDir(), tenantFile(types.DefaultTenant))
	if _, err := os.Stat(target); err == nil {
		return os.Remove(legacy) // migrated before a crash
	}
	var old legacyIndex
	if err := json.Unmarshal(b, &old); err != nil {
		return err
	}
	t := newTenantIndex(types.DefaultTenant)
	for k, v := range old.Tags {
		t.Tags[k] = v
	}
	for k, v := range old.Digests {
		t.Digests[k] = v
	}
	for k, v := range old.TagTime {
		t.TagTime[k] = v
	}
	for id, rec := range s.images {
		t.Images[id] = ownership{Added: rec.Added, LastTagTime: rec.LastTagTime}
	}
	if err := s.saveTenant(t); err != nil {
		return err
	}
	s.log.Info("migrated the image index to the default tenant", "images", len(t.Images), "tags", len(t.Tags))
	return os.Remove(legacy)
}

// reloadTenantLocked rereads a tenant's index from disk, dropping changes
// that could not be saved. Callers hold s.mu.
func (s *Store) reloadTenantLocked(name string) {
	delete(s.tenants, name)
	b, err := os.ReadFile(filepath.Join(s.reposDir(), tenantFile(name)))
	if err != nil {
		return
	}
	t := &tenantIndex{}
	if json.Unmarshal(b, t) == nil {
		t.name = name
		t.init()
		s.tenants[name] = t
	}
}
