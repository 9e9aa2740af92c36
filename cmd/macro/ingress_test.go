package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/macro-cloud/macro/auth"
	"github.com/macro-cloud/macro/ingress"
	"github.com/macro-cloud/macro/store"
)

// TestIngressAuthFlags: the OIDC flags become the proxy's provider, the
// session secret is made once under the data dir and kept, and
// incomplete flag sets are refused.
func TestIngressAuthFlags(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "client-secret")
	os.WriteFile(secretFile, []byte("s3cret\n"), 0o600)
	parse := func(args ...string) ingressConfig {
		var c ingressConfig
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		c.addFlags(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		c.dataDir = dir
		return c
	}
	c := parse("--oidc-issuer", "https://id.example.com", "--oidc-client-id", "macro", "--oidc-client-secret-file", secretFile)
	var opts ingress.Options
	if err := c.authOptions(&opts, nil); err != nil {
		t.Fatal(err)
	}
	if opts.OIDC == nil || opts.OIDC.Issuer != "https://id.example.com" || opts.OIDC.ClientID != "macro" || opts.OIDC.ClientSecret != "s3cret" {
		t.Fatalf("oidc %+v", opts.OIDC)
	}
	keyFile := filepath.Join(dir, "ingress", "session.key")
	fi, err := os.Stat(keyFile)
	if err != nil || fi.Mode().Perm() != 0o600 || len(opts.SessionSecret) != 32 {
		t.Fatalf("session key %v %v", fi, err)
	}
	var again ingress.Options
	if err := parse().authOptions(&again, nil); err != nil || !bytes.Equal(again.SessionSecret, opts.SessionSecret) || again.OIDC != nil {
		t.Fatalf("second start: %v", err)
	}
	for _, args := range [][]string{
		{"--oidc-issuer", "https://id.example.com"},
		{"--oidc-client-id", "macro", "--oidc-client-secret-file", secretFile},
		{"--oidc-issuer", "https://id.example.com", "--oidc-client-id", "macro", "--oidc-client-secret-file", filepath.Join(dir, "missing")},
		{"--oidc-issuer", "https://id.example.com", "--oidc-client-id", "macro", "--oidc-client-secret-file", secretFile, "--oidc-ca-bundle", secretFile},
	} {
		if err := parse(args...).authOptions(&ingress.Options{}, nil); err == nil {
			t.Errorf("%s: accepted", strings.Join(args, " "))
		}
	}
	short := filepath.Join(dir, "short.key")
	os.WriteFile(short, []byte("x"), 0o600)
	if err := parse("--ingress-session-key", short).authOptions(&ingress.Options{}, nil); err == nil {
		t.Error("a 1-byte session key accepted")
	}
}

// TestIngressSharedSessionSecret: servers with different data dirs take
// the one session secret of their shared state; the first one brings its
// old secret file along, so logins made before go on.
func TestIngressSharedSessionSecret(t *testing.T) {
	shared := ingress.DirState(t.TempDir())
	first, second := t.TempDir(), t.TempDir()
	old := bytes.Repeat([]byte{7}, 32)
	os.MkdirAll(filepath.Join(first, "ingress"), 0o700)
	os.WriteFile(filepath.Join(first, "ingress", "session.key"), old, 0o600)
	var a, b ingress.Options
	if err := (ingressConfig{dataDir: first}).authOptions(&a, shared); err != nil {
		t.Fatal(err)
	}
	if err := (ingressConfig{dataDir: second}).authOptions(&b, shared); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.SessionSecret, old) || !bytes.Equal(b.SessionSecret, old) {
		t.Fatalf("secrets %x %x, want the first server's old one", a.SessionSecret, b.SessionSecret)
	}
	if _, err := os.Stat(filepath.Join(second, "ingress", "session.key")); err == nil {
		t.Fatal("the second server wrote a secret file of its own")
	}
}

// TestIngressStateSealed: the shared ingress state is sealed in the store
// under a key of the cluster CA: another server of the cluster (same CA)
// opens it, a store reader sees no plain text, and a value moved to
// another name or read with another CA does not open.
func TestIngressStateSealed(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ca, _, err := auth.LoadOrCreateCA(filepath.Join(t.TempDir(), "ca"), "c")
	if err != nil {
		t.Fatal(err)
	}
	s1, err := newIngressState(st, ca)
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := newIngressState(st, ca) // another server: the same CA
	acme := s1.under("acme")
	if err := acme.Put(ctx, "certs/a.example.com.pem", []byte("PRIVATE KEY")); err != nil {
		t.Fatal(err)
	}
	if b, err := s2.under("acme").Get(ctx, "certs/a.example.com.pem"); err != nil || string(b) != "PRIVATE KEY" {
		t.Fatalf("the other server reads %q %v", b, err)
	}
	raw, err := st.IngressState(ctx, "acme/certs/a.example.com.pem")
	if err != nil || bytes.Contains(raw, []byte("PRIVATE KEY")) {
		t.Fatalf("stored in the clear: %q %v", raw, err)
	}
	st.PutIngressState(ctx, "acme/certs/b.example.com.pem", raw)
	if _, err := acme.Get(ctx, "certs/b.example.com.pem"); err == nil {
		t.Fatal("a value moved to another name opens")
	}
	other, _, _ := auth.LoadOrCreateCA(filepath.Join(t.TempDir(), "ca"), "c")
	s3, _ := newIngressState(st, other)
	if _, err := s3.under("acme").Get(ctx, "certs/a.example.com.pem"); err == nil {
		t.Fatal("opens with another cluster's CA")
	}
	if _, err := acme.Get(ctx, "certs/none.pem"); !errors.Is(err, ingress.ErrNoState) {
		t.Fatalf("missing: %v", err)
	}
	a, err := s1.Create(ctx, "session.key", []byte("one"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := s2.Create(ctx, "session.key", []byte("two"))
	if err != nil || string(a) != "one" || string(b) != "one" {
		t.Fatalf("create: %q %q %v", a, b, err)
	}
}
