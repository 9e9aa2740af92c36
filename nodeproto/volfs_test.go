package nodeproto

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/hashicorp/yamux"

	"github.com/macro-cloud/macro/types"
	"github.com/macro-cloud/macro/volume/volfs"
)

// volumeNode is a node that serves the volumes in its directory.
type volumeNode struct {
	Ops // nil: only VolumeFS is called
	dir string
}

func (v volumeNode) VolumeFS(tenant, name string) http.Handler {
	return volfs.Handler(func(context.Context) (string, error) {
		d := filepath.Join(v.dir, tenant, name)
		if _, err := os.Stat(d); err != nil {
			return "", err
		}
		return d, nil
	})
}

// fakeDirectory routes volumes to their nodes, without replicas.
type fakeDirectory map[string]string

func (d fakeDirectory) Route(_ context.Context, tenant, name string) (VolumeRoute, error) {
	n, ok := d[tenant+"/"+name]
	if !ok {
		return VolumeRoute{}, fmt.Errorf("no such volume %s", name)
	}
	return VolumeRoute{Primary: n}, nil
}

func (d fakeDirectory) CheckReplica(context.Context, string, string, string, int64) error {
	return errors.New("no replicas")
}

func (d fakeDirectory) SetReplicaState(context.Context, string, string, string, string, int64) error {
	return errors.New("no replicas")
}

// Admit: node n4 runs no pod that uses a volume; the others all do.
func (d fakeDirectory) Admit(_ context.Context, tenant, name, node string) error {
	if node == "n4" {
		return ErrNoBusiness
	}
	return nil
}

// nodeTokens are the test's node credentials (kj_<node>) and one join
// token (kj_join), which binds no node.
func nodeTokens(_ context.Context, tok string) (string, error) {
	switch tok {
	case "kj_n3", "kj_n4":
		return strings.TrimPrefix(tok, "kj_"), nil
	case "kj_join":
		return "", nil
	}
	return "", errors.New("bad token")
}

