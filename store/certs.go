package store

// Client certificates and their revocation.
//
// Keys:
//
//	/macro/certs/<tenant>/<serial>   types.Cert, one per certificate issued
//	/macro/revoked/<serial>          types.RevokedCert, until it expires
//
// A certificate is recorded when the CA issues it, under the token that
// asked for it. Revoking the token, or removing the tenant, moves the
// records to the revocation list in the same transaction that deletes the
// token: a certificate is either recorded under a live token or revoked,
// never neither. Issuing records only while the token exists (RecordCert),
// so a certificate asked for with a token being revoked is refused rather
// than missed. The API port's authentication keeps the revocation list in
// memory and follows it with a watch (auth.Revocations).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/macro-cloud/macro/types"
)

func certKey(tenant, serial string) string { return prefix + "certs/" + tenant + "/" + serial }
func revokedKey(serial string) string      { return prefix + "revoked/" + serial }

// revokedPrefix is the key prefix of the revocation list.
const revokedPrefix = prefix + "revoked/"

// ErrTokenGone says that a certificate cannot be recorded because the token
// that asked for it is revoked (or its tenant gone).
var ErrTokenGone = errors.New("token revoked")

// RecordCert records a certificate issued for a token of its tenant; it
// fails with ErrTokenGone when the token or the tenant no longer exists,
// and the certificate must then not be handed out.
func (s *Store) RecordCert(ctx context.Context, c types.Cert) error {
	if err := errors.Join(keyPart("tenant", c.Tenant), keyPart("serial", c.Serial)); err != nil {
		return fmt.Errorf("record certificate: %w", err)
	}
	must := []string{tenantKey(c.Tenant)}
	if c.TokenID != "" {
		must = append(must, tokenKey(c.TokenID))
	}
	err := s.createJSON(ctx, certKey(c.Tenant, c.Serial), c, must...)
	if errors.Is(err, ErrNotFound) {
		return ErrTokenGone
	}
	if err != nil {
		return fmt.Errorf("record certificate: %w", err)
	}
	return nil
}

// Certs lists the certificates recorded for a tenant, oldest first.
func (s *Store) Certs(ctx context.Context, tenant string) ([]types.Cert, error) {
	if err := keyPart("tenant", tenant); err != nil {
		return nil, err
	}
	cs, err := listJSON[types.Cert](ctx, s, prefix+"certs/"+tenant+"/")
	if err != nil {
		return nil, fmt.Errorf("list certificates: %w", err)
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].Issued.Before(cs[j].Issued) })
	return cs, nil
}

// RevokedCerts reads the revocation list and the revision it was read at,
// so that a watch from the next revision misses nothing.
func (s *Store) RevokedCerts(ctx context.Context) ([]types.RevokedCert, int64, error) {
	resp, err := s.cli.Get(ctx, revokedPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, fmt.Errorf("read the revocation list: %w", err)
	}
	out := make([]types.RevokedCert, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var rc types.RevokedCert
		if json.Unmarshal(kv.Value, &rc) == nil && rc.Serial != "" {
			out = append(out, rc)
		}
	}
	return out, resp.Header.Revision, nil
}

