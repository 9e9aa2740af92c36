package store

import (
	"context"
	"encoding/json"
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
