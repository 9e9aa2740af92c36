package store

// The cluster's image index: which images each tenant has, how it names
// them, and which servers hold their blobs.
//
// Keys:
//
//	/macro/images/<tenant>/<hex of ID>   types.ClusterImage
//	/macro/imageservers/<server>         the server's store was seeded into the index
//
// A change to a tenant's images is a read of all of them at one revision,
// a function that edits that set, and a transaction that writes what it
// changed only if no image of the tenant changed after the read (etcd's
// range compare, as guarded pod writes do): a tag is unique within a
// tenant, so moving one touches two images, and concurrent changes of one
// tenant never lose each other. Another tenant's changes do not conflict.

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/macro-cloud/macro/types"
)

func imagesPrefix(tenant string) string { return tenantPrefix("images", tenant) }

func imageKey(tenant, id string) string {
	return imagesPrefix(tenant) + strings.TrimPrefix(id, "sha256:")
}

func imageServerKey(server string) string { return prefix + "imageservers/" + server }

// TenantImages reads every image of tenant in the index, by ID, and the
// revision it was read at.
func (s *Store) TenantImages(ctx context.Context, tenant string) (map[string]types.ClusterImage, int64, error) {
	out, _, rev, err := s.tenantImages(ctx, tenant)
	return out, rev, err
}

// tenantImages is TenantImages with the ModRevision of each image's key.
func (s *Store) tenantImages(ctx context.Context, tenant string) (map[string]types.ClusterImage, map[string]int64, int64, error) {
	if err := keyPart("tenant", tenant); err != nil {
		return nil, nil, 0, err
	}
	resp, err := s.cli.Get(ctx, imagesPrefix(tenant), clientv3.WithPrefix())
	if err != nil {
		return nil, nil, 0, fmt.Errorf("read images of %s: %w", tenant, err)
	}
	out := make(map[string]types.ClusterImage, len(resp.Kvs))
	mods := make(map[string]int64, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var img types.ClusterImage
		if err := json.Unmarshal(kv.Value, &img); err != nil {
			s.log.Error("skipping undecodable image", "key", string(kv.Key), "err", err)
			continue
		}
		out[img.ID] = img
		mods[img.ID] = kv.ModRevision
	}
	return out, mods, resp.Header.Revision, nil
}

// AllImages reads the index of every tenant at one revision.
func (s *Store) AllImages(ctx context.Context) ([]types.ClusterImage, int64, error) {
	resp, err := s.cli.Get(ctx, imagesPrefix(""), clientv3.WithPrefix())
	if err != nil {
		return nil, 0, fmt.Errorf("read images: %w", err)
	}
	out := make([]types.ClusterImage, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var img types.ClusterImage
		if json.Unmarshal(kv.Value, &img) == nil {
			out = append(out, img)
		}
	}
	return out, resp.Header.Revision, nil
}

// UpdateTenantImages changes tenant's images: fn gets them by ID and edits
// the map (adds, changes, deletes entries); what it changed is committed
// only if no image of the tenant changed since they were read, else fn
// runs again on the new set. fn's error is returned as it is and nothing
// is written. Tags and digests are sorted and holders deduplicated before
// they are stored. It returns the revision of the commit (of the read
// when fn changed nothing).
func (s *Store) UpdateTenantImages(ctx context.Context, tenant string, fn func(map[string]*types.ClusterImage) error) (int64, error) {
	if err := keyPart("tenant", tenant); err != nil {
		return 0, err
	}
	for attempt := 0; attempt < maxGuardedAttempts; attempt++ {
		before, mods, rev, err := s.tenantImages(ctx, tenant)
		if err != nil {
			return 0, err
		}
		edit := make(map[string]*types.ClusterImage, len(before))
		for id, img := range before {
			c := cloneClusterImage(img)
			edit[id] = &c
		}
		if err := fn(edit); err != nil {
			return 0, err
		}
		// No image of the tenant was put since the read (a tag is unique
		// across them), and each key written is as it was read: a range
		// compare does not see a key deleted meanwhile, which a put here
		// would bring back.
		cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(imagesPrefix(tenant)), "<", rev+1).WithPrefix()}
		var ops []clientv3.Op
		for id := range before {
			if edit[id] == nil {
				ops = append(ops, clientv3.OpDelete(imageKey(tenant, id)))
				cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(imageKey(tenant, id)), "=", mods[id]))
			}
		}
		for id, img := range edit {
			if img == nil {
				continue
			}
			img.ID, img.Tenant = id, tenant
			if !strings.HasPrefix(id, "sha256:") || keyPart("image", strings.TrimPrefix(id, "sha256:")) != nil {
				return 0, fmt.Errorf("invalid image ID %q", id)
			}
			normalizeClusterImage(img)
			if old, ok := before[id]; ok && reflect.DeepEqual(old, *img) {
				continue
			}
			data, err := json.Marshal(img)
			if err != nil {
				return 0, err
			}
			ops = append(ops, clientv3.OpPut(imageKey(tenant, id), string(data)))
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(imageKey(tenant, id)), "=", mods[id])) // 0: absent
		}
		if len(ops) == 0 {
			return rev, nil
		}
		resp, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
		if err != nil {
			return 0, fmt.Errorf("update images of %s: %w", tenant, err)
		}
		if resp.Succeeded {
			return resp.Header.Revision, nil
		}
	}
	return 0, ErrConflict
}

