package image

// The store in a cluster. Each server has its own store; the cluster's
// image index (types.ClusterImage in the state store) is the truth about
// which images a tenant has and how it names them. The store takes part
// through two doors:
//
//   - SetPublish installs a hook that every commit of a tenant's images
//     and names calls with what changed (a IndexChange), under the store's
//     lock and before the change is written here: the index learns of it
//     in the same place the store commits it, and a refusal of the index
//     (it cannot be reached) fails the operation, which leaves the store
//     as it was.
//   - TenantView.ApplyIndex makes the store's view of a tenant that of the
//     index: images the index no longer has go, names are the index's.
//     It publishes nothing.
//
// A store without the hook (a single server's, tests, remote agents)
// works as it always did.

import (
	"context"
	"errors"
	"maps"
	"sort"
	"time"

	"github.com/macro-cloud/macro/types"
)

// IndexChange is what one commit did to a tenant's images in this store.
type IndexChange struct {
	Tenant string
	// Replica: the images were copied from another server of the cluster
	// (WithReplica), so only that this store holds them is news.
	Replica bool
	// Added are the images the tenant got here, with their names.
	Added []types.ClusterImage
	// Removed are the IDs of images the tenant no longer has.
	Removed []string
	// Refs are references (tags "foo:1", digests "foo@sha256:...") that
	// now name an image (ID), Dropped those that no longer name the ID
	// they named.
	Refs    map[string]string
	Dropped map[string]string
}

func (c IndexChange) empty() bool {
	return len(c.Added)+len(c.Removed)+len(c.Refs)+len(c.Dropped) == 0
}

// SetPublish installs the hook every commit of a tenant's images calls
// (see the top of this file). It runs under the store's lock: it must not
// call the store.
func (s *Store) SetPublish(fn func(IndexChange) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.publish = fn
	s.saved = map[string]savedNames{}
	for name, t := range s.tenants {
		s.saved[name] = namesOf(t)
	}
}

// SetClusterLayers installs the hook that tells the layers (diffID to
// bytes) of the tenant's images in the whole cluster, which the tenant's
// quota counts with those of this store, each layer once. It runs under
// the store's lock: it must not call the store.
func (s *Store) SetClusterLayers(fn func(tenant string) map[string]int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clusterLayers = fn
}

type replicaKey struct{}

// WithReplica marks a load as the copy of an image the cluster already
// has (fetched from another server): its tenant's quota is not charged
// again, and the index only learns that this store holds it.
func WithReplica(ctx context.Context) context.Context {
	return context.WithValue(ctx, replicaKey{}, true)
}

func isReplica(ctx context.Context) bool { b, _ := ctx.Value(replicaKey{}).(bool); return b }

// savedNames is what a tenant had when its index was last saved.
type savedNames struct {
	images map[string]bool
	refs   map[string]string // tags and digests
}

func namesOf(t *tenantIndex) savedNames {
	n := savedNames{images: make(map[string]bool, len(t.Images)), refs: make(map[string]string, len(t.Tags)+len(t.Digests))}
	for id := range t.Images {
		n.images[id] = true
	}
	maps.Copy(n.refs, t.Tags)
	maps.Copy(n.refs, t.Digests)
	return n
}

// publishLocked tells the hook what saving t changes. Callers hold s.mu.
func (s *Store) publishLocked(t *tenantIndex) error {
	if s.publish == nil || s.quiet {
		return nil
	}
	before := s.saved[t.name]
	after := namesOf(t)
	c := IndexChange{Tenant: t.name, Replica: s.replica, Refs: map[string]string{}, Dropped: map[string]string{}}
	for id := range after.images {
		if !before.images[id] {
			if rec := s.images[id]; rec != nil {
				c.Added = append(c.Added, s.clusterImageLocked(t, rec))
			}
		}
	}
	for id := range before.images {
		if !after.images[id] {
			c.Removed = append(c.Removed, id)
		}
	}
	sort.Strings(c.Removed)
	for ref, id := range after.refs {
		if before.refs[ref] != id {
			c.Refs[ref] = id
		}
	}
	for ref, id := range before.refs {
		if after.refs[ref] != id {
			c.Dropped[ref] = id
		}
	}
	if c.empty() {
		return nil
	}
	return s.publish(c)
}