// TestVolumeFSThroughServer: a node's volfs client reaches a volume held
// by the server's own agent (in process) and one held by another node
// (through that node's tunnel), by the volume's record; a volume the
// locator refuses is an error, not another volume.
func TestVolumeFSThroughServer(t *testing.T) {
	local, remote := t.TempDir(), t.TempDir()
	for _, d := range []string{filepath.Join(local, "alice", "v"), filepath.Join(remote, "alice", "w")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tunnels := NewTunnels()
	defer tunnels.Close()
	c1, c2 := net.Pipe()
	cs, err := yamux.Client(c1, yamuxConfig())
	if err != nil {
		t.Fatal(err)
	}
	ss, err := yamux.Server(c2, yamuxConfig())
	if err != nil {
		t.Fatal(err)
	}
	go ServeOps(ss, volumeNode{dir: remote})
	tunnels.put("n2", cs)

	h := NewHandler(HandlerConfig{
		Check:     nodeTokens,
		Tunnels:   tunnels,
		Volumes:   fakeDirectory{"alice/v": "n1", "alice/w": "n2"},
		LocalNode: "n1",
		LocalOps:  volumeNode{dir: local},
	})
	srv := httptest.NewTLSServer(h)
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	cli, err := NewClient(ClientConfig{Servers: []string{srv.URL}, Token: "kj_n3", RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for vol, dir := range map[string]string{"v": local, "w": remote} {
		c := &volfs.Client{HC: &http.Client{Transport: cli.VolumeTransport()}, Base: "http://volfs/alice/" + vol}
		data := []byte("contents of " + vol)
		if _, err := c.Put(ctx, "f", bytes.NewReader(data), int64(len(data)), 0o644, 0, 0); err != nil {
			t.Fatalf("%s: put: %v", vol, err)
		}
		if got, err := os.ReadFile(filepath.Join(dir, "alice", vol, "f")); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s: the node has %q, %v", vol, got, err)
		}
		var back bytes.Buffer
		if _, err := c.Get(ctx, "f", &back); err != nil || !bytes.Equal(back.Bytes(), data) {
			t.Fatalf("%s: get %q, %v", vol, back.Bytes(), err)
		}
		if _, err := c.Op(ctx, volfs.Request{Op: volfs.OpStat, Path: "missing"}); !errors.Is(err, syscall.ENOENT) {
			t.Fatalf("%s: stat of a missing file: %v", vol, err)
		}
	}
	var reason error
	c := &volfs.Client{HC: &http.Client{Transport: cli.VolumeTransport()}, Base: "http://volfs/alice/nope", OnError: func(err error) { reason = err }}
	if _, err := c.Op(ctx, volfs.Request{Op: volfs.OpStat}); !errors.Is(err, syscall.EIO) || reason == nil || !strings.Contains(reason.Error(), "no such volume") {
		t.Fatalf("unknown volume: %v (%v)", err, reason)
	}
	bad, _ := NewClient(ClientConfig{Servers: []string{srv.URL}, Token: "kj_bad", RootCAs: pool})
	c = &volfs.Client{HC: &http.Client{Transport: bad.VolumeTransport()}, Base: "http://volfs/alice/v", OnError: func(err error) { reason = err }}
	if _, err := c.Op(ctx, volfs.Request{Op: volfs.OpStat}); !errors.Is(err, syscall.EIO) || !strings.Contains(reason.Error(), "401") {
		t.Fatalf("bad token: %v (%v)", err, reason)
	}
}

// TestVolumeFSNodeIdentity: only a credential bound to a node gets a
// volume's data, and only for a volume the node has business with (the
// directory's Admit); a join token is refused. A credential speaks for
// its node alone: it cannot register, follow or tunnel as another.
func TestVolumeFSNodeIdentity(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "alice", "v"), 0o755); err != nil {
		t.Fatal(err)
	}
	issued := map[string]string{}
	h := NewHandler(HandlerConfig{
		Check:   nodeTokens,
		Volumes: fakeDirectory{"alice/v": "n1"},
		Credential: func(_ context.Context, node string) (string, error) {
			if node == "n3" {
				return "", ErrCredentialTaken
			}
			issued[node] = "kj_" + node
			return issued[node], nil
		},
		Credentialed: func(_ context.Context, node string) (bool, error) {
			return node == "n3" || issued[node] != "", nil
		},
		LocalNode: "n1",
		LocalOps:  volumeNode{dir: dir},
	})
	srv := httptest.NewTLSServer(h)
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	ctx := context.Background()
	client := func(tok string) *Client {
		c, err := NewClient(ClientConfig{Servers: []string{srv.URL}, Token: tok, RootCAs: pool})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for _, tt := range []struct {
		token  string
		status string // "" for success
	}{
		{"kj_n3", ""},
		{"kj_n4", "404"},
		{"kj_join", "403"},
	} {
		var reason error
		c := &volfs.Client{HC: &http.Client{Transport: client(tt.token).VolumeTransport()}, Base: "http://volfs/alice/v", OnError: func(err error) { reason = err }}
		_, err := c.Op(ctx, volfs.Request{Op: volfs.OpStat})
		if tt.status == "" {
			if err != nil {
				t.Fatalf("%s: %v (%v)", tt.token, err, reason)
			}
			continue
		}
		if err == nil || reason == nil || !strings.Contains(reason.Error(), tt.status) {
			t.Fatalf("%s: %v (%v), want %s", tt.token, err, reason, tt.status)
		}
		// The route, and the replication path, are refused alike.
		resp, err := client(tt.token).VolumeTransport().RoundTrip(mustRequest(t, "GET", "http://volfs/alice/v/route"))
		if err != nil || !strings.HasPrefix(resp.Status, tt.status) {
			t.Fatalf("%s: route: %v %v", tt.token, resp.Status, err)
		}
		resp.Body.Close()
		resp, err = client(tt.token).VolumeTransport().RoundTrip(mustRequest(t, "POST", "http://volrep/alice/v/n3/op"))
		if err != nil || !strings.HasPrefix(resp.Status, tt.status) {
			t.Fatalf("%s: volrep: %v %v", tt.token, resp.Status, err)
		}
		resp.Body.Close()
	}
	// n4's credential speaks for n4 only.
	if err := client("kj_n4").RegisterNode(ctx, types.Node{Name: "n3"}); err == nil || !strings.Contains(err.Error(), "not node n3's") {
		t.Fatalf("n4 registers as n3: %v", err)
	}
	if err := client("kj_n4").ReportStatus(ctx, "alice", types.PodStatus{ID: "p", Node: "n3"}); err == nil || !strings.Contains(err.Error(), "not node n3's") {
		t.Fatalf("n4 reports a status as n3: %v", err)
	}
	// A join token admits a new machine under a new name, but does not
	// speak for a node that has a credential.
	if err := client("kj_join").RegisterNode(ctx, types.Node{Name: "n3"}); err == nil || !strings.Contains(err.Error(), "credential of its own") {
		t.Fatalf("a join token registers as n3, which has a credential: %v", err)
	}
	if err := client("kj_join").ReportStatus(ctx, "alice", types.PodStatus{ID: "p", Node: "n3"}); err == nil || !strings.Contains(err.Error(), "credential of its own") {
		t.Fatalf("a join token reports a status as n3: %v", err)
	}
	// A join token is exchanged for a credential once per name.
	if tok, err := client("kj_join").NodeCredential(ctx, "n5"); err != nil || tok != "kj_n5" {
		t.Fatalf("credential for n5: %q, %v", tok, err)
	}
	if _, err := client("kj_join").NodeCredential(ctx, "n3"); err == nil || !strings.Contains(err.Error(), ErrCredentialTaken.Error()) {
		t.Fatalf("a second credential for n3: %v", err)
	}
	if _, err := client("kj_n4").NodeCredential(ctx, "n6"); err == nil || !strings.Contains(err.Error(), "already has a credential") {
		t.Fatalf("a credential asks for another: %v", err)
	}
}

func mustRequest(t *testing.T, method, u string) *http.Request {
	t.Helper()
	r, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
