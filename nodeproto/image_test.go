package nodeproto

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

type fakeImages map[string]string // tenant/id -> archive

func (f fakeImages) SaveImage(_ context.Context, tenant, id string, w io.Writer) error {
	a, ok := f[tenant+"/"+id]
	if !ok {
		return errors.New("no such image")
	}
	_, err := io.WriteString(w, a)
	return err
}

// TestImageToItsNodes: a tenant's image goes to a node that runs it (or a
// server), not to any node that asks, and never for a join token.
func TestImageToItsNodes(t *testing.T) {
	h := NewHandler(HandlerConfig{
		Check:  nodeTokens,
		Images: fakeImages{"alice/sha256:aa": "alice's layers"},
		ImageAdmit: func(_ context.Context, tenant, id, node string) error {
			if node == "n3" && tenant == "alice" {
				return nil
			}
			return ErrNoBusiness
		},
	})
	srv := httptest.NewTLSServer(h)
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	fetch := func(tok, tenant, id string) (string, error) {
		c, err := NewClient(ClientConfig{Servers: []string{srv.URL}, Token: tok, RootCAs: pool})
		if err != nil {
			t.Fatal(err)
		}
		rc, err := c.FetchImage(context.Background(), tenant, id)
		if err != nil {
			return "", err
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		return string(b), err
	}
	if got, err := fetch("kj_n3", "alice", "sha256:aa"); err != nil || got != "alice's layers" {
		t.Fatalf("n3, which runs it: %q, %v", got, err)
	}
	for _, tt := range []struct{ tok, tenant, want string }{
		{"kj_n4", "alice", "no pod of this node runs it"},
		{"kj_n3", "bob", "no pod of this node runs it"},
		{"kj_join", "alice", "credential is needed"},
	} {
		if got, err := fetch(tt.tok, tt.tenant, "sha256:aa"); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s for %s's image: %q, %v; want %s", tt.tok, tt.tenant, got, err, tt.want)
		}
	}
}
