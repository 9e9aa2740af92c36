package store

// Tenants, their access tokens and their namespaces.
//
// Keys:
//
//	/macro/tenants/<name>               types.Tenant
//	/macro/tokens/<id>                  types.Token (the secret's hash only)
//	/macro/namespaces/<tenant>/<name>   types.Namespace, created explicitly
//
// Tokens are keyed by ID alone so that a request's token is found with one
// read; listing a tenant's tokens scans them all, which is fine for the
// handful of tokens a cell holds per tenant.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/macro-cloud/macro/net/ipam"
	"github.com/macro-cloud/macro/types"
)

// ErrExists says that an object of that name exists already.
var ErrExists = errors.New("already exists")

// keyPart refuses names that would escape their place in a key; the API
// validates names first, this is the store's own guard.
func keyPart(what, s string) error {
	if s == "" || strings.ContainsAny(s, "/\x00") || s == "." || s == ".." {
		return fmt.Errorf("invalid %s name %q", what, s)
	}
	return nil
}

func tenantKey(name string) string { return prefix + "tenants/" + name }
func tokenKey(id string) string    { return prefix + "tokens/" + id }
func namespaceKey(tenant, name string) string {
	return prefix + "namespaces/" + tenant + "/" + name
}

// createJSON puts v at key if the key does not exist, and only if every
// key of mustExist exists (else ErrNotFound).
func (s *Store) createJSON(ctx context.Context, key string, v any, mustExist ...string) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", 0)}
	for _, k := range mustExist {
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(k), ">", 0))
	}
	resp, err := s.cli.Txn(ctx).If(cmps...).Then(clientv3.OpPut(key, string(data))).Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return err
	}
	if resp.Succeeded {
		return nil
	}
	if r := resp.Responses[0].GetResponseRange(); r != nil && len(r.Kvs) > 0 {
		return ErrExists
	}
	return ErrNotFound
}

// getJSON reads key into v; ErrNotFound when it is missing.
func (s *Store) getJSON(ctx context.Context, key string, v any) (int64, error) {
	resp, err := s.cli.Get(ctx, key)
	if err != nil {
		return 0, err
	}
	if len(resp.Kvs) == 0 {
		return 0, ErrNotFound
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, v); err != nil {
		return 0, fmt.Errorf("decode %s: %w", key, err)
	}
	return resp.Kvs[0].ModRevision, nil
}

// listJSON decodes every value under the key prefix p with decode,
// skipping (and logging) what does not decode.
func listJSON[T any](ctx context.Context, s *Store, p string) ([]T, error) {
	resp, err := s.cli.Get(ctx, p, clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	out := make([]T, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var v T
		if err := json.Unmarshal(kv.Value, &v); err != nil {
			s.log.Error("skipping undecodable object", "key", string(kv.Key), "err", err)
			continue
		}
		out = append(out, v)
	}
	return out, nil
}

// CreateTenant stores a new tenant; ErrExists when the name is taken.
func (s *Store) CreateTenant(ctx context.Context, t *types.Tenant) error {
	if err := keyPart("tenant", t.Name); err != nil {
		return fmt.Errorf("create tenant: %w", err)
	}
	if err := s.createJSON(ctx, tenantKey(t.Name), t); err != nil {
		return fmt.Errorf("create tenant %s: %w", t.Name, err)
	}
	return nil
}

// Tenant reads one tenant; ErrNotFound when there is none of that name.
func (s *Store) Tenant(ctx context.Context, name string) (types.Tenant, error) {
	var t types.Tenant
	if name == "" {
		return t, ErrNotFound
	}
	_, err := s.getJSON(ctx, tenantKey(name), &t)
	return t, err
}

// Tenants lists every tenant, sorted by name.
func (s *Store) Tenants(ctx context.Context) ([]types.Tenant, error) {
	ts, err := listJSON[types.Tenant](ctx, s, prefix+"tenants/")
	if err != nil {
		return nil, fmt.Errorf("list tenants: %w", err)
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].Name < ts[j].Name })
	return ts, nil
}

// CreateToken stores a token of an existing tenant: ErrNotFound when the
// tenant does not exist, ErrExists when the ID is taken.
func (s *Store) CreateToken(ctx context.Context, t *types.Token) error {
	if keyPart("token", t.ID) != nil || keyPart("tenant", t.Tenant) != nil || t.Hash == "" {
		return errors.New("create token: id, tenant and hash are required")
	}
	if err := s.createJSON(ctx, tokenKey(t.ID), t, tenantKey(t.Tenant)); err != nil {
		return fmt.Errorf("create token: %w", err)
	}
	return nil
}

// Token reads one token by ID; ErrNotFound when there is none (revoked).
func (s *Store) Token(ctx context.Context, id string) (types.Token, error) {
	var t types.Token
	if id == "" {
		return t, ErrNotFound
	}
	_, err := s.getJSON(ctx, tokenKey(id), &t)
	return t, err
}

