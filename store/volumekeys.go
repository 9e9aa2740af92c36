package store

// Access keys of volumes (WebDAV and S3 without a pod).
//
// Keys:
//
//	/macro/volumekeys/<id>   types.VolumeKey
//
// Keyed by ID alone, as tokens are, because a request names the key ID
// and nothing else (an S3 signature's access key ID).

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/macro-cloud/macro/types"
)

func volumeKeyKey(id string) string { return prefix + "volumekeys/" + id }

// CreateVolumeKey stores a new access key of an existing volume (of all
// the tenant's volumes when k.Volume is ""): ErrNotFound when the volume
// or tenant is gone, ErrExists when the ID is taken.
func (s *Store) CreateVolumeKey(ctx context.Context, k *types.VolumeKey) error {
	if err := errors.Join(keyPart("key", k.ID), keyPart("tenant", k.Tenant)); err != nil {
		return fmt.Errorf("create volume key: %w", err)
	}
	if k.Hash == "" {
		return errors.New("create volume key: a hash is required")
	}
	owner := tenantKey(k.Tenant)
	if k.Volume != "" {
		if err := keyPart("volume", k.Volume); err != nil {
			return fmt.Errorf("create volume key: %w", err)
		}
		owner = volumeKey(k.Tenant, k.Volume)
	}
	if err := s.createJSON(ctx, volumeKeyKey(k.ID), k, owner); err != nil {
		return fmt.Errorf("create volume key: %w", err)
	}
	return nil
}

// VolumeKey reads one access key by ID; ErrNotFound when there is none.
func (s *Store) VolumeKey(ctx context.Context, id string) (types.VolumeKey, error) {
	var k types.VolumeKey
	if keyPart("key", id) != nil {
		return k, ErrNotFound
	}
	_, err := s.getJSON(ctx, volumeKeyKey(id), &k)
	return k, err
}

// VolumeKeys lists the access keys of a tenant's volume (of all its
// volumes when volume is ""), oldest first.
func (s *Store) VolumeKeys(ctx context.Context, tenant, volume string) ([]types.VolumeKey, error) {
	all, err := listJSON[types.VolumeKey](ctx, s, prefix+"volumekeys/")
	if err != nil {
		return nil, fmt.Errorf("list volume keys: %w", err)
	}
	var out []types.VolumeKey
	for _, k := range all {
		if k.Tenant == tenant && (volume == "" || k.Volume == volume) {
			out = append(out, k)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// DeleteVolumeKey revokes an access key of tenant; ErrNotFound when tenant
// has no key of that ID (another tenant's key included).
func (s *Store) DeleteVolumeKey(ctx context.Context, tenant, id string) error {
	k, err := s.VolumeKey(ctx, id)
	if err != nil {
		return err
	}
	if k.Tenant != tenant {
		return ErrNotFound
	}
	return s.deleteKey(ctx, "key", tenant, id, func(_, id string) string { return volumeKeyKey(id) })
}
