package store

// Guarded writes: a pod is created, or its desired state changed, only if
// a check over every pod of its tenant still holds when the write commits.
// This is how quotas stay exact with concurrent requests and several API
// servers: the pods are read at one revision, the guard decides, and the
// write is a transaction that also compares that no key under the
// tenant's pods prefix changed after that revision (etcd's range compare).
// A concurrent create, update or removal of another pod of the same
// tenant makes the transaction fail; the whole read-check-write runs
// again. Statuses are read for the guard but not compared: an agent
// writes them all the time, and a guard must only count them in a way
// that a status change cannot make wrong (see api/docker/quota.go).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/macro-cloud/macro/types"
)

// TenantPods is every pod of a tenant and its status, read at one revision.
// For CreatePodGuarded it also holds the tenant's record, which the create
// commits against: a create never lands for a tenant whose record changed
// meanwhile (its quota set, its removal begun, the tenant gone).
type TenantPods struct {
	Pods     []types.Pod
	Statuses map[string]types.PodStatus // by pod ID; missing: never seen by an agent
	// Nets are the tenant's namespaces' recorded subnets, by namespace
	// (see vpc.go).
	Nets     map[string]types.NamespaceNet
	Revision int64

	Tenant       types.Tenant // CreatePodGuarded only
	TenantExists bool
	tenantRev    int64 // the record's ModRevision, 0 when it does not exist

	// CreatePodGuarded only: the tenant's usage record, the address
	// claims to choose overlay addresses from, and whether Pods,
	// Statuses and Nets were read (after the guard returned ErrNeedPods).
	Usage  types.TenantUsage
	Claims *AddrClaims
	Full   bool
}

// Status is the status of pod id, the zero "created" status when an agent
// has not written one.
func (tp TenantPods) Status(id string) types.PodStatus {
	if st, ok := tp.Statuses[id]; ok {
		return st
	}
	return types.PodStatus{ID: id, Phase: types.PhaseCreated}
}

// maxGuardedAttempts bounds the retries of a guarded write under
// contention; then it fails with ErrConflict.
const maxGuardedAttempts = 50

// ReadTenantPods reads every pod of tenant and their statuses at one
// revision.
func (s *Store) ReadTenantPods(ctx context.Context, tenant string) (TenantPods, error) {
	if err := keyPart("tenant", tenant); err != nil {
		return TenantPods{}, err
	}
	resp, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(tenantPrefix("pods", tenant), clientv3.WithPrefix()),
		clientv3.OpGet(tenantPrefix("status", tenant), clientv3.WithPrefix()),
		clientv3.OpGet(tenantPrefix("vpc", tenant), clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return TenantPods{}, fmt.Errorf("read pods of %s: %w", tenant, err)
	}
	tp := TenantPods{Statuses: map[string]types.PodStatus{}, Revision: resp.Header.Revision, Full: true,
		Nets: decodeNets(resp.Responses[2].GetResponseRange().Kvs)}
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		p, err := decodePod(kv.Value, kv.ModRevision)
		if err != nil {
			s.log.Error("skipping undecodable pod", "key", string(kv.Key), "err", err)
			continue
		}
		tp.Pods = append(tp.Pods, p)
	}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		var st types.PodStatus
		if json.Unmarshal(kv.Value, &st) == nil {
			tp.Statuses[st.ID] = st
		}
	}
	return tp, nil
}

// unchangedSince compares that no pod of tenant changed after rev.
func unchangedSince(tenant string, rev int64) clientv3.Cmp {
	return clientv3.Compare(clientv3.ModRevision(tenantPrefix("pods", tenant)), "<", rev+1).WithPrefix()
}

// ErrNeedPods is what a guard of CreatePodGuarded returns (wrapped or not)
// when the tenant's usage record (TenantPods.Usage) cannot decide and it
// needs every pod of the tenant: the attempt runs again with them.
var ErrNeedPods = errors.New("the guard needs every pod of the tenant")

