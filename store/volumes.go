package store

// Volumes and networks of the Docker API.
//
// Keys:
//
//	/macro/volumes/<tenant>/<name>   types.Volume
//	/macro/networks/<tenant>/<id>    types.Network
//
// Networks are keyed by ID because Docker allows two networks of one name
// (the CLI then asks for the ID); volumes by name, which is unique.

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/macro-cloud/macro/types"
)

func volumeKey(tenant, name string) string { return prefix + "volumes/" + tenant + "/" + name }
func networkKey(tenant, id string) string  { return prefix + "networks/" + tenant + "/" + id }

// CreateVolume stores a new volume; ErrExists when the name is taken.
func (s *Store) CreateVolume(ctx context.Context, v *types.Volume) error {
	if err := errors.Join(keyPart("tenant", v.Tenant), keyPart("volume", v.Name)); err != nil {
		return fmt.Errorf("create volume: %w", err)
	}
	if err := s.createJSON(ctx, volumeKey(v.Tenant, v.Name), v); err != nil {
		return fmt.Errorf("create volume %s: %w", v.Name, err)
	}
	return nil
}

// Volume reads one volume of a tenant.
func (s *Store) Volume(ctx context.Context, tenant, name string) (types.Volume, error) {
	var v types.Volume
	if keyPart("tenant", tenant) != nil || keyPart("volume", name) != nil {
		return v, ErrNotFound
	}
	_, err := s.getJSON(ctx, volumeKey(tenant, name), &v)
	return v, err
}

// Volumes lists a tenant's volumes by name.
func (s *Store) Volumes(ctx context.Context, tenant string) ([]types.Volume, error) {
	if err := keyPart("tenant", tenant); err != nil {
		return nil, fmt.Errorf("list volumes: %w", err)
	}
	vs, err := listJSON[types.Volume](ctx, s, tenantPrefix("volumes", tenant))
	if err != nil {
		return nil, fmt.Errorf("list volumes: %w", err)
	}
	sort.Slice(vs, func(i, j int) bool { return vs[i].Name < vs[j].Name })
	return vs, nil
}

// DeleteVolume removes a volume's object; ErrNotFound when there is none.
// Its data is the node's to remove.
func (s *Store) DeleteVolume(ctx context.Context, tenant, name string) error {
	return s.deleteKey(ctx, "volume", tenant, name, volumeKey)
}

// CreateNetwork stores a new network under its ID.
func (s *Store) CreateNetwork(ctx context.Context, n *types.Network) error {
	if err := errors.Join(keyPart("tenant", n.Tenant), keyPart("network", n.ID)); err != nil {
		return fmt.Errorf("create network: %w", err)
	}
	if err := s.createJSON(ctx, networkKey(n.Tenant, n.ID), n); err != nil {
		return fmt.Errorf("create network %s: %w", n.Name, err)
	}
	return nil
}

// Networks lists a tenant's networks, oldest first.
func (s *Store) Networks(ctx context.Context, tenant string) ([]types.Network, error) {
	if err := keyPart("tenant", tenant); err != nil {
		return nil, fmt.Errorf("list networks: %w", err)
	}
	ns, err := listJSON[types.Network](ctx, s, tenantPrefix("networks", tenant))
	if err != nil {
		return nil, fmt.Errorf("list networks: %w", err)
	}
	sort.Slice(ns, func(i, j int) bool {
		if !ns[i].Created.Equal(ns[j].Created) {
			return ns[i].Created.Before(ns[j].Created)
		}
		return ns[i].ID < ns[j].ID
	})
	return ns, nil
}

// DeleteNetwork removes a network by ID; ErrNotFound when there is none.
func (s *Store) DeleteNetwork(ctx context.Context, tenant, id string) error {
	return s.deleteKey(ctx, "network", tenant, id, networkKey)
}

func (s *Store) deleteKey(ctx context.Context, what, tenant, name string, key func(string, string) string) error {
	if keyPart("tenant", tenant) != nil || keyPart(what, name) != nil {
		return ErrNotFound
	}
	resp, err := s.cli.Delete(ctx, key(tenant, name))
	if err != nil {
		return fmt.Errorf("delete %s: %w", what, err)
	}
	if resp.Deleted == 0 {
		return ErrNotFound
	}
	return nil
}
