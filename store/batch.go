package store

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"golang.org/x/sync/errgroup"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/macro-cloud/macro/types"
)

// Batched writes for the control plane's hot paths: placing many pods at
// once, recording many statuses. etcd takes at most --max-txn-ops
// operations in one transaction: 128 by default (an external etcd), more in
// the embedded member, which is configured with embeddedTxnOps; a batch is
// split to fit (Store.txnOps).
const (
	defaultTxnOps  = 128
	embeddedTxnOps = 1024
)

// Placement is the scheduler's decision for one pod: Node, or why none.
type Placement struct {
	Pod    types.Pod // as read, with its Revision
	Node   string
	Reason string
}

// Place commits placements, each only if its pod is unchanged since it was
// read (its Revision), each on its own condition (a nested transaction per
// pod). It returns the placements that did not commit because their pod
// changed or went away meanwhile, for the caller to decide again.
func (s *Store) Place(ctx context.Context, ps []Placement) ([]Placement, error) {
	perTxn := s.txnOps / 2
	// Chunks commit concurrently: etcd writes them with one fsync.
	var mu sync.Mutex
	var stale []Placement
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for off := 0; off < len(ps); off += perTxn {
		chunk := ps[off:min(off+perTxn, len(ps))]
		g.Go(func() error {
			ops := make([]clientv3.Op, 0, len(chunk))
			for _, pl := range chunk {
				p := pl.Pod
				p.Node, p.Unschedulable = pl.Node, pl.Reason
				data, err := json.Marshal(&p)
				if err != nil {
					return err
				}
				k := podKey(p.Tenant, p.ID)
				ops = append(ops, clientv3.OpTxn(
					[]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(k), "=", pl.Pod.Revision)},
					[]clientv3.Op{clientv3.OpPut(k, string(data))}, nil))
			}
			resp, err := s.cli.Txn(gctx).Then(ops...).Commit()
			if err != nil {
				return fmt.Errorf("place pods: %w", err)
			}
			mu.Lock()
			defer mu.Unlock()
			for i, r := range resp.Responses {
				if t := r.GetResponseTxn(); t == nil || !t.Succeeded {
					stale = append(stale, chunk[i])
				}
			}
			return nil
		})
	}
	err := g.Wait()
	return stale, err
}

// CreatePods stores new pods, claiming their names, in as few
// transactions as fit: a job of many replicas at once. A batch fails as a
// whole when one of its names or IDs is taken; nothing of it is stored.
func (s *Store) CreatePods(ctx context.Context, pods []*types.Pod) error {
	perTxn := s.txnOps / 4
	for len(pods) > 0 {
		n := min(len(pods), perTxn)
		chunk := pods[:n]
		pods = pods[n:]
		for attempt := 0; ; attempt++ {
			again, err := s.createChunk(ctx, chunk)
			if err != nil {
				return err
			}
			if !again {
				break
			}
			if attempt == maxGuardedAttempts {
				return ErrConflict
			}
			backoff(ctx, attempt)
		}
	}
	return nil
}

