package image

// Image storage quotas and the removal of a tenant.
//
// A tenant's image storage is the size of the layers of its images, each
// layer counted once, as `docker system df` shows it (uncompressed:
// what the layers take on the node). Layers a tenant shares with another
// tenant count for both: each would need them on its own. The check is
// made where every ingest ends, in commit, under the store's lock, so two
// concurrent loads, pulls or pushes of one tenant cannot both slip under
// the limit; an image that adds nothing to the tenant's layers (a new tag,
// a load of what it has) always passes. A refused image is not committed,
// and the layers it extracted that nothing else uses are removed when its
// ingest releases them (see pin). Blob uploads to the registry are checked
// too, against the tenant's images and the blobs it pushed that no image
// of it uses yet, so a push cannot park unbounded data before its
// manifest.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// ErrQuotaExceeded is returned (wrapped in a *QuotaError) when an image
// would take a tenant over its image storage quota.
var ErrQuotaExceeded = errors.New("quota exceeded")

// QuotaError says by how much an image would exceed a tenant's quota.
type QuotaError struct {
	Tenant string
	Limit  int64 // bytes the tenant may store
	Used   int64 // bytes it stores now
	Adds   int64 // bytes the refused image or blob would add
}

func (e *QuotaError) Error() string {
	return fmt.Sprintf("quota exceeded: tenant %s may store %s of images, has %s, and this would add %s: remove images (docker image prune -a, docker rmi) or ask for a larger quota",
		e.Tenant, HumanSize(e.Limit), HumanSize(e.Used), HumanSize(e.Adds))
}

func (e *QuotaError) Is(target error) bool { return target == ErrQuotaExceeded }

// HTTPStatus is 403: the request is understood and refused by policy.
func (e *QuotaError) HTTPStatus() int { return 403 }

// HumanSize writes bytes in binary units ("1.5 GiB").
func HumanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// SetQuota installs the hook that tells a tenant's image storage limit
// in bytes (0: none). The server reads it from the tenant's record.
func (s *Store) SetQuota(fn func(ctx context.Context, tenant string) (int64, error)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.quota = fn
}

// quotaOf reads the tenant's limit; 0 without a hook.
func (s *Store) quotaOf(tenant string) (int64, error) {
	s.mu.RLock()
	fn := s.quota
	s.mu.RUnlock()
	if fn == nil {
		return 0, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	limit, err := fn(ctx, tenant)
	if err != nil {
		return 0, fmt.Errorf("image quota of %s: %w", tenant, err)
	}
	return limit, nil
}

// checkQuotaLocked refuses layers that would take the tenant over limit.
// Callers hold s.mu and made sure every layer is extracted.
func (s *Store) checkQuotaLocked(t *tenantIndex, layers []layerRef, limit int64) error {
	if limit <= 0 {
		return nil
	}
	used, have := s.quotaUsedLocked(t)
	var adds int64
	for _, l := range layers {
		if !have[l.DiffID] {
			have[l.DiffID] = true
			adds += s.layers[l.DiffID].Size
		}
	}
	if adds > 0 && used+adds > limit {
		return &QuotaError{Tenant: t.name, Limit: limit, Used: used, Adds: adds}
	}
	return nil
}

// quotaUsedLocked is what the tenant's quota counts: the layers of its
// images here and, in a cluster, on the other servers, each layer once
// however many servers hold it. Callers hold s.mu.
func (s *Store) quotaUsedLocked(t *tenantIndex) (int64, map[string]bool) {
	have := s.tenantLayersOfLocked(t)
	used := s.tenantLayersSizeLocked(t)
	if s.clusterLayers != nil {
		for d, size := range s.clusterLayers(t.name) {
			if !have[d] {
				have[d] = true
				used += size
			}
		}
	}
	return used, have
}

// tenantLayersOfLocked is the set of diffIDs the tenant's images use.
func (s *Store) tenantLayersOfLocked(t *tenantIndex) map[string]bool {
	out := map[string]bool{}
	for id := range t.Images {
		if rec := s.images[id]; rec != nil {
			for _, l := range rec.Layers {
				out[l.DiffID] = true
			}
		}
	}
	return out
}

// checkBlobQuotaLocked refuses a pushed blob of size bytes that would take
// the tenant's images and pending pushed blobs over its limit. Callers
// hold s.mu.
func (s *Store) checkBlobQuotaLocked(t *tenantIndex, digest string, size, limit int64) error {
	if limit <= 0 {
		return nil
	}
	used, _ := s.quotaUsedLocked(t)
	inImages := map[string]bool{}
	for id := range t.Images {
		if rec := s.images[id]; rec != nil {
			inImages[rec.ID] = true
			for _, l := range rec.Layers {
				inImages[l.Blob] = true
			}
		}
	}
	if inImages[digest] {
		return nil
	}
	if _, ok := t.Blobs[digest]; ok {
		return nil // counted already
	}
	for d := range t.Blobs {
		if inImages[d] {
			continue
		}
		if fi, err := os.Stat(s.blobPath(d)); err == nil {
			used += fi.Size()
		}
	}
	if used+size > limit {
		return &QuotaError{Tenant: t.name, Limit: limit, Used: used, Adds: size}
	}
	return nil
}

// Usage is the tenant's image storage as its quota counts it.
func (v *TenantView) Usage(ctx context.Context) int64 {
	s := v.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	used, _ := s.quotaUsedLocked(s.tenantLocked(v.name))
	return used
}

// ImageBytes is tenant's image storage as its quota counts it.
func (s *Store) ImageBytes(ctx context.Context, tenant string) int64 {
	return s.Tenant(tenant).Usage(ctx)
}

// RemoveTenant drops everything the tenant has in the store, whether
// containers used it or not (they are gone with the tenant): its images,
// tags, digest references and what it pushed to the registry. The content
// no other tenant holds is deleted. It returns how many images the tenant
// had.
func (s *Store) RemoveTenant(ctx context.Context, tenant string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tenants[tenant]
	if t == nil {
		return 0, nil
	}
	n := len(t.Images)
	ids := make([]string, 0, n)
	for id := range t.Images {
		ids = append(ids, id)
	}
	// The tenant's index goes first: from then on it owns nothing, even
	// if removing content fails half way (what is left is swept as
	// unowned on the next start).
	empty := newTenantIndex(tenant)
	if err := s.saveTenant(empty); err != nil {
		return 0, err
	}
	var errs []error
	for _, id := range ids {
		if !s.ownedLocked(id) {
			if err := s.deleteContentLocked(id); err != nil {
				errs = append(errs, err)
			}
		}
	}
	// Pushed blobs and manifests nothing refers to any more.
	used := s.usedBlobsLocked()
	for d := range t.Blobs {
		if !used[d] {
			os.Remove(s.blobPath(d))
		}
	}
	for d := range t.Manifests {
		if !used[d] {
			os.Remove(s.blobPath(d))
		}
	}
	s.sweepLayersLocked()
	if _, err := os.Stat(filepath.Join(s.reposDir(), tenantFile(tenant))); err == nil {
		errs = append(errs, fmt.Errorf("the index of %s is still there", tenant))
	}
	return n, errors.Join(errs...)
}
