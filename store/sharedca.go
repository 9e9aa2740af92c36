package store

import (
	"context"
	"fmt"
)

// The cluster's CA in the store, for servers on an external etcd: there
// is no join to hand it from one server to the next, so the first server
// puts it here and the others install it. Whoever reaches the etcd holds
// every tenant's state already; the CA's key adds nothing to that.
const sharedCAKey = prefix + "ca"

type sharedCA struct {
	CertPEM string `json:"certPEM"`
	KeyPEM  string `json:"keyPEM"`
}

// SharedCA reads the CA stored for the cluster; ErrNotFound when none is.
func (s *Store) SharedCA(ctx context.Context) (certPEM, keyPEM []byte, err error) {
	var ca sharedCA
	if _, err := s.getJSON(ctx, sharedCAKey, &ca); err != nil {
		return nil, nil, err
	}
	return []byte(ca.CertPEM), []byte(ca.KeyPEM), nil
}

// PutSharedCA stores the cluster's CA unless one is stored already
// (ErrExists: read that one).
func (s *Store) PutSharedCA(ctx context.Context, certPEM, keyPEM []byte) error {
	if err := s.createJSON(ctx, sharedCAKey, sharedCA{CertPEM: string(certPEM), KeyPEM: string(keyPEM)}); err != nil {
		return fmt.Errorf("store the cluster's CA: %w", err)
	}
	return nil
}
