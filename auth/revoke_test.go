package auth

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/macro-cloud/macro/types"
)

// fakeRevocations is an in-memory RevocationSource whose watch delivers
// what put sends.
type fakeRevocations struct {
	mu      sync.Mutex
	list    []types.RevokedCert
	watches []chan types.RevokedCert
	fail    error
}

func (f *fakeRevocations) RevokedCerts(context.Context) ([]types.RevokedCert, int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]types.RevokedCert(nil), f.list...), int64(len(f.list)), f.fail
}

func (f *fakeRevocations) WatchRevoked(ctx context.Context, from int64) <-chan types.RevokedCert {
	ch := make(chan types.RevokedCert, 16)
	f.mu.Lock()
	f.watches = append(f.watches, ch)
	f.mu.Unlock()
	go func() { <-ctx.Done() }()
	return ch
}

func (f *fakeRevocations) put(rc types.RevokedCert) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.list = append(f.list, rc)
	for _, w := range f.watches {
		w <- rc
	}
}

// TestRevokedCertificates: a certificate on the revocation list, one older
// than its tenant, and one of a tenant being removed are refused with
// messages that say so; the list is followed by watch; requests with
// certificates wait for the list to be loaded (503), fail closed.
func TestRevokedCertificates(t *testing.T) {
	ca, _, _ := LoadOrCreateCA(t.TempDir(), "")
	fs := newFakeStore("alice", "bob", "carol")
	src := &fakeRevocations{}
	rev := NewRevocations(src, nil)
	a := New(Config{Store: fs, Revocations: rev})
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := IdentityFrom(r.Context())
		w.Write([]byte(id.Tenant))
	})
	srv := tlsServer(t, ca, a.RequireCert(echo))
	now := time.Now()
	alice1, _ := ca.IssueClient("alice", now)
	alice2, _ := ca.IssueClient("alice", now)
	bob, _ := ca.IssueClient("bob", now.Add(-2*time.Hour))
	carol, _ := ca.IssueClient("carol", now)

	if status, body, _ := get(t, tlsClient(ca, &alice1), srv.URL); status != http.StatusServiceUnavailable {
		t.Fatalf("before the list is loaded: %d %s", status, body)
	}
	src.put(types.RevokedCert{Serial: alice1.Serial, Tenant: "alice", Expires: alice1.Expires})
	from, err := rev.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go rev.Run(ctx, from)

	fs.mu.Lock()
	fs.tenants["bob"] = types.Tenant{Name: "bob", Created: now.Add(-time.Hour)} // bob's certificate is older
	fs.tenants["carol"] = types.Tenant{Name: "carol", Deleting: true}
	fs.mu.Unlock()
	for _, c := range []struct {
		name   string
		cert   *ClientCert
		status int
		want   string
	}{
		{"revoked", &alice1, 401, "has been revoked"},
		{"not revoked", &alice2, 200, "alice"},
		{"older than its tenant", &bob, 401, "has been revoked"},
		{"tenant being removed", &carol, 403, "names no tenant"},
	} {
		status, body, _ := get(t, tlsClient(ca, c.cert), srv.URL)
		if status != c.status || !strings.Contains(body, c.want) {
			t.Errorf("%s: %d %s, want %d %q", c.name, status, body, c.status, c.want)
		}
	}

	// Revoked elsewhere: the watch brings it.
	for {
		src.mu.Lock()
		watching := len(src.watches) > 0
		src.mu.Unlock()
		if watching {
			break
		}
		time.Sleep(time.Millisecond)
	}
	src.put(types.RevokedCert{Serial: alice2.Serial, Tenant: "alice", Expires: alice2.Expires})
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, _, _ := get(t, tlsClient(ca, &alice2), srv.URL)
		if status == 401 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a certificate revoked through the watch still works: %d", status)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Add (what this server revoked itself) takes effect at once, and an
	// entry whose certificate expired is dropped.
	rev.Add(types.RevokedCert{Serial: "abc", Expires: now.Add(-time.Minute)})
	rev.mu.RLock()
	_, kept := rev.serials["abc"]
	rev.mu.RUnlock()
	if kept {
		t.Errorf("an expired entry is kept")
	}
}
