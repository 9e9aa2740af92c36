package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/macro-cloud/macro/types"
)

// A node is two keys: its record (/macro/nodes/<name>: capacity, labels,
// what it registered), kept while the node is known, and its liveness
// (/macro/alive/<name>), attached to an etcd lease that the node's
// heartbeats renew. When the heartbeats stop, etcd removes the liveness
// key at the lease's expiry: the node is down, whoever leads sees it.

func aliveKey(name string) string { return prefix + "alive/" + name }

// ErrLeaseExpired is returned when a node's lease is gone: register anew.
var ErrLeaseExpired = errors.New("node lease expired")

// PutNode registers or refreshes a node record (without liveness: see
// RegisterNode).
func (s *Store) PutNode(ctx context.Context, n types.Node) error {
	data, err := json.Marshal(&n)
	if err != nil {
		return err
	}
	_, err = s.cli.Put(ctx, nodeKey(n.Name), string(data))
	return err
}

// RegisterNode records n and marks it alive for ttlSeconds, renewed by
// KeepNodeAlive; it returns the lease.
func (s *Store) RegisterNode(ctx context.Context, n types.Node, ttlSeconds int64) (int64, error) {
	data, err := json.Marshal(&n)
	if err != nil {
		return 0, err
	}
	lease, err := s.cli.Grant(ctx, ttlSeconds)
	if err != nil {
		return 0, fmt.Errorf("node lease: %w", err)
	}
	_, err = s.cli.Txn(ctx).Then(
		clientv3.OpPut(nodeKey(n.Name), string(data)),
		clientv3.OpPut(aliveKey(n.Name), string(data), clientv3.WithLease(lease.ID)),
	).Commit()
	if err != nil {
		s.cli.Revoke(context.WithoutCancel(ctx), lease.ID)
		return 0, err
	}
	return int64(lease.ID), nil
}

// KeepNodeAlive renews a node's lease; ErrLeaseExpired when it is gone.
func (s *Store) KeepNodeAlive(ctx context.Context, lease int64) error {
	_, err := s.cli.KeepAliveOnce(ctx, clientv3.LeaseID(lease))
	if errors.Is(err, rpctypes.ErrLeaseNotFound) || errors.Is(err, rpctypes.ErrGRPCLeaseNotFound) {
		return ErrLeaseExpired
	}
	return err
}

// Nodes lists the registered nodes; Ready tells which are alive now.
func (s *Store) Nodes(ctx context.Context) ([]types.Node, error) {
	resp, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(prefix+"nodes/", clientv3.WithPrefix()),
		clientv3.OpGet(prefix+"alive/", clientv3.WithPrefix(), clientv3.WithKeysOnly()),
	).Commit()
	if err != nil {
		return nil, err
	}
	alive := map[string]bool{}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		alive[strings.TrimPrefix(string(kv.Key), prefix+"alive/")] = true
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	nodes := make([]types.Node, 0, len(kvs))
	for _, kv := range kvs {
		var n types.Node
		if err := json.Unmarshal(kv.Value, &n); err == nil {
			n.Ready = alive[n.Name]
			nodes = append(nodes, n)
		}
	}
	return nodes, nil
}

// ErrNodeReady is returned for a node that cannot be forgotten because it
// is alive.
var ErrNodeReady = errors.New("node is ready")

// RemoveNode forgets a node that is down: its record goes unless its
// liveness key exists (ErrNodeReady), checked in the same transaction, so
// that a node that comes back meanwhile stays. ErrNotFound when there is
// no such node. A forgotten node that starts again registers anew.
func (s *Store) RemoveNode(ctx context.Context, name string) error {
	resp, err := s.cli.Txn(ctx).If(
		clientv3.Compare(clientv3.CreateRevision(nodeKey(name)), ">", 0),
		clientv3.Compare(clientv3.CreateRevision(aliveKey(name)), "=", 0),
	).Then(clientv3.OpDelete(nodeKey(name))).
		Else(clientv3.OpGet(nodeKey(name), clientv3.WithCountOnly())).
		Commit()
	if err != nil {
		return err
	}
	if resp.Succeeded {
		return nil
	}
	if resp.Responses[0].GetResponseRange().Count == 0 {
		return ErrNotFound
	}
	return ErrNodeReady
}

// ErrNotOnNode is returned for a status reported by a node the pod is not
// placed on (any more): a node that was cut off while its pods moved.
var ErrNotOnNode = errors.New("the pod is not placed on this node")

// PutStatusFrom records a status that node observed, only while the pod
// is placed on that node, so a node that comes back from a partition
// cannot overwrite the status of the pod's new home.
func (s *Store) PutStatusFrom(ctx context.Context, tenant, node string, st types.PodStatus) error {
	for range 8 {
		p, err := s.Pod(ctx, tenant, st.ID)
		if err != nil {
			return err
		}
		if p.Node != node {
			return fmt.Errorf("pod %s: %w (it is on %q)", st.ID, ErrNotOnNode, p.Node)
		}
		if done, err := s.PutStatusAt(ctx, tenant, p.Revision, st); err != nil || done {
			return err
		}
	}
	return fmt.Errorf("pod %s changed too often to record its status", st.ID)
}