// Tokens lists the tokens of a tenant, oldest first.
func (s *Store) Tokens(ctx context.Context, tenant string) ([]types.Token, error) {
	all, err := listJSON[types.Token](ctx, s, prefix+"tokens/")
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	var out []types.Token
	for _, t := range all {
		if t.Tenant == tenant {
			out = append(out, t)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// TouchToken records that a token was used at t. A revoked token stays
// revoked: nothing is written when it is gone.
func (s *Store) TouchToken(ctx context.Context, id string, t time.Time) error {
	for attempt := 0; attempt < 10; attempt++ {
		var tok types.Token
		rev, err := s.getJSON(ctx, tokenKey(id), &tok)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if !t.After(tok.LastUsed) {
			return nil
		}
		tok.LastUsed = t
		data, err := json.Marshal(&tok)
		if err != nil {
			return err
		}
		k := tokenKey(id)
		resp, err := s.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(k), "=", rev)).
			Then(clientv3.OpPut(k, string(data))).
			Commit()
		if err != nil {
			return fmt.Errorf("touch token: %w", err)
		}
		if resp.Succeeded {
			return nil
		}
	}
	return ErrConflict
}

// DeleteToken revokes a token of tenant; ErrNotFound when tenant has no
// token of that ID (another tenant's token included).
func (s *Store) DeleteToken(ctx context.Context, tenant, id string) error {
	var tok types.Token
	rev, err := s.getJSON(ctx, tokenKey(id), &tok)
	if err != nil {
		return err
	}
	if tok.Tenant != tenant {
		return ErrNotFound
	}
	k := tokenKey(id)
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(k), "=", rev)).
		Then(clientv3.OpDelete(k)).
		Commit()
	if err != nil {
		return fmt.Errorf("delete token: %w", err)
	}
	if !resp.Succeeded {
		// Touched or deleted meanwhile: try once more from the top.
		if _, err := s.Token(ctx, id); errors.Is(err, ErrNotFound) {
			return ErrNotFound
		}
		return s.DeleteToken(ctx, tenant, id)
	}
	return nil
}

// CreateNamespace stores an explicitly created namespace of an existing
// tenant: ErrExists when it exists already, ErrNotFound without the tenant.
func (s *Store) CreateNamespace(ctx context.Context, n *types.Namespace) error {
	if err := errors.Join(keyPart("tenant", n.Tenant), keyPart("namespace", n.Name)); err != nil {
		return fmt.Errorf("create namespace: %w", err)
	}
	if err := s.createJSON(ctx, namespaceKey(n.Tenant, n.Name), n, tenantKey(n.Tenant)); err != nil {
		return fmt.Errorf("create namespace %s: %w", n.Name, err)
	}
	return nil
}

// Namespace reads one explicitly created namespace.
func (s *Store) Namespace(ctx context.Context, tenant, name string) (types.Namespace, error) {
	var n types.Namespace
	if tenant == "" || name == "" {
		return n, ErrNotFound
	}
	_, err := s.getJSON(ctx, namespaceKey(tenant, name), &n)
	return n, err
}

// Namespaces lists the explicitly created namespaces of a tenant, by name.
func (s *Store) Namespaces(ctx context.Context, tenant string) ([]types.Namespace, error) {
	if tenant == "" {
		return nil, errors.New("list namespaces: empty tenant")
	}
	ns, err := listJSON[types.Namespace](ctx, s, tenantPrefix("namespaces", tenant))
	if err != nil {
		return nil, fmt.Errorf("list namespaces: %w", err)
	}
	sort.Slice(ns, func(i, j int) bool { return ns[i].Name < ns[j].Name })
	return ns, nil
}

// DeleteNamespace removes an explicitly created namespace, and its VPC
// record and subnet claims (its subnets are free again; see vpc.go);
// ErrNotFound when there is none of that name.
func (s *Store) DeleteNamespace(ctx context.Context, tenant, name string) error {
	if tenant == "" || name == "" {
		return ErrNotFound
	}
	for attempt := 0; attempt < maxGuardedAttempts; attempt++ {
		k := vpcKey(tenant, name)
		rec, err := s.cli.Get(ctx, k)
		if err != nil {
			return fmt.Errorf("delete namespace: %w", err)
		}
		cmps := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(namespaceKey(tenant, name)), ">", 0),
			clientv3.Compare(clientv3.ModRevision(k), "=", modRev(rec))}
		ops := []clientv3.Op{clientv3.OpDelete(namespaceKey(tenant, name)), clientv3.OpDelete(k)}
		var n types.NamespaceNet
		if len(rec.Kvs) > 0 && json.Unmarshal(rec.Kvs[0].Value, &n) == nil {
			for _, ck := range []string{subnet4Key(tenant, ipam.SubnetIndex4(n.Subnet4)), subnet6Key(tenant, n.Subnet6ID)} {
				// Only the namespace's own claim.
				ops = append(ops, clientv3.OpTxn([]clientv3.Cmp{clientv3.Compare(clientv3.Value(ck), "=", name)}, []clientv3.Op{clientv3.OpDelete(ck)}, nil))
			}
		}
		resp, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
		if err != nil {
			return fmt.Errorf("delete namespace: %w", err)
		}
		if resp.Succeeded {
			return nil
		}
		if _, err := s.Namespace(ctx, tenant, name); err != nil {
			return err
		}
		backoff(ctx, attempt)
	}
	return ErrConflict
}
