package api

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/macro-cloud/macro/auth"
	"github.com/macro-cloud/macro/delta"
	"github.com/macro-cloud/macro/store"
	"github.com/macro-cloud/macro/types"
)

// dirVolumes keeps volumes under a directory, as the agent does.
type dirVolumes string

func (d dirVolumes) VolumeRoot(ctx context.Context, tenant, name string) (string, error) {
	p := filepath.Join(string(d), tenant, name, "_data")
	return p, os.MkdirAll(p, 0o755)
}

func TestVolumeData(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ca, _, err := auth.LoadOrCreateCA(t.TempDir(), "testcloud")
	if err != nil {
		t.Fatal(err)
	}
	s := New(Config{Store: st, Auth: auth.New(auth.Config{Store: st}), CA: ca})
	vols := dirVolumes(t.TempDir())
	s.SetVolumeFiles(vols)
	cert, err := ca.ServerCert([]string{"127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	port := httptest.NewUnstartedServer(s.Handler())
	port.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	port.StartTLS()
	t.Cleanup(port.Close)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}

	token := map[string]string{}
	for _, tenant := range []string{"alice", "bob"} {
		if _, err := s.CreateTenant(ctx, tenant, types.Quota{}); err != nil {
			t.Fatal(err)
		}
		tok, err := s.CreateToken(ctx, tenant, "test")
		if err != nil {
			t.Fatal(err)
		}
		token[tenant] = tok.Token
	}
	if err := st.CreateVolume(ctx, &types.Volume{Name: "data", Tenant: "alice", Driver: "local", Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	remote := func(tenant, vol string) *delta.Remote {
		return &delta.Remote{URL: port.URL + Prefix + "/volumes/" + vol + "/data", Client: hc,
			Header: http.Header{"Authorization": {"Bearer " + token[tenant]}}}
	}

	// Import a tree into alice's volume, export it back elsewhere.
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "sub"), 0o755)
	os.WriteFile(filepath.Join(src, "sub/a"), []byte("hello"), 0o644)
	os.Symlink("sub/a", filepath.Join(src, "link"))
	if _, err := delta.Sync(ctx, &delta.TreeSource{Root: src}, remote("alice", "data")); err != nil {
		t.Fatalf("import: %v", err)
	}
	out := filepath.Join(t.TempDir(), "out")
	if _, err := delta.Sync(ctx, remote("alice", "data"), &delta.TreeReceiver{Root: out, State: out + ".state"}); err != nil {
		t.Fatalf("export: %v", err)
	}
	m, err := (&delta.TreeSource{Root: src}).Manifest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := delta.Verify(ctx, out, m); err != nil {
		t.Fatal(err)
	}
	if err := delta.Verify(ctx, filepath.Join(string(vols), "alice", "data", "_data"), m); err != nil {
		t.Fatal(err)
	}

	// Bob sees no volume of alice's, either way; nobody sees a missing one.
	for _, c := range []struct{ tenant, vol string }{{"bob", "data"}, {"alice", "nosuch"}} {
		var he *delta.HTTPError
		if _, err := remote(c.tenant, c.vol).Manifest(ctx); !errors.As(err, &he) || he.Status != 404 {
			t.Errorf("%s exports %s: %v", c.tenant, c.vol, err)
		}
		if _, err := delta.Sync(ctx, &delta.TreeSource{Root: src}, remote(c.tenant, c.vol)); !errors.As(err, &he) || he.Status != 404 {
			t.Errorf("%s imports into %s: %v", c.tenant, c.vol, err)
		}
	}
	// Without credentials: 401.
	anon := &delta.Remote{URL: port.URL + Prefix + "/volumes/data/data", Client: hc}
	var he *delta.HTTPError
	if _, err := anon.Manifest(ctx); !errors.As(err, &he) || he.Status != 401 {
		t.Errorf("anonymous export: %v", err)
	}
}
