package store_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/macro-cloud/macro/auth"
	"github.com/macro-cloud/macro/store"
	"github.com/macro-cloud/macro/types"
)

// member opens a store as member name of a cluster on loopback, with
// peer TLS from ca.
func member(t *testing.T, ctx context.Context, ca *auth.CA, name string, initial []store.MemberInfo, peerURL string) *store.Store {
	t.Helper()
	dir := t.TempDir()
	certPEM, keyPEM, err := ca.PeerCert([]string{"127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	m := store.Member{Name: name, PeerURL: peerURL, PeerCN: auth.PeerCN,
		CertFile: filepath.Join(dir, "peer.pem"), KeyFile: filepath.Join(dir, "peer-key.pem"), CAFile: filepath.Join(dir, "ca.pem"),
		Join: initial != nil, Initial: initial}
	for f, b := range map[string][]byte{m.CertFile: certPEM, m.KeyFile: keyPEM, m.CAFile: ca.CertPEM} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	st, err := store.Open(ctx, store.Config{DataDir: dir, Member: m})
	if err != nil {
		t.Fatalf("open member %s: %v", name, err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func freePeerURL(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "https://" + l.Addr().String()
}

// TestMembers grows a cluster from one member to three, checks that the
// state is shared and that one leader leads, and removes a member.
func TestMembers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ca, _, err := auth.LoadOrCreateCA(filepath.Join(t.TempDir(), "ca"), "test")
	if err != nil {
		t.Fatal(err)
	}
	single, err := store.Open(ctx, store.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer single.Close()
	if _, err := single.AddMember(ctx, "b", "https://192.0.2.1:2380"); !errors.Is(err, store.ErrNotClustered) {
		t.Fatalf("adding to a loopback member: %v", err)
	}

	a := member(t, ctx, ca, "a", nil, freePeerURL(t))
	stores := []*store.Store{a}
	for _, name := range []string{"b", "c"} {
		url := freePeerURL(t)
		ms, err := a.AddMember(ctx, name, url)
		if err != nil {
			t.Fatalf("add %s: %v", name, err)
		}
		again, err := a.AddMember(ctx, name, url)
		if err != nil || len(again) != len(ms) {
			t.Fatalf("adding %s again before it started: %v %v", name, again, err)
		}
		stores = append(stores, member(t, ctx, ca, name, ms, url))
	}
	if _, err := a.AddMember(ctx, "b", freePeerURL(t)); !errors.Is(err, store.ErrExists) {
		t.Fatalf("a second member named b: %v", err)
	}
	ms, err := stores[2].Members(ctx)
	if err != nil || len(ms) != 3 {
		t.Fatalf("members: %+v %v", ms, err)
	}
	leaders := 0
	for i, m := range ms {
		if m.Name != string(rune('a'+i)) || len(m.PeerURLs) != 1 {
			t.Errorf("member %d: %+v", i, m)
		}
		if m.Leader {
			leaders++
		}
		if m.Self != (m.Name == "c") {
			t.Errorf("self: %+v", m)
		}
	}
	if leaders != 1 {
		t.Errorf("%d raft leaders: %+v", leaders, ms)
	}
	// A write on one member is read on the others.
	if err := stores[1].CreateTenant(ctx, &types.Tenant{Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	for i, st := range stores {
		if _, err := st.Tenant(ctx, "alice"); err != nil {
			t.Errorf("member %d: %v", i, err)
		}
	}

	// One candidate leads at a time; the next leads when it resigns.
	lead, resign, err := stores[0].Lead(ctx, "test", "a", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	go func() {
		_, resignB, err := stores[1].Lead(ctx, "test", "b", 2*time.Second)
		if err != nil {
			got <- err.Error()
			return
		}
		defer resignB()
		got <- "b"
	}()
	if id, err := stores[2].Leader(ctx, "test"); err != nil || id != "a" {
		t.Fatalf("leader: %q %v", id, err)
	}
	select {
	case id := <-got:
		t.Fatalf("%s leads while a does", id)
	case <-time.After(500 * time.Millisecond):
	}
	resign()
	if lead.Err() == nil {
		t.Fatal("the lead context lives on after resign")
	}
	if id := <-got; id != "b" {
		t.Fatalf("after a resigned: %s", id)
	}

	// Remove c: a and b go on.
	rm, err := a.RemoveMember(ctx, "c")
	if err != nil || rm.Name != "c" {
		t.Fatalf("remove c: %+v %v", rm, err)
	}
	select {
	case <-stores[2].Removed():
	case <-ctx.Done():
		t.Fatal("c did not stop after its removal")
	}
	if !stores[2].WasRemoved() {
		t.Error("c does not know it was removed")
	}
	if _, err := a.RemoveMember(ctx, "c"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("removing c again: %v", err)
	}
	if err := stores[0].CreateTenant(ctx, &types.Tenant{Name: "bob"}); err != nil {
		t.Fatalf("write after removal: %v", err)
	}
	if ms, _ := stores[1].Members(ctx); len(ms) != 2 {
		t.Errorf("members after removal: %+v", ms)
	}
}

// TestBecomeCluster restarts a single machine's store with a peer URL: its
// member advertises it from then on, and servers can join.
func TestBecomeCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ca, _, err := auth.LoadOrCreateCA(filepath.Join(t.TempDir(), "ca"), "test")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	st, err := store.Open(ctx, store.Config{DataDir: dir, Member: store.Member{Name: "a"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateTenant(ctx, &types.Tenant{Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	st.Close()

	certPEM, keyPEM, _ := ca.PeerCert([]string{"127.0.0.1"}, time.Now())
	m := store.Member{Name: "a", PeerURL: freePeerURL(t), PeerCN: auth.PeerCN,
		CertFile: filepath.Join(dir, "peer.pem"), KeyFile: filepath.Join(dir, "peer-key.pem"), CAFile: filepath.Join(dir, "ca.pem")}
	for f, b := range map[string][]byte{m.CertFile: certPEM, m.KeyFile: keyPEM, m.CAFile: ca.CertPEM} {
		os.WriteFile(f, b, 0o600)
	}
	st, err = store.Open(ctx, store.Config{DataDir: dir, Member: m})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Tenant(ctx, "alice"); err != nil {
		t.Fatalf("state after the restart: %v", err)
	}
	url := freePeerURL(t)
	ms, err := st.AddMember(ctx, "b", url)
	if err != nil {
		t.Fatal(err)
	}
	b := member(t, ctx, ca, "b", ms, url)
	if _, err := b.Tenant(ctx, "alice"); err != nil {
		t.Fatalf("state on the new member: %v", err)
	}
	for _, mi := range ms {
		if mi.Name == "a" && (len(mi.PeerURLs) != 1 || mi.PeerURLs[0] != m.PeerURL) {
			t.Fatalf("a's peer urls: %v", mi.PeerURLs)
		}
	}
}
