package store

// Custom domains of the ingress.
//
// Keys:
//
//	/macro/domains/<name>   types.Domain
//
// Keyed by name alone: a name is held by one tenant at a time, which the
// create transaction decides.

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

func domainKey(name string) string { return prefix + "domains/" + name }

// DomainHeldError says that another tenant holds a domain.
type DomainHeldError struct{ Name string }

func (e *DomainHeldError) Error() string {
	return fmt.Sprintf("domain %s is held by another tenant", e.Name)
}

// ClaimDomain stores d, a new claim. A claim of another tenant that is
// still pending after stale is taken over (a name cannot be squatted by a
// claim nobody verifies); a verified one, or a fresh one, makes a
// *DomainHeldError. Claiming again a name the tenant holds is ErrExists.
func (s *Store) ClaimDomain(ctx context.Context, d *types.Domain, stale time.Duration) error {
	if err := keyPart("domain", d.Name); err != nil || d.Tenant == "" {
		return fmt.Errorf("claim domain: name and tenant are required")
	}
	key := domainKey(d.Name)
	data, err := json.Marshal(d)
	if err != nil {
		return err
	}
	for {
		var cur types.Domain
		rev, err := s.getJSON(ctx, key, &cur)
		var cmp clientv3.Cmp
		switch {
		case errors.Is(err, ErrNotFound):
			cmp = clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
		case err != nil:
			return err
		case cur.Tenant == d.Tenant:
			return fmt.Errorf("claim domain %s: %w", d.Name, ErrExists)
		case !cur.Verified.IsZero() || d.Created.Sub(cur.Created) < stale:
			return &DomainHeldError{Name: d.Name}
		default:
			cmp = clientv3.Compare(clientv3.ModRevision(key), "=", rev)
		}
		resp, err := s.cli.Txn(ctx).If(cmp).Then(clientv3.OpPut(key, string(data))).Commit()
		if err != nil {
			return err
		}
		if resp.Succeeded {
			return nil
		}
	}
}

// Domain reads the tenant's claim of name; ErrNotFound when the tenant
// holds no such claim (another tenant's is not found either).
func (s *Store) Domain(ctx context.Context, tenant, name string) (types.Domain, error) {
	var d types.Domain
	if keyPart("domain", name) != nil {
		return d, ErrNotFound
	}
	if _, err := s.getJSON(ctx, domainKey(name), &d); err != nil {
		return d, err
	}
	if d.Tenant != tenant {
		return types.Domain{}, ErrNotFound
	}
	return d, nil
}

// Domains lists the claims of tenant, or of every tenant when tenant is
// empty, sorted by name.
func (s *Store) Domains(ctx context.Context, tenant string) ([]types.Domain, error) {
	all, err := listJSON[types.Domain](ctx, s, prefix+"domains/")
	if err != nil {
		return nil, fmt.Errorf("list domains: %w", err)
	}
	out := all[:0]
	for _, d := range all {
		if tenant == "" || d.Tenant == tenant {
			out = append(out, d)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// VerifyDomain marks the tenant's claim of name verified at t, unless the
// claim changed hands meanwhile (ErrNotFound).
func (s *Store) VerifyDomain(ctx context.Context, tenant, name string, t time.Time) (types.Domain, error) {
	var d types.Domain
	rev, err := s.getJSON(ctx, domainKey(name), &d)
	if err != nil {
		return d, err
	}
	if d.Tenant != tenant {
		return types.Domain{}, ErrNotFound
	}
	d.Verified = t
	data, _ := json.Marshal(d)
	resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(domainKey(name)), "=", rev)).
		Then(clientv3.OpPut(domainKey(name), string(data))).Commit()
	if err != nil {
		return d, err
	}
	if !resp.Succeeded {
		return types.Domain{}, ErrNotFound
	}
	return d, nil
}

// DeleteDomain removes the tenant's claim of name; ErrNotFound when it
// holds none.
func (s *Store) DeleteDomain(ctx context.Context, tenant, name string) error {
	var d types.Domain
	rev, err := s.getJSON(ctx, domainKey(name), &d)
	if err != nil {
		return err
	}
	if d.Tenant != tenant {
		return ErrNotFound
	}
	resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(domainKey(name)), "=", rev)).
		Then(clientv3.OpDelete(domainKey(name))).Commit()
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		return ErrNotFound
	}
	return nil
}

// VerifiedDomains maps each tenant to the names it holds verified, as the
// ingress's table needs them.
func (s *Store) VerifiedDomains(ctx context.Context) (map[string][]string, error) {
	all, err := s.Domains(ctx, "")
	if err != nil {
		return nil, err
	}
	m := map[string][]string{}
	for _, d := range all {
		if !d.Verified.IsZero() {
			m[d.Tenant] = append(m[d.Tenant], d.Name)
		}
	}
	return m, nil
}
