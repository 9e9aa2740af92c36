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
		Check: func(_ context.Context, tok string) error {
			if tok != "kj_good" {
				return errors.New("bad token")
			}
			return nil
		},
		Tunnels:   tunnels,
		Volumes:   fakeDirectory{"alice/v": "n1", "alice/w": "n2"},
		LocalNode: "n1",
		LocalOps:  volumeNode{dir: local},
	})
	srv := httptest.NewTLSServer(h)
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	cli, err := NewClient(ClientConfig{Servers: []string{srv.URL}, Token: "kj_good", RootCAs: pool})
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
