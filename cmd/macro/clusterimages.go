package main

// How a server's image store takes part in the cluster's image index
// (store/images.go, image/cluster.go): every commit of the store is
// published to the index (publish), the index's changes are applied to
// the store (a watch, and sync before an API request needs the truth),
// and images held by fewer live servers than --image-copies are copied in
// the background (copyPass). docs/ARCHITECTURE.md, "Images in a cluster".

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/macro-cloud/macro/image"
	"github.com/macro-cloud/macro/store"
	"github.com/macro-cloud/macro/types"
)

type clusterImages struct {
	st     *store.Store
	images *image.Store
	peers  *peerImages
	self   string
	copies int
	log    *slog.Logger

	mu     sync.Mutex
	index  map[string]map[string]types.ClusterImage // tenant → ID → image, as the watch saw it
	pubRev map[string]int64                         // tenant → revision of this server's last publish
	dirty  map[string]bool                          // tenants to apply
	kick   chan struct{}
	// copying are the copies under way (tenant/ID).
	copying map[string]bool
}

func newClusterImages(st *store.Store, images *image.Store, peers *peerImages, self string, copies int, log *slog.Logger) *clusterImages {
	return &clusterImages{
		st: st, images: images, peers: peers, self: self, copies: copies,
		log:     log.With("subsystem", "cluster-images"),
		index:   map[string]map[string]types.ClusterImage{},
		pubRev:  map[string]int64{},
		dirty:   map[string]bool{},
		kick:    make(chan struct{}, 1),
		copying: map[string]bool{},
	}
}

// start seeds the index with what this server's store has if it never
// did (a store from before the index), installs the hooks, and follows
// the index until ctx ends.
func (c *clusterImages) start(ctx context.Context) error {
	seeded, err := c.st.ImagesSeeded(ctx, c.self)
	if err != nil {
		return fmt.Errorf("image index: %w", err)
	}
	if !seeded {
		for _, tenant := range c.images.Tenants() {
			if err := c.seed(ctx, tenant); err != nil {
				return fmt.Errorf("image index: seed %s: %w", tenant, err)
			}
		}
		if err := c.st.MarkImagesSeeded(ctx, c.self); err != nil {
			return fmt.Errorf("image index: %w", err)
		}
	}
	c.images.SetPublish(c.publish)
	c.images.SetClusterLayers(c.layersOf)
	all, rev, err := c.st.AllImages(ctx)
	if err != nil {
		return fmt.Errorf("image index: %w", err)
	}
	local := c.images.Tenants()
	c.mu.Lock()
	for _, img := range all {
		c.putLocked(img)
	}
	for _, t := range local {
		c.dirty[t] = true // what changed while this server was away
	}
	c.mu.Unlock()
	go c.follow(ctx, rev)
	go c.run(ctx)
	return nil
}

// seed puts the tenant's images of this store into the index: an image
// the index lacks is added with its names (those no other image of the
// tenant has), one it has gets this server as a holder.
func (c *clusterImages) seed(ctx context.Context, tenant string) error {
	snap := c.images.Tenant(tenant).Snapshot()
	_, err := c.st.UpdateTenantImages(ctx, tenant, func(m map[string]*types.ClusterImage) error {
		taken := map[string]bool{}
		for _, e := range m {
			for _, r := range append(slices.Clone(e.RepoTags), e.RepoDigests...) {
				taken[r] = true
			}
		}
		for _, img := range snap {
			e := m[img.ID]
			if e == nil {
				n := img
				n.RepoTags = slices.DeleteFunc(slices.Clone(img.RepoTags), func(r string) bool { return taken[r] })
				n.RepoDigests = slices.DeleteFunc(slices.Clone(img.RepoDigests), func(r string) bool { return taken[r] })
				n.Holders = nil
				e = &n
				m[img.ID] = e
			}
			if !e.HeldBy(c.self) {
				e.Holders = append(e.Holders, c.self)
			}
		}
		return nil
	})
	return err
}

