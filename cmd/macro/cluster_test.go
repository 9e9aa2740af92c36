package main

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/macro-cloud/macro/api"
	"github.com/macro-cloud/macro/auth"
	"github.com/macro-cloud/macro/store"
	"github.com/macro-cloud/macro/types"
)

// TestRequestJoin asks a real member (embedded etcd with a peer URL, the
// native API on TLS from the cluster CA) to add a server, as macro server
// --join does, with the CA pinned or not, and with tokens that must not
// work.
func TestRequestJoin(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	ca, _, err := auth.LoadOrCreateCA(filepath.Join(dir, "ca"), "rack1")
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	peerURL := "https://" + l.Addr().String()
	l.Close()
	peerDir := filepath.Join(dir, peerDirName)
	if err := writePeerFiles(ca, peerDir, peerURL); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, store.Config{DataDir: dir, Member: store.Member{Name: "s1", PeerURL: peerURL, PeerCN: auth.PeerCN,
		CertFile: filepath.Join(peerDir, "peer.pem"), KeyFile: filepath.Join(peerDir, "peer-key.pem"), CAFile: filepath.Join(dir, "ca", auth.CACertFile)}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	native := api.New(api.Config{Store: st, Auth: auth.New(auth.Config{Store: st}), CA: ca, Cluster: "rack1"})
	tlsCfg, err := apiTLSConfig(ca, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	apiL, err := tls.Listen("tcp", "127.0.0.1:0", tlsCfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: native.Handler()}
	go srv.Serve(apiL)
	defer srv.Close()

	now := time.Now()
	token := func(kind string, ttl time.Duration, at time.Time) string {
		text, rec, err := auth.NewJoinToken(kind, ttl, at)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.CreateJoinToken(ctx, &rec); err != nil {
			t.Fatal(err)
		}
		return text
	}
	server, node, expired := token(types.JoinServer, time.Hour, now), token(types.JoinNode, 0, now), token(types.JoinServer, time.Minute, now.Add(-time.Hour))
	hash := auth.CAHash(ca.Cert)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	join := "https://" + apiL.Addr().String()
	for _, c := range []struct {
		name, token, caHash, peerURL, want string
	}{
		{"wrong CA", server, "sha256:" + strings.Repeat("0", 64), "https://192.0.2.10:2380", "refusing to send the token"},
		{"node token", node, hash, "https://192.0.2.10:2380", "wrong kind"},
		{"expired token", expired, hash, "https://192.0.2.10:2380", "expired"},
		{"unknown token", "kj_" + strings.Repeat("a", 16) + "_" + strings.Repeat("b", 64), hash, "https://192.0.2.10:2380", "not valid"},
		{"access token", "kr_" + strings.Repeat("a", 16) + "_" + strings.Repeat("b", 64), hash, "https://192.0.2.10:2380", "not a join token"},
		{"loopback peer", server, hash, "https://127.0.0.1:2380", "not 127.0.0.1"},
		{"plain peer", server, hash, "http://192.0.2.10:2380", "want https://HOST:PORT"},
	} {
		_, err := requestJoin(ctx, clusterConfig{join: join, token: c.token, caHash: c.caHash}, "s2", c.peerURL, log)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	if ms, _ := st.Members(ctx); len(ms) != 1 {
		t.Fatalf("refused joins added members: %+v", ms)
	}
	// Pinned, and trusted on first use: both join (the second one again,
	// before the new member started, gets the same answer).
	for _, pin := range []string{hash, ""} {
		jr, err := requestJoin(ctx, clusterConfig{join: strings.TrimPrefix(join, "https://"), token: server, caHash: pin}, "s2", "https://192.0.2.10:2380", log)
		if err != nil {
			t.Fatalf("join (ca-hash %q): %v", pin, err)
		}
		if jr.Cluster != "rack1" || len(jr.Members) != 2 || jr.CACert != string(ca.CertPEM) || !strings.Contains(jr.CAKey, "PRIVATE KEY") {
			t.Fatalf("join answer: %+v", jr.Members)
		}
		into := filepath.Join(t.TempDir(), "ca")
		if err := auth.InstallCA(into, []byte(jr.CACert), []byte(jr.CAKey)); err != nil {
			t.Fatal(err)
		}
		if got, _, err := auth.LoadOrCreateCA(into, ""); err != nil || !got.Cert.Equal(ca.Cert) {
			t.Fatalf("installed CA: %v", err)
		}
	}
	if _, err := requestJoin(ctx, clusterConfig{join: join, token: server, caHash: hash}, "s1", "https://192.0.2.11:2380", log); err == nil || !strings.Contains(err.Error(), "named s1 already") {
		t.Errorf("a second s1: %v", err)
	}
	// Another cluster's CA is never overwritten.
	other, _, _ := auth.LoadOrCreateCA(filepath.Join(t.TempDir(), "ca"), "other")
	otherKey, _ := other.KeyPEM()
	if err := auth.InstallCA(filepath.Join(dir, "ca"), other.CertPEM, otherKey); err == nil || !strings.Contains(err.Error(), "another cluster") {
		t.Errorf("installing another cluster's CA over this one: %v", err)
	}
}