// WatchRevoked delivers the certificates revoked after revision from. The
// channel closes when the watch ends (ctx done, compaction, lost leader):
// read the list again and watch from there.
func (s *Store) WatchRevoked(ctx context.Context, from int64) <-chan types.RevokedCert {
	out := make(chan types.RevokedCert, 64)
	wch := s.cli.Watch(clientv3.WithRequireLeader(ctx), revokedPrefix, clientv3.WithPrefix(), clientv3.WithRev(from))
	go func() {
		defer close(out)
		for resp := range wch {
			if resp.Err() != nil {
				return
			}
			for _, ev := range resp.Events {
				if ev.Type != clientv3.EventTypePut {
					continue // an expired entry's removal
				}
				var rc types.RevokedCert
				if json.Unmarshal(ev.Kv.Value, &rc) != nil || rc.Serial == "" {
					continue
				}
				select {
				case out <- rc:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

// RevokeToken deletes a token of tenant and revokes every certificate
// issued for it, in one transaction; it returns what it revoked.
// ErrNotFound when tenant has no token of that ID.
func (s *Store) RevokeToken(ctx context.Context, tenant, id string, now time.Time) ([]types.RevokedCert, error) {
	if keyPart("token", id) != nil || keyPart("tenant", tenant) != nil {
		return nil, ErrNotFound
	}
	for attempt := 0; attempt < maxGuardedAttempts; attempt++ {
		var tok types.Token
		rev, err := s.getJSON(ctx, tokenKey(id), &tok)
		if err != nil {
			return nil, err
		}
		if tok.Tenant != tenant {
			return nil, ErrNotFound
		}
		cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(tokenKey(id)), "=", rev)}
		ops := []clientv3.Op{clientv3.OpDelete(tokenKey(id))}
		revoked, certCmp, certOps, err := s.revokeOps(ctx, tenant, func(c types.Cert) bool { return c.TokenID == id }, now, "token revoked")
		if err != nil {
			return nil, err
		}
		resp, err := s.cli.Txn(ctx).If(append(cmps, certCmp)...).Then(append(ops, certOps...)...).Commit()
		if err != nil {
			return nil, fmt.Errorf("revoke token: %w", err)
		}
		if resp.Succeeded {
			return revoked, nil
		}
	}
	return nil, ErrConflict
}

// RevokeTenantCredentials deletes every token of tenant and revokes every
// certificate issued to it, in one transaction; it returns what it
// revoked. The tenant itself stays (DeleteTenant removes it).
func (s *Store) RevokeTenantCredentials(ctx context.Context, tenant string, now time.Time) ([]types.RevokedCert, error) {
	if err := keyPart("tenant", tenant); err != nil {
		return nil, err
	}
	for attempt := 0; attempt < maxGuardedAttempts; attempt++ {
		toks, err := s.Tokens(ctx, tenant)
		if err != nil {
			return nil, err
		}
		var cmps []clientv3.Cmp
		var ops []clientv3.Op
		for _, t := range toks {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(tokenKey(t.ID)), ">", 0))
			ops = append(ops, clientv3.OpDelete(tokenKey(t.ID)))
		}
		revoked, certCmp, certOps, err := s.revokeOps(ctx, tenant, func(types.Cert) bool { return true }, now, "tenant deleted")
		if err != nil {
			return nil, err
		}
		resp, err := s.cli.Txn(ctx).If(append(cmps, certCmp)...).Then(append(ops, certOps...)...).Commit()
		if err != nil {
			return nil, fmt.Errorf("revoke credentials of %s: %w", tenant, err)
		}
		if resp.Succeeded {
			return revoked, nil
		}
	}
	return nil, ErrConflict
}

// revokeOps reads the tenant's certificate records and returns the
// entries of the revocation list for those that match (and have not
// expired), a compare that no record of the tenant changed since they
// were read, and the operations that move them: delete the record, put
// the entry. Expired revocation entries of the tenant are dropped on the
// way.
func (s *Store) revokeOps(ctx context.Context, tenant string, match func(types.Cert) bool, now time.Time, reason string) ([]types.RevokedCert, clientv3.Cmp, []clientv3.Op, error) {
	p := prefix + "certs/" + tenant + "/"
	resp, err := s.cli.Get(ctx, p, clientv3.WithPrefix())
	if err != nil {
		return nil, clientv3.Cmp{}, nil, fmt.Errorf("read certificates: %w", err)
	}
	cmp := clientv3.Compare(clientv3.ModRevision(p), "<", resp.Header.Revision+1).WithPrefix()
	var out []types.RevokedCert
	var ops []clientv3.Op
	for _, kv := range resp.Kvs {
		var c types.Cert
		if err := json.Unmarshal(kv.Value, &c); err != nil || !match(c) {
			continue
		}
		ops = append(ops, clientv3.OpDelete(string(kv.Key)))
		if !c.Expires.After(now) {
			continue // refused by its expiry already
		}
		rc := types.RevokedCert{Serial: c.Serial, Tenant: c.Tenant, Expires: c.Expires, Revoked: now.UTC(), Reason: reason}
		data, err := json.Marshal(rc)
		if err != nil {
			return nil, clientv3.Cmp{}, nil, err
		}
		ops = append(ops, clientv3.OpPut(revokedKey(c.Serial), string(data)))
		out = append(out, rc)
	}
	// Entries whose certificates expired are of no more use.
	old, _, err := s.RevokedCerts(ctx)
	if err != nil {
		return nil, clientv3.Cmp{}, nil, err
	}
	for _, rc := range old {
		if rc.Tenant == tenant && !rc.Expires.After(now) {
			ops = append(ops, clientv3.OpDelete(revokedKey(rc.Serial)))
		}
	}
	return out, cmp, ops, nil
}

// MarkTenantDeleting sets the tenant's Deleting flag and returns the
// tenant; ErrNotFound when there is none.
func (s *Store) MarkTenantDeleting(ctx context.Context, name string) (types.Tenant, error) {
	return s.updateTenant(ctx, name, func(t *types.Tenant) error {
		t.Deleting = true
		return nil
	})
}

// ClearTenantDeleting undoes MarkTenantDeleting (a removal that was
// refused after all).
func (s *Store) ClearTenantDeleting(ctx context.Context, name string) error {
	_, err := s.updateTenant(ctx, name, func(t *types.Tenant) error {
		t.Deleting = false
		return nil
	})
	return err
}

// SetTenantQuota replaces the quota of a tenant.
func (s *Store) SetTenantQuota(ctx context.Context, name string, q types.Quota) (types.Tenant, error) {
	return s.updateTenant(ctx, name, func(t *types.Tenant) error {
		if t.Deleting {
			return fmt.Errorf("tenant %s is being deleted: %w", name, ErrNotFound)
		}
		t.Quota = q
		return nil
	})
}

// SetTenantEgress switches the egress of the tenant's pods on or off.
func (s *Store) SetTenantEgress(ctx context.Context, name string, on bool) (types.Tenant, error) {
	return s.updateTenant(ctx, name, func(t *types.Tenant) error {
		if t.Deleting {
			return fmt.Errorf("tenant %s is being deleted: %w", name, ErrNotFound)
		}
		t.NoEgress = !on
		return nil
	})
}

func (s *Store) updateTenant(ctx context.Context, name string, fn func(*types.Tenant) error) (types.Tenant, error) {
	if err := keyPart("tenant", name); err != nil {
		return types.Tenant{}, ErrNotFound
	}
	k := tenantKey(name)
	for attempt := 0; attempt < maxGuardedAttempts; attempt++ {
		var t types.Tenant
		rev, err := s.getJSON(ctx, k, &t)
		if err != nil {
			return t, err
		}
		if err := fn(&t); err != nil {
			return t, err
		}
		data, err := json.Marshal(&t)
		if err != nil {
			return t, err
		}
		resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(k), "=", rev)).Then(clientv3.OpPut(k, string(data))).Commit()
		if err != nil {
			return t, fmt.Errorf("update tenant: %w", err)
		}
		if resp.Succeeded {
			return t, nil
		}
	}
	return types.Tenant{}, ErrConflict
}

