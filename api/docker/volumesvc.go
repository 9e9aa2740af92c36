package docker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/macro-cloud/macro/store"
	"github.com/macro-cloud/macro/types"
	"github.com/macro-cloud/macro/volume"
)

// The volume service: what the native API (/apis/macro/v1/volumes, kra
// volume) does with volumes, through the same checks as the Docker API.
// Errors carry their HTTP status (HTTPStatus).

// HTTPStatus is the status an error of this package answers with.
func (e *apiError) HTTPStatus() int { return e.status }

// CreateVolume creates a tenant's volume as docker volume create does.
func (s *Server) CreateVolume(ctx context.Context, tenant, name, driver string, opts, labels map[string]string) (types.Volume, error) {
	if name == "" {
		return types.Volume{}, badRequest("a volume needs a name")
	}
	return s.ensureVolume(ctx, tenant, volumeCreateRequest{Name: name, Driver: driver, DriverOpts: opts, Labels: labels})
}

// RemoveVolume removes a tenant's volume that no container mounts.
func (s *Server) RemoveVolume(ctx context.Context, tenant, name string) error {
	v, err := s.tenantVolume(ctx, tenant, name)
	if err != nil {
		return err
	}
	return s.deleteVolume(ctx, v)
}

func (s *Server) tenantVolume(ctx context.Context, tenant, name string) (types.Volume, error) {
	v, err := s.store.Volume(ctx, tenant, name)
	if errors.Is(err, store.ErrNotFound) {
		return v, notFound("no such volume: %s", name)
	}
	return v, err
}

// storageNode is the node that holds a volume with snapshots.
func (s *Server) storageNode(ctx context.Context, tenant, name string) (types.Volume, StorageNode, error) {
	v, err := s.tenantVolume(ctx, tenant, name)
	if err != nil {
		return v, nil, err
	}
	if v.Driver != "nfs" && v.Driver != "gfs" {
		return v, nil, badRequest("volume %s has driver %s, which has no snapshots: nfs and gfs volumes have them", name, v.Driver)
	}
	node, err := s.nodes.Node(v.Node)
	if err != nil {
		return v, nil, errorf(http.StatusServiceUnavailable, "volume %s: its node %s is not reachable: %v", name, v.Node, err)
	}
	sn, ok := node.(StorageNode)
	if !ok {
		return v, nil, errorf(http.StatusServiceUnavailable, "volume %s: its node %s keeps no volumes", name, v.Node)
	}
	return v, sn, nil
}

// snapshotErr gives the node's errors about snapshots their status.
func snapshotErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, volume.ErrSnapshotNotFound):
		return notFound("%v", err)
	case errors.Is(err, volume.ErrSnapshotExists):
		return conflict("%v", err)
	case errors.Is(err, volume.ErrNoSnapshots):
		return badRequest("%v", err)
	}
	return err
}

// VolumeSnapshots lists a volume's snapshots, oldest first.
func (s *Server) VolumeSnapshots(ctx context.Context, tenant, name string) ([]volume.Snapshot, error) {
	_, node, err := s.storageNode(ctx, tenant, name)
	if err != nil {
		return nil, err
	}
	snaps, err := node.VolumeSnapshots(ctx, tenant, name)
	if snaps == nil {
		snaps = []volume.Snapshot{}
	}
	return snaps, snapshotErr(err)
}

// SnapshotVolume takes a snapshot of a volume now; an empty name is
// chosen from the time.
func (s *Server) SnapshotVolume(ctx context.Context, tenant, name, snap string) (volume.Snapshot, error) {
	_, node, err := s.storageNode(ctx, tenant, name)
	if err != nil {
		return volume.Snapshot{}, err
	}
	now := time.Now().UTC()
	if snap == "" {
		snap = "snap-" + now.Format("20060102T150405Z")
	}
	if err := volume.CheckSnapshotName(snap); err != nil {
		return volume.Snapshot{}, badRequest("%v", err)
	}
	if strings.HasPrefix(snap, volume.AutoPrefix) {
		return volume.Snapshot{}, badRequest("snapshot names starting with %q are the schedule's", volume.AutoPrefix)
	}
	if err := s.checkSnapshotQuota(ctx, tenant, name); err != nil { // snapquota.go
		return volume.Snapshot{}, err
	}
	sn := volume.Snapshot{Name: snap, Created: now}
	return sn, snapshotErr(node.SnapshotVolume(ctx, tenant, name, sn))
}

// DeleteVolumeSnapshot deletes one snapshot of a volume.
func (s *Server) DeleteVolumeSnapshot(ctx context.Context, tenant, name, snap string) error {
	_, node, err := s.storageNode(ctx, tenant, name)
	if err != nil {
		return err
	}
	return snapshotErr(node.DeleteVolumeSnapshot(ctx, tenant, name, snap))
}

// RollbackVolume makes a volume's files those of a snapshot. It is
// refused while containers that mount the volume are meant to run: they
// would keep the files they have open from before. The state it replaces
// is kept as a snapshot (rollback-<time>).
func (s *Server) RollbackVolume(ctx context.Context, tenant, name, snap string) error {
	_, node, err := s.storageNode(ctx, tenant, name)
	if err != nil {
		return err
	}
	pods, err := s.store.Pods(ctx, tenant)
	if err != nil {
		return err
	}
	var running []string
	for _, p := range pods {
		if !types.MeantToRun(p) {
			continue
		}
		for _, m := range p.Spec.Mounts {
			if m.Type == "volume" && m.Source == name {
				running = append(running, p.Name)
				break
			}
		}
	}
	if len(running) > 0 {
		return conflict("rollback %s: the volume is mounted by running containers %s: stop them first (docker stop %s), then roll back and start them again", name, strings.Join(running, ", "), strings.Join(running, " "))
	}
	// The primary rolls every replica in sync back in its write
	// sequence (agent/volsnap.go).
	if err := node.RollbackVolume(ctx, tenant, name, snap); err != nil {
		return fmt.Errorf("rollback %s: %w", name, snapshotErr(err))
	}
	return nil
}
