package nodeproto

import (
	"context"
	"crypto/x509"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/macro-cloud/macro/types"
)

// meshBackend serves a mesh view that the test changes.
type meshBackend struct {
	Backend
	mu   sync.Mutex
	view map[string]types.MeshView
}

func (b *meshBackend) Mesh(_ context.Context, node string) (types.MeshView, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.view[node], nil
}

func (b *meshBackend) set(node string, v types.MeshView) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.view[node] = v
}

// openClient is a node protocol client of a server over be that lets
// every node in, closed with the test.
func openClient(t *testing.T, be Backend) *Client {
	t.Helper()
	h := NewHandler(HandlerConfig{Backend: be, Check: func(context.Context, string) (string, error) { return "", nil }})
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	cli, err := NewClient(ClientConfig{Servers: []string{srv.URL}, Token: "kj_test", RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	return cli
}

// TestMeshStream: the agent gets its node's view at once and every change
// after; another node's view is not sent to it.
func TestMeshStream(t *testing.T) {
	be := &meshBackend{view: map[string]types.MeshView{}}
	be.set("n1", types.MeshView{Nodes: []types.MeshNode{{Name: "n2", Key: "k2", Endpoint: "10.0.0.2:51820"}}})
	be.set("n2", types.MeshView{Pods: []types.MeshPod{{ID: "secret", Tenant: "other"}}})
	cli := openClient(t, be)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	views := cli.WatchMesh(ctx, "n1")
	next := func() types.MeshView {
		t.Helper()
		select {
		case v := <-views:
			return v
		case <-ctx.Done():
			t.Fatal("no mesh view")
			return types.MeshView{}
		}
	}
	if v := next(); len(v.Nodes) != 1 || v.Nodes[0].Name != "n2" || len(v.Pods) != 0 {
		t.Fatalf("first view: %+v", v)
	}
	be.set("n1", types.MeshView{RotateKey: 2, Pods: []types.MeshPod{{ID: "p1", Tenant: "alice", Node: "n2", IPv6: "fd00::1"}}})
	if v := next(); v.RotateKey != 2 || len(v.Pods) != 1 || v.Pods[0].ID != "p1" {
		t.Fatalf("changed view: %+v", v)
	}
}

// TestMeshStreamRefused: a bad node name is refused, a backend without a
// mesh answers 404.
func TestMeshStreamRefused(t *testing.T) {
	for _, tt := range []struct {
		name string
		be   Backend
		node string
	}{
		{"bad node name", &meshBackend{view: map[string]types.MeshView{}}, "-x"},
		{"no mesh", nil, "n1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := NewHandler(HandlerConfig{Backend: tt.be, Check: func(context.Context, string) (string, error) { return "", nil }})
			srv := httptest.NewTLSServer(h)
			defer srv.Close()
			pool := x509.NewCertPool()
			pool.AddCert(srv.Certificate())
			cli, err := NewClient(ClientConfig{Servers: []string{srv.URL}, Token: "kj_test", RootCAs: pool})
			if err != nil {
				t.Fatal(err)
			}
			ch := make(chan types.MeshView, 1)
			if err := followOnce(context.Background(), cli, "mesh", url.Values{"node": {tt.node}}, true, ch); err == nil {
				t.Fatal("no error")
			}
		})
	}
}
