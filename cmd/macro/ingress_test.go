package main

import (
	"bytes"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/macro-cloud/macro/ingress"
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
