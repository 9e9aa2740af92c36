package docker

// Snapshots in a tenant's volume quota (types.Quota.VolumeBytes). A
// snapshot costs nothing when it is taken (copy-on-write) and grows as
// its volume changes: each block the volume rewrites or frees afterwards
// stays in the snapshot alone. That space (volume.Snapshot.Space, the
// btrfs qgroup's exclusive bytes, what deleting the snapshot frees) counts
// against the quota beside the volumes' sizes. A new snapshot is refused
// (403, quota exceeded) while the tenant's volumes and snapshots are over
// the quota, and so is a new volume that would not fit beside them; a
// snapshot that the volume's schedule takes is not refused, its keep
// count bounds those. Snapshot space lives on the nodes, not in the store:
// it is measured before the store's transaction (a snapshot taken
// meanwhile is counted by the next check), and a volume whose node does
// not answer counts its size alone.

import (
	"context"

	"github.com/macro-cloud/macro/image"
	"github.com/macro-cloud/macro/volume"
)

// snapshotSpace is what the snapshots of the tenant's nfs and gfs volumes
// hold alone, in bytes, as their nodes measure it now.
func (s *Server) snapshotSpace(ctx context.Context, tenant string) (int64, error) {
	if s.nodes == nil {
		return 0, nil
	}
	vols, err := s.store.Volumes(ctx, tenant)
	if err != nil {
		return 0, err
	}
	var held int64
	for _, v := range vols {
		if v.Driver != "nfs" && v.Driver != "gfs" || v.Node == "" {
			continue
		}
		node, err := s.nodes.Node(v.Node)
		if err != nil {
			continue
		}
		sn, ok := node.(StorageNode)
		if !ok {
			continue
		}
		snaps, err := sn.VolumeSnapshots(ctx, tenant, v.Name)
		if err != nil {
			s.log.Warn("snapshot space not measured", "tenant", tenant, "volume", v.Name, "node", v.Node, "err", err)
			continue
		}
		for _, x := range snaps {
			held += x.Space
		}
	}
	return held, nil
}

// checkSnapshotQuota refuses a new snapshot to a tenant whose volumes and
// their snapshots are over its volume quota.
func (s *Server) checkSnapshotQuota(ctx context.Context, tenant, name string) error {
	q, err := s.tenantQuota(ctx, tenant)
	if err != nil || q.VolumeBytes == 0 {
		return err
	}
	vols, err := s.store.Volumes(ctx, tenant)
	if err != nil {
		return err
	}
	var sizes int64
	for _, v := range vols {
		sizes += volume.QuotaSize(v)
	}
	held, err := s.snapshotSpace(ctx, tenant)
	if err != nil {
		return err
	}
	if sizes+held > q.VolumeBytes {
		return quotaError("tenant %s may have volumes of %s in total, its volumes have %s and their snapshots hold %s more: no room for a snapshot of %s: remove snapshots (kra volume snapshot rm VOLUME SNAPSHOT) or volumes, or ask for a larger quota",
			tenant, image.HumanSize(q.VolumeBytes), image.HumanSize(sizes), image.HumanSize(held), name)
	}
	return nil
}
