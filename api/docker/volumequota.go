package docker

// Volume quotas of a tenant (types.Quota.VolumeBytes and Volumes), checked
// where every volume is made (ensureVolume: docker volume create, -v and
// --mount of a new name, compose, kra volume create and copy).
//
// VolumeBytes bounds the sum of the tenant's volumes' sizes: the size
// option of lv2, nfs and gfs volumes (what their filesystem or btrfs
// qgroup enforces), and types.DefaultVolumeSize for a volume without
// one. An nfs or gfs volume made without a size in a tenant with this
// quota gets that size as its limit, so that it cannot hold more than it
// is counted for. A local volume counts the default size, and in a tenant
// with this quota it is held to it (types.Volume.Limit: its own
// filesystem of that size, as lv2's; see docs/VOLUMES.md).
// Volumes bounds how many volumes the tenant has, anonymous ones too.
//
// Race safety: store.CreateVolumeGuarded reads the tenant's record and
// volumes at one revision and commits only if neither changed, retrying
// otherwise: two concurrent creates cannot both pass on the same headroom,
// through one server or several.

import (
	"context"
	"maps"
	"strconv"

	"github.com/macro-cloud/macro/image"
	"github.com/macro-cloud/macro/store"
	"github.com/macro-cloud/macro/types"
	"github.com/macro-cloud/macro/volume"
)

// createVolumeRecord stores a new volume within its tenant's volume
// quotas; store.ErrExists when the name is taken.
func (s *Server) createVolumeRecord(ctx context.Context, v *types.Volume) error {
	// What the tenant's snapshots hold counts too (snapquota.go).
	var held int64
	if q, err := s.tenantQuota(ctx, v.Tenant); err != nil {
		return err
	} else if q.VolumeBytes > 0 {
		if held, err = s.snapshotSpace(ctx, v.Tenant); err != nil {
			return err
		}
	}
	return s.store.CreateVolumeGuarded(ctx, v, func(tv store.TenantVolumes) error {
		q := tv.Tenant.Quota
		if q.Volumes > 0 && len(tv.Volumes)+1 > q.Volumes {
			return quotaError("tenant %s may have %d volumes, has %d: remove one (docker volume rm) or ask for a larger quota", v.Tenant, q.Volumes, len(tv.Volumes))
		}
		if q.VolumeBytes == 0 {
			return nil
		}
		if (v.Driver == "nfs" || v.Driver == "gfs") && v.Options["size"] == "" {
			v.Options = maps.Clone(v.Options)
			if v.Options == nil {
				v.Options = map[string]string{}
			}
			v.Options["size"] = strconv.FormatInt(types.DefaultVolumeSize, 10)
		}
		if v.Driver == "" || v.Driver == "local" {
			v.Limit = types.DefaultVolumeSize
		}
		var used int64
		for _, ov := range tv.Volumes {
			used += volume.QuotaSize(ov)
		}
		need := volume.QuotaSize(*v)
		if held > 0 && used+held+need > q.VolumeBytes {
			return quotaError("tenant %s may have volumes of %s in total, its volumes have %s, their snapshots hold %s more and %s needs %s: remove snapshots (kra volume snapshot rm) or volumes (docker volume rm), make it smaller (-o size) or ask for a larger quota",
				v.Tenant, image.HumanSize(q.VolumeBytes), image.HumanSize(used), image.HumanSize(held), v.Name, image.HumanSize(need))
		}
		if used+need > q.VolumeBytes {
			return quotaError("tenant %s may have volumes of %s in total, its volumes have %s and %s needs %s: remove one (docker volume rm), make it smaller (-o size) or ask for a larger quota",
				v.Tenant, image.HumanSize(q.VolumeBytes), image.HumanSize(used), v.Name, image.HumanSize(need))
		}
		return nil
	})
}
