package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/macro-cloud/macro/types"
)

// TenantVolumes is a tenant's record and every volume of it, read at one
// revision, for a guarded volume create.
type TenantVolumes struct {
	Tenant       types.Tenant
	TenantExists bool
	Volumes      []types.Volume
}

// CreateVolumeGuarded is CreateVolume after guard approved the tenant's
// record and volumes as they are when v is committed: the transaction
// compares that the record did not change and that no volume of the
// tenant was created, changed or removed since they were read (etcd's
// range compare), and runs again otherwise. So two concurrent creates,
// through one server or several, cannot both pass a volume quota on the
// same headroom. guard may complete v (what it leaves is stored); its
// error is returned as it is. ErrExists when the name is taken.
func (s *Store) CreateVolumeGuarded(ctx context.Context, v *types.Volume, guard func(TenantVolumes) error) error {
	if err := errors.Join(keyPart("tenant", v.Tenant), keyPart("volume", v.Name)); err != nil {
		return fmt.Errorf("create volume: %w", err)
	}
	vk, tk, vp := volumeKey(v.Tenant, v.Name), tenantKey(v.Tenant), tenantPrefix("volumes", v.Tenant)
	for attempt := 0; attempt < maxGuardedAttempts; attempt++ {
		resp, err := s.cli.Txn(ctx).Then(
			clientv3.OpGet(tk),
			clientv3.OpGet(vp, clientv3.WithPrefix()),
		).Commit()
		if err != nil {
			return fmt.Errorf("create volume %s: %w", v.Name, err)
		}
		var tv TenantVolumes
		var tenantRev int64
		if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
			if err := json.Unmarshal(kvs[0].Value, &tv.Tenant); err != nil {
				return fmt.Errorf("decode %s: %w", tk, err)
			}
			tv.TenantExists, tenantRev = true, kvs[0].ModRevision
		}
		for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
			var ov types.Volume
			if err := json.Unmarshal(kv.Value, &ov); err != nil {
				s.log.Error("skipping undecodable volume", "key", string(kv.Key), "err", err)
				continue
			}
			if ov.Name == v.Name {
				return fmt.Errorf("create volume %s: %w", v.Name, ErrExists)
			}
			tv.Volumes = append(tv.Volumes, ov)
		}
		if err := guard(tv); err != nil {
			return err
		}
		data, err := json.Marshal(v)
		if err != nil {
			return err
		}
		rev := resp.Header.Revision
		tresp, err := s.cli.Txn(ctx).
			If(
				clientv3.Compare(clientv3.CreateRevision(vk), "=", 0),
				clientv3.Compare(clientv3.ModRevision(tk), "=", tenantRev),
				clientv3.Compare(clientv3.ModRevision(vp), "<", rev+1).WithPrefix(),
			).
			Then(clientv3.OpPut(vk, string(data))).
			Else(clientv3.OpGet(vk)).
			Commit()
		if err != nil {
			return fmt.Errorf("create volume %s: %w", v.Name, err)
		}
		if tresp.Succeeded {
			return nil
		}
		if r := tresp.Responses[0].GetResponseRange(); r != nil && len(r.Kvs) > 0 {
			return fmt.Errorf("create volume %s: %w", v.Name, ErrExists)
		}
		// The tenant or another of its volumes changed meanwhile.
	}
	return ErrConflict
}
