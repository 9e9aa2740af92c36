package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// A node's mesh key rotation is asked for by raising its generation
// (/macro/meshrotate/<name>); the node makes a new key when its own
// generation is lower, and registers the new public key.

func meshRotateKey(name string) string { return prefix + "meshrotate/" + name }

// RotateMeshKey asks node name for a new mesh key and returns the new
// generation; ErrNotFound when there is no such node.
func (s *Store) RotateMeshKey(ctx context.Context, name string) (int64, error) {
	for range 8 {
		resp, err := s.cli.Txn(ctx).Then(
			clientv3.OpGet(nodeKey(name), clientv3.WithCountOnly()),
			clientv3.OpGet(meshRotateKey(name)),
		).Commit()
		if err != nil {
			return 0, err
		}
		if resp.Responses[0].GetResponseRange().Count == 0 {
			return 0, ErrNotFound
		}
		var gen int64
		var modRev int64
		if kvs := resp.Responses[1].GetResponseRange().Kvs; len(kvs) > 0 {
			gen, _ = strconv.ParseInt(string(kvs[0].Value), 10, 64)
			modRev = kvs[0].ModRevision
		}
		put, err := s.cli.Txn(ctx).If(
			clientv3.Compare(clientv3.ModRevision(meshRotateKey(name)), "=", modRev),
		).Then(clientv3.OpPut(meshRotateKey(name), strconv.FormatInt(gen+1, 10))).Commit()
		if err != nil {
			return 0, err
		}
		if put.Succeeded {
			return gen + 1, nil
		}
	}
	return 0, fmt.Errorf("mesh key rotation of %s: %w", name, ErrConflict)
}

// MeshRotations are the key generations asked of the nodes, by name.
func (s *Store) MeshRotations(ctx context.Context) (map[string]int64, error) {
	resp, err := s.cli.Get(ctx, prefix+"meshrotate/", clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, kv := range resp.Kvs {
		gen, err := strconv.ParseInt(string(kv.Value), 10, 64)
		if err == nil {
			out[strings.TrimPrefix(string(kv.Key), prefix+"meshrotate/")] = gen
		}
	}
	return out, nil
}