// SetImageHolder records that server holds image id of tenant (held) or
// does not; a missing image is left alone.
func (s *Store) SetImageHolder(ctx context.Context, tenant, id, server string, held bool) error {
	_, err := s.UpdateTenantImages(ctx, tenant, func(imgs map[string]*types.ClusterImage) error {
		img := imgs[id]
		if img == nil || img.HeldBy(server) == held {
			return nil
		}
		if held {
			img.Holders = append(img.Holders, server)
			return nil
		}
		img.Holders = without(img.Holders, server)
		return nil
	})
	return err
}

// ImagesSeeded says whether server already put what its image store had
// into the index (MarkImagesSeeded).
func (s *Store) ImagesSeeded(ctx context.Context, server string) (bool, error) {
	resp, err := s.cli.Get(ctx, imageServerKey(server), clientv3.WithCountOnly())
	if err != nil {
		return false, err
	}
	return resp.Count > 0, nil
}

// MarkImagesSeeded records that server's image store is in the index: from
// then on, what its store has and the index lacks was removed meanwhile.
func (s *Store) MarkImagesSeeded(ctx context.Context, server string) error {
	if err := keyPart("server", server); err != nil {
		return err
	}
	_, err := s.cli.Put(ctx, imageServerKey(server), "1")
	return err
}

// ImageChange is a change of the index as WatchImages delivers it.
type ImageChange struct {
	Revision int64
	Tenant   string
	ID       string
	Deleted  bool
	Image    *types.ClusterImage // for a put
}

// WatchImages delivers every change of the index after revision from until
// ctx ends; the channel closes when the watch ends (read AllImages and
// watch again).
func (s *Store) WatchImages(ctx context.Context, from int64) <-chan ImageChange {
	out := make(chan ImageChange, 64)
	opts := []clientv3.OpOption{clientv3.WithPrefix()}
	if from > 0 {
		opts = append(opts, clientv3.WithRev(from))
	}
	wch := s.cli.Watch(clientv3.WithRequireLeader(ctx), imagesPrefix(""), opts...)
	go func() {
		defer close(out)
		for resp := range wch {
			if resp.Err() != nil {
				return
			}
			for _, ev := range resp.Events {
				parts := strings.SplitN(strings.TrimPrefix(string(ev.Kv.Key), imagesPrefix("")), "/", 2)
				if len(parts) != 2 {
					continue
				}
				c := ImageChange{Revision: ev.Kv.ModRevision, Tenant: parts[0], ID: "sha256:" + parts[1]}
				if ev.Type == clientv3.EventTypeDelete {
					c.Deleted = true
				} else {
					var img types.ClusterImage
					if json.Unmarshal(ev.Kv.Value, &img) != nil {
						continue
					}
					c.Image = &img
				}
				select {
				case out <- c:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

func cloneClusterImage(img types.ClusterImage) types.ClusterImage {
	img.RepoTags = append([]string(nil), img.RepoTags...)
	img.RepoDigests = append([]string(nil), img.RepoDigests...)
	img.Holders = append([]string(nil), img.Holders...)
	img.Layers = append([]types.ClusterImageLayer(nil), img.Layers...)
	img.Labels = cloneMap(img.Labels)
	return img
}

func normalizeClusterImage(img *types.ClusterImage) {
	for _, l := range []*[]string{&img.RepoTags, &img.RepoDigests, &img.Holders} {
		v := *l
		sort.Strings(v)
		v = compactStrings(v)
		if len(v) == 0 {
			v = nil
		}
		*l = v
	}
	if len(img.Layers) == 0 {
		img.Layers = nil
	}
	if len(img.Labels) == 0 {
		img.Labels = nil
	}
}

func compactStrings(v []string) []string {
	out := v[:0]
	for i, s := range v {
		if s == "" || i > 0 && s == v[i-1] {
			continue
		}
		out = append(out, s)
	}
	return out
}

func without(v []string, s string) []string {
	out := v[:0]
	for _, x := range v {
		if x != s {
			out = append(out, x)
		}
	}
	return out
}