// CreatePodGuarded is CreatePod after guard approved the tenant's record
// and usage record (see vpcclaims.go) as they are when the pod is
// committed: the transaction compares that neither changed. A guard that
// needs every pod of the tenant returns ErrNeedPods, and is asked again
// with them (TenantPods.Full), still committed against the usage record,
// which every write of a pod that changes what it counts changes.
// guard's other errors are returned as they are, and nothing is written;
// guard may complete p (what it leaves is what is stored), and choose
// overlay addresses with TenantPods.Claims.
//
// A pod with a network gets its default addresses here, after guard
// (p.VPC, see vpc.go). A full namespace fails with an error that wraps
// ipam.ErrFull. The pod's addresses are claimed in the same transaction,
// and its usage counted. A tenant without a usage record (stored before
// there were any) is indexed first, once (indexTenant).
func (s *Store) CreatePodGuarded(ctx context.Context, p *types.Pod, guard func(TenantPods) error) error {
	if err := keyPart("tenant", p.Tenant); err != nil {
		return err
	}
	nk, pk, tk, uk := nameKey(p.Tenant, p.Name), podKey(p.Tenant, p.ID), tenantKey(p.Tenant), usageKey(p.Tenant)
	full, indexed := false, false
	for attempt := 0; attempt < maxGuardedAttempts; attempt++ {
		var tp TenantPods
		resp, err := s.cli.Txn(ctx).Then(clientv3.OpGet(tk), clientv3.OpGet(uk)).Commit()
		if err != nil {
			return fmt.Errorf("create pod: %w", err)
		}
		if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
			if err := json.Unmarshal(kvs[0].Value, &tp.Tenant); err != nil {
				return fmt.Errorf("decode %s: %w", tk, err)
			}
			tp.TenantExists, tp.tenantRev = true, kvs[0].ModRevision
		}
		kvs := resp.Responses[1].GetResponseRange().Kvs
		if len(kvs) == 0 {
			if indexed {
				// Removed meanwhile (the tenant's removal): again.
				backoff(ctx, attempt)
			}
			if err := s.indexTenant(ctx, p.Tenant); err != nil {
				return fmt.Errorf("create pod: %w", err)
			}
			indexed = true
			continue
		}
		known := &usageAt{rev: kvs[0].ModRevision}
		if err := json.Unmarshal(kvs[0].Value, &known.TenantUsage); err != nil {
			return fmt.Errorf("decode %s: %w", uk, err)
		}
		tp.Usage, tp.Claims = known.TenantUsage, s.AddrClaims(ctx, p.Tenant)
		cmps := []clientv3.Cmp{
			clientv3.Compare(clientv3.CreateRevision(nk), "=", 0),
			clientv3.Compare(clientv3.CreateRevision(pk), "=", 0),
			clientv3.Compare(clientv3.ModRevision(tk), "=", tp.tenantRev),
		}
		if full {
			pods, err := s.ReadTenantPods(ctx, p.Tenant)
			if err != nil {
				return err
			}
			tp.Pods, tp.Statuses, tp.Nets, tp.Revision, tp.Full = pods.Pods, pods.Statuses, pods.Nets, pods.Revision, true
			// The usage record's compare covers every pod change that
			// counts; its read came first, so compare the pods too.
			cmps = append(cmps, unchangedSince(p.Tenant, tp.Revision))
		}
		if err := guard(tp); err != nil {
			if errors.Is(err, ErrNeedPods) && !full {
				full = true
				attempt--
				continue
			}
			return err
		}
		if err := tp.Claims.Err(); err != nil {
			return err
		}
		ops := []clientv3.Op{clientv3.OpPut(nk, p.ID)}
		if needsVPC(p) {
			c, o, err := s.placeVPC(ctx, tp.Claims, p)
			if err != nil {
				return err
			}
			cmps, ops = append(cmps, c...), append(ops, o...)
		}
		c, o, err := s.indexOps(ctx, p.Tenant, p.ID, nil, p, known)
		if err != nil {
			return err
		}
		cmps, ops = append(cmps, c...), append(ops, o...)
		data, err := json.Marshal(p) // as the guard (and placeVPC) left it
		if err != nil {
			return err
		}
		tresp, err := s.cli.Txn(ctx).
			If(cmps...).
			Then(append(ops, clientv3.OpPut(pk, string(data)))...).
			Else(clientv3.OpGet(nk)).
			Commit()
		if err != nil {
			return fmt.Errorf("create pod: %w", err)
		}
		if tresp.Succeeded {
			p.Revision = tresp.Header.Revision
			return nil
		}
		if r := tresp.Responses[0].GetResponseRange(); r != nil && len(r.Kvs) > 0 {
			return &NameInUseError{Name: p.Name, ID: string(r.Kvs[0].Value)}
		}
		// The tenant, its usage or an address changed meanwhile: decide again.
		backoff(ctx, attempt)
	}
	return ErrConflict
}

// UpdatePodGuarded is UpdatePod whose write also needs guard's approval:
// guard sees the pod before and after fn, and every pod of the tenant as
// they are when the change commits. guard's error is returned as it is,
// and nothing is written; guard may complete after (what it leaves is
// what is stored).
func (s *Store) UpdatePodGuarded(ctx context.Context, tenant, id string, fn func(*types.Pod) error, guard func(before types.Pod, after *types.Pod, tp TenantPods) error) (types.Pod, error) {
	for attempt := 0; attempt < maxGuardedAttempts; attempt++ {
		tp, err := s.ReadTenantPods(ctx, tenant)
		if err != nil {
			return types.Pod{}, err
		}
		var before types.Pod
		found := false
		for _, p := range tp.Pods {
			if p.ID == id {
				before, found = p, true
				break
			}
		}
		if !found {
			return types.Pod{}, ErrNotFound
		}
		after := before
		after.Spec.Labels = cloneMap(before.Spec.Labels)
		after.Spec.Networks = maps.Clone(before.Spec.Networks)
		if err := fn(&after); err != nil {
			return after, err
		}
		if err := guard(before, &after, tp); err != nil {
			return before, err
		}
		data, err := json.Marshal(&after)
		if err != nil {
			return after, err
		}
		k := podKey(tenant, id)
		cmps, ops, err := s.indexOps(ctx, tenant, id, &before, &after, nil)
		if err != nil {
			return after, err
		}
		resp, err := s.cli.Txn(ctx).
			If(append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", before.Revision), unchangedSince(tenant, tp.Revision))...).
			Then(append(ops, clientv3.OpPut(k, string(data)))...).
			Commit()
		if err != nil {
			return after, fmt.Errorf("update pod: %w", err)
		}
		if resp.Succeeded {
			after.Revision = resp.Header.Revision
			return after, nil
		}
		backoff(ctx, attempt)
	}
	return types.Pod{}, ErrConflict
}

// backoff waits before the next attempt of a guarded write that lost to
// another write of the tenant: a random time up to a bound that doubles
// with each attempt (1 ms, 2 ms, ... up to 64 ms), so that many writers of
// one tenant spread out rather than all read and lose again together.
func backoff(ctx context.Context, attempt int) {
	limit := time.Millisecond << min(attempt, 6)
	pause(ctx, rand.N(limit))
}

func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