// DeleteTenant removes a tenant and whatever the store still keeps of it:
// tokens, namespaces and their VPC records, address claims and usage
// record, certificate records, custom
// domains it holds, pods, their names and statuses. Pods should have been stopped and removed
// first (their agents stop what runs once the pod is gone, as with docker
// rm -f). Revoked certificates stay on the revocation list until they
// expire.
func (s *Store) DeleteTenant(ctx context.Context, name string) error {
	if err := keyPart("tenant", name); err != nil {
		return ErrNotFound
	}
	for attempt := 0; attempt < maxGuardedAttempts; attempt++ {
		toks, err := s.Tokens(ctx, name)
		if err != nil {
			return err
		}
		cmps := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(tenantKey(name)), ">", 0)}
		ops := []clientv3.Op{clientv3.OpDelete(tenantKey(name))}
		for _, t := range toks {
			ops = append(ops, clientv3.OpDelete(tokenKey(t.ID)))
		}
		// A domain is keyed by its name alone: delete those still the
		// tenant's when the transaction commits (a stale claim may be
		// taken over by another tenant meanwhile).
		resp, err := s.cli.Get(ctx, prefix+"domains/", clientv3.WithPrefix())
		if err != nil {
			return fmt.Errorf("delete tenant %s: %w", name, err)
		}
		for _, kv := range resp.Kvs {
			var d types.Domain
			if json.Unmarshal(kv.Value, &d) == nil && d.Tenant == name {
				cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision))
				ops = append(ops, clientv3.OpDelete(string(kv.Key)))
			}
		}
		for _, kind := range []string{"namespaces", "certs", "pods", "names", "status", "vpc", "vpcaddr", "vpcnet"} {
			ops = append(ops, clientv3.OpDelete(tenantPrefix(kind, name), clientv3.WithPrefix()))
		}
		ops = append(ops, clientv3.OpDelete(usageKey(name)))
		tresp, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
		if err != nil {
			return fmt.Errorf("delete tenant %s: %w", name, err)
		}
		if tresp.Succeeded {
			return nil
		}
		if _, err := s.Tenant(ctx, name); errors.Is(err, ErrNotFound) {
			return ErrNotFound
		}
		// A domain of the tenant changed meanwhile: again.
	}
	return ErrConflict
}