// publish is the image store's hook: what a commit changed, written to
// the index before the store writes it (image.IndexChange).
func (c *clusterImages) publish(ch image.IndexChange) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rev, err := c.st.UpdateTenantImages(ctx, ch.Tenant, func(m map[string]*types.ClusterImage) error {
		if !ch.Replica {
			for _, id := range ch.Removed {
				delete(m, id)
			}
		}
		for _, a := range ch.Added {
			e := m[a.ID]
			if e == nil {
				if ch.Replica {
					continue // removed from the cluster while it was copied
				}
				n := a
				n.RepoTags, n.RepoDigests, n.Holders = nil, nil, nil
				e = &n
				m[a.ID] = e
			}
			if !e.HeldBy(c.self) {
				e.Holders = append(e.Holders, c.self)
			}
		}
		if ch.Replica {
			return nil
		}
		for ref, id := range ch.Dropped {
			if e := m[id]; e != nil {
				dropRef(e, ref)
			}
		}
		for ref, id := range ch.Refs {
			for _, e := range m {
				dropRef(e, ref)
			}
			if e := m[id]; e != nil {
				if strings.Contains(ref, "@") {
					e.RepoDigests = append(e.RepoDigests, ref)
				} else {
					e.RepoTags = append(e.RepoTags, ref)
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("the cluster's image index: %w", err)
	}
	c.mu.Lock()
	if rev > c.pubRev[ch.Tenant] {
		c.pubRev[ch.Tenant] = rev
	}
	c.mu.Unlock()
	return nil
}

func dropRef(e *types.ClusterImage, ref string) {
	e.RepoTags = slices.DeleteFunc(e.RepoTags, func(r string) bool { return r == ref })
	e.RepoDigests = slices.DeleteFunc(e.RepoDigests, func(r string) bool { return r == ref })
}

// layersOf is the image store's quota hook: the layers of the tenant's
// images in the whole cluster, each once.
func (c *clusterImages) layersOf(tenant string) map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int64{}
	for _, img := range c.index[tenant] {
		for _, l := range img.Layers {
			out[l.DiffID] = l.Size
		}
	}
	return out
}

func (c *clusterImages) putLocked(img types.ClusterImage) {
	m := c.index[img.Tenant]
	if m == nil {
		m = map[string]types.ClusterImage{}
		c.index[img.Tenant] = m
	}
	m[img.ID] = img
}

// follow keeps c.index current and marks the tenants whose images
// changed, until ctx ends.
func (c *clusterImages) follow(ctx context.Context, rev int64) {
	for ctx.Err() == nil {
		for ch := range c.st.WatchImages(ctx, rev+1) {
			rev = ch.Revision
			c.mu.Lock()
			if ch.Deleted {
				delete(c.index[ch.Tenant], ch.ID)
			} else {
				c.putLocked(*ch.Image)
			}
			c.dirty[ch.Tenant] = true
			c.mu.Unlock()
			c.poke()
		}
		if ctx.Err() != nil {
			return
		}
		// The watch ended (compaction, a lost leader): read it all again.
		time.Sleep(time.Second)
		all, r, err := c.st.AllImages(ctx)
		if err != nil {
			continue
		}
		local := c.images.Tenants()
		c.mu.Lock()
		c.index = map[string]map[string]types.ClusterImage{}
		for _, img := range all {
			c.putLocked(img)
			c.dirty[img.Tenant] = true
		}
		for _, t := range local {
			c.dirty[t] = true
		}
		c.mu.Unlock()
		rev = r
		c.poke()
	}
}

func (c *clusterImages) poke() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// run applies the index to the store for the tenants that changed, and
// copies images that too few live servers hold, when the index changes
// and every few seconds (servers come and go without a change of the
// index).
func (c *clusterImages) run(ctx context.Context) {
	tick := time.NewTicker(3 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.kick:
		case <-tick.C:
		}
		c.mu.Lock()
		dirty := c.dirty
		c.dirty = map[string]bool{}
		c.mu.Unlock()
		for tenant := range dirty {
			if _, err := c.sync(ctx, tenant); err != nil && ctx.Err() == nil {
				c.log.Warn("apply the image index", "tenant", tenant, "err", err)
				c.mu.Lock()
				c.dirty[tenant] = true
				c.mu.Unlock()
			}
		}
		c.copyPass(ctx)
	}
}

// sync makes this server's images of tenant those of the index, as it is
// now, and the index's holders of them right about this server. It
// returns the index's images of the tenant this server does not hold.
func (c *clusterImages) sync(ctx context.Context, tenant string) ([]types.ClusterImage, error) {
	for attempt := 0; ; attempt++ {
		idx, rev, err := c.st.TenantImages(ctx, tenant)
		if err != nil {
			return nil, err
		}
		fresh := func() bool {
			c.mu.Lock()
			defer c.mu.Unlock()
			return rev >= c.pubRev[tenant]
		}
		held, err := c.images.Tenant(tenant).ApplyIndex(ctx, idx, fresh)
		if errors.Is(err, image.ErrStale) && attempt < 10 {
			continue
		}
		if err != nil {
			return nil, err
		}
		var elsewhere []types.ClusterImage
		wrong := false
		for id, e := range idx {
			has := slices.Contains(held, id)
			if !has {
				elsewhere = append(elsewhere, e)
			}
			if e.HeldBy(c.self) != has {
				wrong = true
			}
		}
		sort.Slice(elsewhere, func(i, j int) bool { return elsewhere[i].ID < elsewhere[j].ID })
		if !wrong {
			return elsewhere, nil
		}
		// Holders are checked against the store as the write commits: a
		// commit of this store meanwhile publishes, and its write and this
		// one are ordered by the index's compare.
		view := c.images.Tenant(tenant)
		_, err = c.st.UpdateTenantImages(ctx, tenant, func(m map[string]*types.ClusterImage) error {
			for id, e := range m {
				_, lerr := view.Lookup(ctx, id)
				has := lerr == nil
				if has && !e.HeldBy(c.self) {
					e.Holders = append(e.Holders, c.self)
				} else if !has && e.HeldBy(c.self) {
					e.Holders = slices.DeleteFunc(e.Holders, func(h string) bool { return h == c.self })
				}
			}
			return nil
		})
		return elsewhere, err
	}
}

// Sync is docker.ClusterImages.Sync: the tenant's images here are the
// index's before a request reads or changes them; it returns those only
// other servers hold.
func (c *clusterImages) Sync(ctx context.Context, tenant string) ([]types.ClusterImage, error) {
	return c.sync(ctx, tenant)
}

// Fetch is docker.ClusterImages.Fetch: image id of tenant, copied here
// from a server that holds it.
func (c *clusterImages) Fetch(ctx context.Context, tenant, id string) error {
	return c.peers.Fetch(ctx, tenant, id)
}

// copyPass copies the images that fewer than min(copies, live servers)
// live servers hold, when this server is among those chosen to hold one
// more: each server ranks the live servers that lack an image by a hash
// of the image and the server's name, and the first ones needed copy it,
// so that two servers rarely copy what one copy would do.
func (c *clusterImages) copyPass(ctx context.Context) {
	if c.copies < 2 {
		return
	}
	servers, err := c.st.Servers(ctx)
	if err != nil || len(servers) < 2 {
		return
	}
	if _, ok := servers[c.self]; !ok {
		return
	}
	live := make([]string, 0, len(servers))
	for name := range servers {
		live = append(live, name)
	}
	want := min(c.copies, len(live))
	type job struct{ tenant, id string }
	var jobs []job
	c.mu.Lock()
	for tenant, imgs := range c.index {
		for id, img := range imgs {
			if img.HeldBy(c.self) || c.copying[tenant+"/"+id] {
				continue
			}
			alive := 0
			var lacking []string
			for _, s := range live {
				if img.HeldBy(s) {
					alive++
				} else {
					lacking = append(lacking, s)
				}
			}
			need := want - alive
			if alive == 0 || need <= 0 {
				continue
			}
			sort.Slice(lacking, func(i, j int) bool { return rank(id, lacking[i]) < rank(id, lacking[j]) })
			if slices.Contains(lacking[:min(need, len(lacking))], c.self) {
				jobs = append(jobs, job{tenant, id})
				c.copying[tenant+"/"+id] = true
			}
		}
	}
	c.mu.Unlock()
	for _, j := range jobs {
		go func() {
			defer func() {
				c.mu.Lock()
				delete(c.copying, j.tenant+"/"+j.id)
				c.mu.Unlock()
			}()
			if err := c.Fetch(ctx, j.tenant, j.id); err != nil {
				if ctx.Err() == nil {
					c.log.Warn("copy an image from another server", "tenant", j.tenant, "image", j.id, "err", err)
				}
				return
			}
			c.log.Info("copied an image from another server", "tenant", j.tenant, "image", j.id)
			c.mu.Lock()
			c.dirty[j.tenant] = true
			c.mu.Unlock()
			c.poke()
		}()
	}
}

func rank(id, server string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(id + "\x00" + server))
	return h.Sum64()
}

// ImageBytes is api.TenantImages.ImageBytes: the tenant's image storage
// as its quota counts it, each layer once in the whole cluster.
func (c *clusterImages) ImageBytes(ctx context.Context, tenant string) int64 {
	return c.images.ImageBytes(ctx, tenant)
}

// RemoveTenant is api.TenantImages.RemoveTenant: the tenant's images go
// from this server's store and from the index, which the other servers
// follow. It counts the tenant's images in the cluster.
func (c *clusterImages) RemoveTenant(ctx context.Context, tenant string) (int, error) {
	n, err := c.images.RemoveTenant(ctx, tenant)
	if err != nil {
		return n, err
	}
	_, err = c.st.UpdateTenantImages(ctx, tenant, func(m map[string]*types.ClusterImage) error {
		n = max(n, len(m))
		clear(m)
		return nil
	})
	return n, err
}