// clusterImageLocked is rec as the index holds it for tenant t.
func (s *Store) clusterImageLocked(t *tenantIndex, rec *record) types.ClusterImage {
	tags, digests := refsOf(t, rec.ID)
	c := types.ClusterImage{
		Tenant:      t.name,
		ID:          rec.ID,
		Manifest:    rec.Manifest,
		Parent:      rec.Parent,
		RepoTags:    tags,
		RepoDigests: digests,
		Created:     rec.config.Created.Time,
		Arch:        rec.config.Architecture,
		Labels:      maps.Clone(rec.config.Config.Labels),
	}
	for _, l := range rec.Layers {
		c.Layers = append(c.Layers, types.ClusterImageLayer{DiffID: l.DiffID, Size: s.layers[l.DiffID].Size})
	}
	return c
}

// Snapshot is every image of the tenant in this store as the index holds
// it (for seeding the index with what a server had before it had one).
func (v *TenantView) Snapshot() []types.ClusterImage {
	s := v.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	t := s.tenantLocked(v.name)
	out := make([]types.ClusterImage, 0, len(t.Images))
	for id := range t.Images {
		if rec := s.images[id]; rec != nil {
			out = append(out, s.clusterImageLocked(t, rec))
		}
	}
	return out
}

// Tenants lists the tenants that have images in this store.
func (s *Store) Tenants() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]string, 0, len(s.tenants))
	for name, t := range s.tenants {
		if len(t.Images) > 0 {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// ErrStale is returned by ApplyIndex when the index it was given is older
// than what this store published: read it again.
var ErrStale = errors.New("image index read before this store's last change")

// ApplyIndex makes the tenant's images here those of the index (its images
// by ID, read after this store's last publish as fresh, called under the
// store's lock, confirms): an image the index does not have is removed
// here (unless containers use it: its layers are their root filesystems),
// and the references of the images kept are the index's. It publishes
// nothing. It returns the IDs of the index's images this store holds.
func (v *TenantView) ApplyIndex(ctx context.Context, index map[string]types.ClusterImage, fresh func() bool) (held []string, err error) {
	s := v.s
	// Most often nothing differs: that is found under the read lock.
	s.mu.RLock()
	if fresh != nil && !fresh() {
		s.mu.RUnlock()
		return nil, ErrStale
	}
	p := s.planIndexLocked(v.name, index)
	s.mu.RUnlock()
	if !p.changed {
		return p.held, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if fresh != nil && !fresh() {
		return nil, ErrStale
	}
	p = s.planIndexLocked(v.name, index)
	if !p.changed {
		return p.held, nil
	}
	s.quiet = true
	defer func() { s.quiet = false }()
	t := s.tenants[v.name]
	now := time.Now().UTC()
	tagTime := map[string]time.Time{}
	for tg, id := range p.tags {
		if t.Tags[tg] == id && !t.TagTime[tg].IsZero() {
			tagTime[tg] = t.TagTime[tg]
		} else {
			tagTime[tg] = now
		}
	}
	t.Tags, t.Digests, t.TagTime = p.tags, p.digests, tagTime
	if len(p.gone) == 0 {
		return p.held, s.saveTenant(t)
	}
	for _, id := range p.gone {
		if _, err := s.disownLocked(t, id); err != nil {
			return p.held, err
		}
	}
	s.sweepLayersLocked()
	return p.held, nil
}

// indexPlan is what ApplyIndex changes in a tenant's store.
type indexPlan struct {
	held, gone    []string // images of the index held here; images here the index lost
	tags, digests map[string]string
	changed       bool
}

// planIndexLocked compares a tenant's images here with the index. An
// image the index lost that containers here use stays (its layers are
// their root filesystems), unnamed. Callers hold s.mu.
func (s *Store) planIndexLocked(tenant string, index map[string]types.ClusterImage) indexPlan {
	var p indexPlan
	t := s.tenants[tenant]
	if t == nil {
		return p
	}
	for id := range t.Images {
		if _, ok := index[id]; ok {
			p.held = append(p.held, id)
		} else if len(s.usersLocked(tenant, id)) == 0 {
			p.gone = append(p.gone, id)
		}
	}
	sort.Strings(p.held)
	sort.Strings(p.gone)
	p.tags, p.digests = map[string]string{}, map[string]string{}
	for _, id := range p.held {
		for _, tg := range index[id].RepoTags {
			p.tags[tg] = id
		}
		for _, d := range index[id].RepoDigests {
			p.digests[d] = id
		}
	}
	p.changed = len(p.gone) > 0 || !maps.Equal(p.tags, t.Tags) || !maps.Equal(p.digests, t.Digests)
	return p
}

// Familiar is ref as the tenant's names are kept ("busybox:latest",
// "foo@sha256:..."; a name through this cloud's registry without its
// host): how the cluster's index names images. ok is false when ref is
// not a name (an ID, or invalid).
func (v *TenantView) Familiar(ref string) (string, bool) {
	r, err := v.parse(ref)
	if err != nil {
		return "", false
	}
	return r.String(), true
}
