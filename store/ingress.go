package store

// State the ingresses of a cluster share, so that every server's ingress
// serves the same certificates and honours the same login cookies.
//
// Keys:
//
//	/macro/ingress/<name>   opaque bytes (the ACME account and
//	                        certificates, challenge answers, the session
//	                        secret), sealed by the caller
//
// The store does not read these values: the servers seal them with a key
// derived from the cluster CA's private key, which only servers hold
// (cmd/macro's ingressState), so neither an agent nor an etcd backup
// alone reveals them.

import (
	"context"
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

const ingressPrefix = prefix + "ingress/"

// ingressName checks a name of shared ingress state: path segments of
// letters, digits, '.', '_' and '-', none of them "." or "..".
func ingressName(name string) error {
	if name == "" || len(name) > 300 {
		return fmt.Errorf("invalid ingress state name %q", name)
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("invalid ingress state name %q", name)
		}
		for _, c := range seg {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
				return fmt.Errorf("invalid ingress state name %q", name)
			}
		}
	}
	return nil
}

// IngressState reads one value of shared ingress state; ErrNotFound when
// there is none.
func (s *Store) IngressState(ctx context.Context, name string) ([]byte, error) {
	if err := ingressName(name); err != nil {
		return nil, err
	}
	resp, err := s.cli.Get(ctx, ingressPrefix+name)
	if err != nil {
		return nil, fmt.Errorf("ingress state: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, ErrNotFound
	}
	return resp.Kvs[0].Value, nil
}

// PutIngressState writes one value of shared ingress state.
func (s *Store) PutIngressState(ctx context.Context, name string, value []byte) error {
	if err := ingressName(name); err != nil {
		return err
	}
	if _, err := s.cli.Put(ctx, ingressPrefix+name, string(value)); err != nil {
		return fmt.Errorf("ingress state: %w", err)
	}
	return nil
}

// CreateIngressState writes value under name unless a value is there
// already, and returns the value that holds: value, or the one another
// server wrote first. Servers that start together agree on one secret.
func (s *Store) CreateIngressState(ctx context.Context, name string, value []byte) ([]byte, error) {
	if err := ingressName(name); err != nil {
		return nil, err
	}
	key := ingressPrefix + name
	resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(value))).Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return nil, fmt.Errorf("ingress state: %w", err)
	}
	if resp.Succeeded {
		return value, nil
	}
	if r := resp.Responses[0].GetResponseRange(); r != nil && len(r.Kvs) > 0 {
		return r.Kvs[0].Value, nil
	}
	return nil, fmt.Errorf("ingress state %s: neither written nor read", name)
}

// DeleteIngressState removes one value; removing a missing one is no error.
func (s *Store) DeleteIngressState(ctx context.Context, name string) error {
	if err := ingressName(name); err != nil {
		return err
	}
	if _, err := s.cli.Delete(ctx, ingressPrefix+name); err != nil {
		return fmt.Errorf("ingress state: %w", err)
	}
	return nil
}
