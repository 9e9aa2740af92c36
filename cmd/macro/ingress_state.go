package main

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/macro-cloud/macro/auth"
	"github.com/macro-cloud/macro/ingress"
	"github.com/macro-cloud/macro/store"
)

// ingressState is the ingress.State that the servers of a cluster share:
// values in the store (store.IngressState), sealed with AES-256-GCM under
// a key derived from the cluster CA's private key, which every server and
// nothing else holds; the name is the seal's additional data, so a value
// cannot be moved to another name. Every server's ingress thereby serves
// the same ACME account and certificates and opens the same login cookies.
type ingressState struct {
	st     *store.Store
	aead   cipher.AEAD
	prefix string
}

func newIngressState(st *store.Store, ca *auth.CA) (*ingressState, error) {
	key, err := ca.DeriveKey("ingress state")
	if err != nil {
		return nil, fmt.Errorf("ingress state key: %w", err)
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	a, err := cipher.NewGCM(b)
	if err != nil {
		return nil, err
	}
	return &ingressState{st: st, aead: a}, nil
}

// under is the same state with names under dir/.
func (s *ingressState) under(dir string) *ingressState {
	c := *s
	c.prefix += dir + "/"
	return &c
}

var _ ingress.State = (*ingressState)(nil)

func (s *ingressState) seal(name string, plain []byte) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return s.aead.Seal(nonce, nonce, plain, []byte(s.prefix+name)), nil
}

func (s *ingressState) open(name string, sealed []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n+s.aead.Overhead() {
		return nil, fmt.Errorf("ingress state %s: too short to be sealed", s.prefix+name)
	}
	plain, err := s.aead.Open(nil, sealed[:n], sealed[n:], []byte(s.prefix+name))
	if err != nil {
		return nil, fmt.Errorf("ingress state %s does not open with this cluster's CA", s.prefix+name)
	}
	return plain, nil
}

func (s *ingressState) Get(ctx context.Context, name string) ([]byte, error) {
	b, err := s.st.IngressState(ctx, s.prefix+name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ingress.ErrNoState
	}
	if err != nil {
		return nil, err
	}
	return s.open(name, b)
}

func (s *ingressState) Put(ctx context.Context, name string, data []byte) error {
	b, err := s.seal(name, data)
	if err != nil {
		return err
	}
	return s.st.PutIngressState(ctx, s.prefix+name, b)
}

func (s *ingressState) Create(ctx context.Context, name string, data []byte) ([]byte, error) {
	b, err := s.seal(name, data)
	if err != nil {
		return nil, err
	}
	held, err := s.st.CreateIngressState(ctx, s.prefix+name, b)
	if err != nil {
		return nil, err
	}
	return s.open(name, held)
}

func (s *ingressState) Delete(ctx context.Context, name string) error {
	return s.st.DeleteIngressState(ctx, s.prefix+name)
}