// createChunk is one transaction of CreatePods, which also counts the
// pods in their tenants' usage records and claims their addresses
// (vpcclaims.go); again when one of those changed meanwhile.
func (s *Store) createChunk(ctx context.Context, chunk []*types.Pod) (again bool, err error) {
	cmps := make([]clientv3.Cmp, 0, 2*len(chunk))
	ops := make([]clientv3.Op, 0, 2*len(chunk))
	usage := map[string]types.TenantUsage{} // what the chunk adds, by tenant
	for _, p := range chunk {
		data, err := json.Marshal(p)
		if err != nil {
			return false, err
		}
		nk, pk := nameKey(p.Tenant, p.Name), podKey(p.Tenant, p.ID)
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(nk), "=", 0), clientv3.Compare(clientv3.CreateRevision(pk), "=", 0))
		ops = append(ops, clientv3.OpPut(nk, p.ID), clientv3.OpPut(pk, string(data)))
		usage[p.Tenant] = addUsage(usage[p.Tenant], podUsage(p), types.TenantUsage{})
	}
	gets := make([]clientv3.Op, 0, len(usage))
	tenants := make([]string, 0, len(usage))
	for t := range usage {
		tenants = append(tenants, t)
		gets = append(gets, clientv3.OpGet(usageKey(t)))
	}
	resp, err := s.cli.Txn(ctx).Then(gets...).Commit()
	if err != nil {
		return false, fmt.Errorf("create pods: %w", err)
	}
	indexed := map[string]bool{}
	for i, t := range tenants {
		uk := usageKey(t)
		kvs := resp.Responses[i].GetResponseRange().Kvs
		if len(kvs) == 0 {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(uk), "=", 0))
			continue
		}
		var u types.TenantUsage
		if err := json.Unmarshal(kvs[0].Value, &u); err != nil {
			return false, fmt.Errorf("decode %s: %w", uk, err)
		}
		data, err := json.Marshal(addUsage(u, usage[t], types.TenantUsage{}))
		if err != nil {
			return false, err
		}
		indexed[t] = true
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(uk), "=", kvs[0].ModRevision))
		ops = append(ops, clientv3.OpPut(uk, string(data)))
	}
	for _, p := range chunk {
		if !indexed[p.Tenant] {
			continue
		}
		for _, a := range podAddrs(p) {
			k := addrKey(p.Tenant, a)
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(k), "=", 0))
			ops = append(ops, clientv3.OpPut(k, p.ID))
		}
	}
	// On failure, the Else reads the batch's names: a retry of a batch
	// that was applied before a leader change hid its answer finds them
	// all held by its own pods.
	names := make([]clientv3.Op, 0, len(chunk))
	for _, p := range chunk {
		names = append(names, clientv3.OpGet(nameKey(p.Tenant, p.Name)))
	}
	tresp, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).Else(names...).Commit()
	if err != nil {
		return false, fmt.Errorf("create pods: %w", err)
	}
	if tresp.Succeeded || heldBy(tresp, chunk) {
		for _, p := range chunk {
			p.Revision = tresp.Header.Revision
		}
		return false, nil
	}
	for _, r := range tresp.Responses {
		if len(r.GetResponseRange().GetKvs()) > 0 {
			return false, fmt.Errorf("create pods: %w (a name or ID of the batch exists)", ErrNameInUse)
		}
	}
	return true, nil
}

// PutStatusAt records a status that node observed while the pod is as the
// caller last saw it (its revision rev, placed on that node); false when
// the pod changed since, and nothing was written.
func (s *Store) PutStatusAt(ctx context.Context, tenant string, rev int64, st types.PodStatus) (bool, error) {
	data, err := json.Marshal(&st)
	if err != nil {
		return false, err
	}
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(podKey(tenant, st.ID)), "=", rev)).
		Then(clientv3.OpPut(statusKey(tenant, st.ID), string(data))).
		Commit()
	if err != nil {
		return false, err
	}
	return resp.Succeeded, nil
}

// StatusAt is a status to record while its pod is at revision Rev.
type StatusAt struct {
	Tenant string
	Rev    int64
	Status types.PodStatus
}

// PutStatusesAt records many statuses in as few transactions as fit, each
// on its own condition (its pod unchanged since Rev: a nested transaction
// per status). ok[i] tells whether the i-th was written.
func (s *Store) PutStatusesAt(ctx context.Context, sts []StatusAt) (ok []bool, err error) {
	ok = make([]bool, len(sts))
	perTxn := s.txnOps / 2 // a nested put and its compare count twice
	for off := 0; off < len(sts); off += perTxn {
		chunk := sts[off:min(off+perTxn, len(sts))]
		ops := make([]clientv3.Op, 0, len(chunk))
		for _, sa := range chunk {
			data, err := json.Marshal(&sa.Status)
			if err != nil {
				return ok, err
			}
			ops = append(ops, clientv3.OpTxn(
				[]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(podKey(sa.Tenant, sa.Status.ID)), "=", sa.Rev)},
				[]clientv3.Op{clientv3.OpPut(statusKey(sa.Tenant, sa.Status.ID), string(data))}, nil))
		}
		resp, err := s.cli.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			return ok, fmt.Errorf("put statuses: %w", err)
		}
		for i, r := range resp.Responses {
			if t := r.GetResponseTxn(); t != nil && t.Succeeded {
				ok[off+i] = true
			}
		}
	}
	return ok, nil
}

// heldBy tells whether the names a failed CreatePods read are all held by
// the batch's own pods.
func heldBy(resp *clientv3.TxnResponse, chunk []*types.Pod) bool {
	for i, r := range resp.Responses {
		kvs := r.GetResponseRange().GetKvs()
		if len(kvs) != 1 || string(kvs[0].Value) != chunk[i].ID {
			return false
		}
	}
	return len(resp.Responses) == len(chunk)
}
