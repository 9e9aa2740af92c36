package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/macro-cloud/macro/types"
)

// UpdateVolume changes a volume's record with fn and commits it only if
// nobody wrote it since it was read, reading and applying fn again
// otherwise (replica states and promotions of nfs and gfs volumes are
// decided by several servers). fn returning an error leaves the record as
// it was. ErrNotFound when the volume is gone.
func (s *Store) UpdateVolume(ctx context.Context, tenant, name string, fn func(*types.Volume) error) (types.Volume, error) {
	k := volumeKey(tenant, name)
	for {
		var v types.Volume
		rev, err := s.getJSON(ctx, k, &v)
		if err != nil {
			return v, err
		}
		if err := fn(&v); err != nil {
			return v, err
		}
		data, err := json.Marshal(&v)
		if err != nil {
			return v, err
		}
		resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(k), "=", rev)).Then(clientv3.OpPut(k, string(data))).Commit()
		if err != nil {
			return v, fmt.Errorf("update volume %s: %w", name, err)
		}
		if resp.Succeeded {
			return v, nil
		}
	}
}

// ErrEpochOver is returned by UpdateVolumeWhileDown when the volume's
// epoch is no longer the one its caller decided on: another server
// promoted a replica or replaced one meanwhile.
var ErrEpochOver = errors.New("the volume's epoch changed")

// UpdateVolumeWhileDown applies a replication decision to a volume: fn
// changes the record, which is committed only while its epoch is still
// epoch and node down is not alive (its liveness key is absent, checked in
// the same transaction), so that of two servers deciding on the same
// record only one decision lands, and a node that comes back meanwhile
// keeps its place. A change of the record that left the epoch alone (a
// replica's state) is read again and fn applied again. ErrEpochOver,
// ErrNodeReady (down is alive), ErrNotFound; an error of fn leaves the
// record.
func (s *Store) UpdateVolumeWhileDown(ctx context.Context, tenant, name string, epoch int64, down string, fn func(*types.Volume) error) (types.Volume, error) {
	k := volumeKey(tenant, name)
	for {
		var v types.Volume
		rev, err := s.getJSON(ctx, k, &v)
		if err != nil {
			return v, err
		}
		if v.Epoch != epoch {
			return v, fmt.Errorf("volume %s: epoch %d, now %d: %w", name, epoch, v.Epoch, ErrEpochOver)
		}
		if err := fn(&v); err != nil {
			return v, err
		}
		data, err := json.Marshal(&v)
		if err != nil {
			return v, err
		}
		resp, err := s.cli.Txn(ctx).If(
			clientv3.Compare(clientv3.ModRevision(k), "=", rev),
			clientv3.Compare(clientv3.CreateRevision(aliveKey(down)), "=", 0),
		).Then(clientv3.OpPut(k, string(data))).
			Else(clientv3.OpGet(aliveKey(down), clientv3.WithCountOnly())).
			Commit()
		if err != nil {
			return v, fmt.Errorf("update volume %s: %w", name, err)
		}
		if resp.Succeeded {
			return v, nil
		}
		if resp.Responses[0].GetResponseRange().Count > 0 {
			return v, fmt.Errorf("volume %s: node %s: %w", name, down, ErrNodeReady)
		}
	}
}

// ReplicatedVolumes lists the volumes of every tenant that have replicas
// or may get them (nfs and gfs volumes with a node, also those made
// without replicas on a one-node cluster), for the leader's replication
// loop.
func (s *Store) ReplicatedVolumes(ctx context.Context) ([]types.Volume, error) {
	vs, err := listJSON[types.Volume](ctx, s, prefix+"volumes/")
	if err != nil {
		return nil, fmt.Errorf("list volumes: %w", err)
	}
	out := vs[:0]
	for _, v := range vs {
		if v.Node != "" && (len(v.Replicas) > 0 || v.Driver == "nfs" || v.Driver == "gfs") {
			out = append(out, v)
		}
	}
	return out, nil
}
