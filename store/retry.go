package store

import (
	"context"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// While members elect a new leader (a server died, a partition healed),
// etcd refuses requests for a moment: "leader changed", "no leader",
// timeouts "due to previous leader failure". Those are retried here, for
// every read and write of the store, so that an API request in flight
// during a failover waits for the new leader instead of failing. A write
// that timed out may still have been applied: the store's writes are
// guarded by compares (a retry of an applied one fails its compare and the
// caller sees the conflict it would see anyway) or idempotent puts.

// retryFor bounds how long a request waits for a new leader.
const retryFor = 15 * time.Second

func transient(err error) bool {
	switch rpctypes.ErrorDesc(err) {
	case rpctypes.ErrLeaderChanged.Error(), rpctypes.ErrNoLeader.Error(),
		rpctypes.ErrTimeoutDueToLeaderFail.Error(), rpctypes.ErrTimeoutDueToConnectionLost.Error(),
		rpctypes.ErrTimeoutWaitAppliedIndex.Error(), rpctypes.ErrTimeout.Error():
		return true
	}
	return false
}

// retry runs fn until it succeeds, fails for another reason, ctx ends or
// retryFor passes.
func retry[T any](ctx context.Context, fn func() (T, error)) (T, error) {
	deadline := time.Now().Add(retryFor)
	wait := 50 * time.Millisecond
	for {
		v, err := fn()
		if err == nil || !transient(err) || time.Now().After(deadline) || ctx.Err() != nil {
			return v, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return v, err
		case <-t.C:
		}
		wait = min(2*wait, time.Second)
	}
}

// retryKV is a clientv3.KV that retries transient errors.
type retryKV struct{ kv clientv3.KV }

func (r retryKV) Put(ctx context.Context, key, val string, opts ...clientv3.OpOption) (*clientv3.PutResponse, error) {
	return retry(ctx, func() (*clientv3.PutResponse, error) { return r.kv.Put(ctx, key, val, opts...) })
}

func (r retryKV) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	return retry(ctx, func() (*clientv3.GetResponse, error) { return r.kv.Get(ctx, key, opts...) })
}

func (r retryKV) GetStream(ctx context.Context, key string, opts ...clientv3.OpOption) (clientv3.GetStreamChan, error) {
	return retry(ctx, func() (clientv3.GetStreamChan, error) { return r.kv.GetStream(ctx, key, opts...) })
}

func (r retryKV) Delete(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.DeleteResponse, error) {
	return retry(ctx, func() (*clientv3.DeleteResponse, error) { return r.kv.Delete(ctx, key, opts...) })
}

func (r retryKV) Compact(ctx context.Context, rev int64, opts ...clientv3.CompactOption) (*clientv3.CompactResponse, error) {
	return retry(ctx, func() (*clientv3.CompactResponse, error) { return r.kv.Compact(ctx, rev, opts...) })
}

func (r retryKV) Do(ctx context.Context, op clientv3.Op) (clientv3.OpResponse, error) {
	return retry(ctx, func() (clientv3.OpResponse, error) { return r.kv.Do(ctx, op) })
}

func (r retryKV) Txn(ctx context.Context) clientv3.Txn { return &retryTxn{kv: r.kv, ctx: ctx} }

// retryTxn records a transaction and commits it, again after a transient
// error.
type retryTxn struct {
	kv        clientv3.KV
	ctx       context.Context
	cmps      []clientv3.Cmp
	then, els []clientv3.Op
}

func (t *retryTxn) If(cs ...clientv3.Cmp) clientv3.Txn { t.cmps = append(t.cmps, cs...); return t }
func (t *retryTxn) Then(ops ...clientv3.Op) clientv3.Txn {
	t.then = append(t.then, ops...)
	return t
}
func (t *retryTxn) Else(ops ...clientv3.Op) clientv3.Txn { t.els = append(t.els, ops...); return t }

func (t *retryTxn) Commit() (*clientv3.TxnResponse, error) {
	return retry(t.ctx, func() (*clientv3.TxnResponse, error) {
		return t.kv.Txn(t.ctx).If(t.cmps...).Then(t.then...).Else(t.els...).Commit()
	})
}

// withRetries makes every request of cli wait out a leader election.
func withRetries(cli *clientv3.Client) *clientv3.Client {
	cli.KV = retryKV{kv: cli.KV}
	return cli
}
