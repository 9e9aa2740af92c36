package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/macro-cloud/macro/types"
)

// TestCertRevocation: certificates are recorded under live tokens only;
// revoking a token moves its certificates (and only them) to the
// revocation list, which a watch delivers; removing a tenant's
// credentials revokes the rest and deletes its tokens; DeleteTenant
// leaves nothing of the tenant but the revocation list.
func TestCertRevocation(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	s.CreateTenant(ctx, &types.Tenant{Name: "alice", Created: now})
	s.CreateTenant(ctx, &types.Tenant{Name: "bob", Created: now})
	for _, tok := range []types.Token{{ID: "00000000000000a1", Tenant: "alice", Hash: "h"}, {ID: "00000000000000a2", Tenant: "alice", Hash: "h"}, {ID: "00000000000000b1", Tenant: "bob", Hash: "h"}} {
		if err := s.CreateToken(ctx, &tok); err != nil {
			t.Fatal(err)
		}
	}
	exp := now.Add(365 * 24 * time.Hour)
	certs := []types.Cert{
		{Serial: "a1c1", Tenant: "alice", TokenID: "00000000000000a1", Issued: now, Expires: exp},
		{Serial: "a1c2", Tenant: "alice", TokenID: "00000000000000a1", Issued: now, Expires: exp},
		{Serial: "a1old", Tenant: "alice", TokenID: "00000000000000a1", Issued: now, Expires: now.Add(-time.Hour)},
		{Serial: "a2c1", Tenant: "alice", TokenID: "00000000000000a2", Issued: now, Expires: exp},
		{Serial: "b1c1", Tenant: "bob", TokenID: "00000000000000b1", Issued: now, Expires: exp},
	}
	for _, c := range certs {
		if err := s.RecordCert(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RecordCert(ctx, types.Cert{Serial: "x", Tenant: "alice", TokenID: "00000000000000ff"}); !errors.Is(err, ErrTokenGone) {
		t.Fatalf("a certificate of an unknown token: %v", err)
	}
	_, rev, err := s.RevokedCerts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	watch := s.WatchRevoked(wctx, rev+1)

	if _, err := s.RevokeToken(ctx, "bob", "00000000000000a1", now); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoke alice's token as bob's: %v", err)
	}
	revoked, err := s.RevokeToken(ctx, "alice", "00000000000000a1", now)
	if err != nil || len(revoked) != 2 || revoked[0].Serial != "a1c1" || revoked[1].Serial != "a1c2" || revoked[0].Reason != "token revoked" {
		t.Fatalf("revoke a1: %+v %v", revoked, err)
	}
	for _, want := range []string{"a1c1", "a1c2"} {
		select {
		case rc := <-watch:
			if rc.Serial != want {
				t.Errorf("watch: %s, want %s", rc.Serial, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("watch delivered nothing")
		}
	}
	if _, err := s.Token(ctx, "00000000000000a1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("the revoked token is still there: %v", err)
	}
	if err := s.RecordCert(ctx, types.Cert{Serial: "late", Tenant: "alice", TokenID: "00000000000000a1", Expires: exp}); !errors.Is(err, ErrTokenGone) {
		t.Errorf("a certificate of a revoked token: %v", err)
	}
	left, _ := s.Certs(ctx, "alice")
	if len(left) != 1 || left[0].Serial != "a2c1" {
		t.Errorf("alice's certificates after revoking a1: %+v", left)
	}

	revoked, err = s.RevokeTenantCredentials(ctx, "alice", now)
	if err != nil || len(revoked) != 1 || revoked[0].Serial != "a2c1" || revoked[0].Reason != "tenant deleted" {
		t.Fatalf("revoke alice's credentials: %+v %v", revoked, err)
	}
	if toks, _ := s.Tokens(ctx, "alice"); len(toks) != 0 {
		t.Errorf("alice's tokens: %+v", toks)
	}
	list, _, _ := s.RevokedCerts(ctx)
	if len(list) != 3 {
		t.Errorf("revocation list: %+v", list)
	}

	s.CreateNamespace(ctx, &types.Namespace{Name: "ns", Tenant: "alice"})
	for _, d := range []types.Domain{{Name: "shop.example.com", Tenant: "alice"}, {Name: "bob.example.com", Tenant: "bob"}} {
		if err := s.ClaimDomain(ctx, &d, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	s.CreatePod(ctx, &types.Pod{ID: podID(1), Name: "p", Tenant: "alice"})
	if err := s.DeleteTenant(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteTenant(ctx, "alice"); !errors.Is(err, ErrNotFound) {
		t.Errorf("delete twice: %v", err)
	}
	if _, err := s.Tenant(ctx, "alice"); !errors.Is(err, ErrNotFound) {
		t.Errorf("tenant: %v", err)
	}
	if ns, _ := s.Namespaces(ctx, "alice"); len(ns) != 0 {
		t.Errorf("namespaces: %+v", ns)
	}
	if pods, _ := s.Pods(ctx, "alice"); len(pods) != 0 {
		t.Errorf("pods: %+v", pods)
	}
	if list2, _, _ := s.RevokedCerts(ctx); len(list2) != 3 {
		t.Errorf("the revocation list must outlive the tenant: %+v", list2)
	}
	if ds, _ := s.Domains(ctx, ""); len(ds) != 1 || ds[0].Tenant != "bob" {
		t.Errorf("domains after removing alice: %+v", ds)
	}
	// Bob is untouched.
	if c, _ := s.Certs(ctx, "bob"); len(c) != 1 {
		t.Errorf("bob's certificates: %+v", c)
	}
}

func TestTenantQuotaAndDeleting(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	s.CreateTenant(ctx, &types.Tenant{Name: "alice"})
	got, err := s.SetTenantQuota(ctx, "alice", types.Quota{Pods: 2, MemoryBytes: 1 << 30})
	if err != nil || got.Quota.Pods != 2 {
		t.Fatalf("set quota: %+v %v", got, err)
	}
	if _, err := s.SetTenantQuota(ctx, "nobody", types.Quota{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("quota of an unknown tenant: %v", err)
	}
	if _, err := s.MarkTenantDeleting(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if tn, _ := s.Tenant(ctx, "alice"); !tn.Deleting || tn.Quota.Pods != 2 {
		t.Fatalf("after marking: %+v", tn)
	}
	if _, err := s.SetTenantQuota(ctx, "alice", types.Quota{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("quota of a tenant being deleted: %v", err)
	}
	if err := s.ClearTenantDeleting(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if tn, _ := s.Tenant(ctx, "alice"); tn.Deleting {
		t.Fatalf("after clearing: %+v", tn)
	}
}
