package store

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

func TestIngressState(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	if _, err := s.IngressState(ctx, "session.key"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
	got, err := s.CreateIngressState(ctx, "session.key", []byte("first"))
	if err != nil || string(got) != "first" {
		t.Fatalf("create: %q %v", got, err)
	}
	got, err = s.CreateIngressState(ctx, "session.key", []byte("second"))
	if err != nil || string(got) != "first" {
		t.Fatalf("second create must return the first value: %q %v", got, err)
	}
	if err := s.PutIngressState(ctx, "acme/certs/a.example.com", []byte{0, 1, 2}); err != nil {
		t.Fatal(err)
	}
	if b, err := s.IngressState(ctx, "acme/certs/a.example.com"); err != nil || !bytes.Equal(b, []byte{0, 1, 2}) {
		t.Fatalf("get: %v %v", b, err)
	}
	if err := s.DeleteIngressState(ctx, "acme/certs/a.example.com"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.IngressState(ctx, "acme/certs/a.example.com"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
	for _, bad := range []string{"", "/x", "x/", "a/../b", "a//b", "a b", "ä", ".", "x/.."} {
		if err := s.PutIngressState(ctx, bad, nil); err == nil {
			t.Errorf("name %q accepted", bad)
		}
	}
}
