package auth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/macro-cloud/macro/store"
	"github.com/macro-cloud/macro/types"
)

// fakeStore is an in-memory Store.
type fakeStore struct {
	mu      sync.Mutex
	tenants map[string]types.Tenant
	tokens  map[string]types.Token
	reads   int // Token calls
	touches int
}

func newFakeStore(tenants ...string) *fakeStore {
	f := &fakeStore{tenants: map[string]types.Tenant{}, tokens: map[string]types.Token{}}
	for _, t := range tenants {
		f.tenants[t] = types.Tenant{Name: t}
	}
	return f
}

func (f *fakeStore) Token(_ context.Context, id string) (types.Token, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	t, ok := f.tokens[id]
	if !ok {
		return t, store.ErrNotFound
	}
	return t, nil
}

func (f *fakeStore) TouchToken(_ context.Context, id string, at time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.touches++
	if t, ok := f.tokens[id]; ok {
		t.LastUsed = at
		f.tokens[id] = t
	}
	return nil
}

func (f *fakeStore) Tenant(_ context.Context, name string) (types.Tenant, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.tenants[name]
	if !ok {
		return t, store.ErrNotFound
	}
	return t, nil
}

func (f *fakeStore) addToken(t *testing.T, tenant string, now time.Time) string {
	t.Helper()
	text, rec, err := NewToken(tenant, now)
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.tokens[rec.ID] = rec
	f.mu.Unlock()
	return text
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }
func newClock() *clock               { return &clock{now: time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC)} }

func TestTokenShape(t *testing.T) {
	text, rec, err := NewToken("alice", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	id, secret, ok := ParseToken(text)
	if !ok || id != rec.ID || HashSecret(secret) != rec.Hash || rec.Tenant != "alice" {
		t.Fatalf("token %q does not parse back to its record %+v", text, rec)
	}
	if strings.Contains(rec.Hash, secret) || len(text) != len("kr__")+tokenIDLen+tokenSecretLen {
		t.Fatalf("token %q, hash %q", text, rec.Hash)
	}
	other, _, _ := NewToken("alice", time.Now())
	if other == text {
		t.Fatal("two tokens are equal")
	}
	for _, bad := range []string{
		"", "kr_", "kr__", "alice-token", strings.Replace(text, "kr_", "kx_", 1),
		text[:len(text)-1], text + "0", strings.ToUpper(text), "kr_" + id + "-" + secret,
		"kr_" + id + "_" + strings.Repeat("g", 64),
	} {
		if IsToken(bad) {
			t.Errorf("%q parses as a token", bad)
		}
	}
}

func TestSecretMatches(t *testing.T) {
	good := HashSecret("s3cret")
	for _, c := range []struct {
		secret, hash string
		want         bool
	}{
		{"s3cret", good, true},
		{"s3cres", good, false},
		{"s3cret", good[:62], false},
		{"s3cret", "zz" + good[2:], false},
		{"s3cret", "", false},
		{"", HashSecret(""), true},
	} {
		if got := secretMatches(c.secret, c.hash); got != c.want {
			t.Errorf("secretMatches(%q, %q) = %v", c.secret, c.hash, got)
		}
	}
}

func TestVerifyToken(t *testing.T) {
	fs := newFakeStore("alice", "bob")
	clk := newClock()
	a := New(Config{Store: fs, Now: clk.Now})
	ctx := context.Background()
	tok := fs.addToken(t, "alice", clk.Now())

	got, err := a.VerifyToken(ctx, tok)
	if err != nil || got.Tenant != "alice" {
		t.Fatalf("verify: %+v %v", got, err)
	}
	if fs.touches != 1 {
		t.Fatalf("first use not recorded: %d touches", fs.touches)
	}
	clk.Add(10 * time.Second)
	a.VerifyToken(ctx, tok)
	if fs.touches != 1 {
		t.Fatalf("use recorded again within a minute: %d touches", fs.touches)
	}
	clk.Add(time.Minute)
	a.VerifyToken(ctx, tok)
	if fs.touches != 2 {
		t.Fatalf("use a minute later not recorded: %d touches", fs.touches)
	}

	id, secret, _ := ParseToken(tok)
	wrongSecret := "kr_" + id + "_" + strings.Repeat("0", 64)
	unknownID := "kr_" + strings.Repeat("f", 16) + "_" + secret
	for _, bad := range []string{"", "alice-token", wrongSecret, unknownID} {
		before := fs.reads
		if _, err := a.VerifyToken(ctx, bad); !errors.Is(err, ErrBadToken) {
			t.Errorf("verify %q: %v", bad, err)
		}
		// A well-formed token always costs a store read and a hash
		// comparison, whether its ID exists or not.
		if IsToken(bad) && fs.reads != before+1 {
			t.Errorf("verify %q: %d store reads", bad, fs.reads-before)
		}
	}

	// A token whose tenant is gone is refused.
	fs.mu.Lock()
	delete(fs.tenants, "alice")
	fs.mu.Unlock()
	if _, err := a.VerifyToken(ctx, tok); !errors.Is(err, ErrBadToken) {
		t.Fatalf("token of a deleted tenant: %v", err)
	}
}

// TestVerifyTokenStore runs the token's life against the real store:
// created, used (last-used recorded), revoked.
func TestVerifyTokenStore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := store.Open(ctx, store.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC)
	if err := st.CreateTenant(ctx, &types.Tenant{Name: "alice", Created: now}); err != nil {
		t.Fatal(err)
	}
	text, rec, _ := NewToken("alice", now)
	if err := st.CreateToken(ctx, &rec); err != nil {
		t.Fatal(err)
	}
	a := New(Config{Store: st, Now: func() time.Time { return now.Add(time.Hour) }})
	if got, err := a.VerifyToken(ctx, text); err != nil || got.Tenant != "alice" {
		t.Fatalf("verify: %+v %v", got, err)
	}
	if got, _ := st.Token(ctx, rec.ID); !got.LastUsed.Equal(now.Add(time.Hour)) {
		t.Fatalf("last used: %v", got.LastUsed)
	}
	if err := st.DeleteToken(ctx, "alice", rec.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := a.VerifyToken(ctx, text); !errors.Is(err, ErrBadToken) {
		t.Fatalf("revoked token: %v", err)
	}
}

func TestCAPersistence(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	ca, created, err := LoadOrCreateCA(dir, "rack1")
	if err != nil || !created {
		t.Fatalf("create: %v %v", created, err)
	}
	if !strings.Contains(ca.Cert.Subject.CommonName, "rack1") || !ca.Cert.IsCA {
		t.Fatalf("CA subject %v", ca.Cert.Subject)
	}
	for name, want := range map[string]os.FileMode{filepath.Join(dir, CAKeyFile): 0o600, filepath.Join(dir, CACertFile): 0o644} {
		fi, err := os.Stat(name)
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v (%v)", name, fi.Mode().Perm(), want, err)
		}
	}
	issued, err := ca.IssueClient("alice", time.Now())
	if err != nil {
		t.Fatal(err)
	}

	// Restart: the same CA, and what it issued before still verifies.
	again, created, err := LoadOrCreateCA(dir, "other-name")
	if err != nil || created {
		t.Fatalf("load: %v %v", created, err)
	}
	if !again.Cert.Equal(ca.Cert) || string(again.CertPEM) != string(ca.CertPEM) {
		t.Fatal("the CA changed across a restart")
	}
	verifyClient(t, again, issued.CertPEM, "alice")
	later, err := again.IssueClient("bob", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	verifyClient(t, ca, later.CertPEM, "bob")

	// A key that became readable by others is made private again.
	keyFile := filepath.Join(dir, CAKeyFile)
	os.Chmod(keyFile, 0o644)
	if _, _, err := LoadOrCreateCA(dir, ""); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(keyFile); fi.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v after load", fi.Mode().Perm())
	}

	// Half a CA is refused, not replaced.
	os.Rename(keyFile, keyFile+".bak")
	if _, _, err := LoadOrCreateCA(dir, ""); err == nil || !strings.Contains(err.Error(), "incomplete") {
		t.Fatalf("half a CA: %v", err)
	}
	if _, err := os.Stat(keyFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a new key was written beside the old certificate")
	}
	// A key that is not the certificate's is refused.
	otherDir := filepath.Join(t.TempDir(), "ca")
	if _, _, err := LoadOrCreateCA(otherDir, ""); err != nil {
		t.Fatal(err)
	}
	otherKey, _ := os.ReadFile(filepath.Join(otherDir, CAKeyFile))
	os.WriteFile(keyFile, otherKey, 0o600)
	if _, _, err := LoadOrCreateCA(dir, ""); err == nil || !strings.Contains(err.Error(), "does not hold the key") {
		t.Fatalf("mismatched key: %v", err)
	}
}

func verifyClient(t *testing.T, ca *CA, certPEM []byte, tenant string) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(certPEM)
	if b == nil {
		t.Fatal("no PEM")
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("client certificate of %s does not verify: %v", tenant, err)
	}
	if got, ok := TenantOfCert(cert); !ok || got != tenant {
		t.Fatalf("tenant of certificate: %q %v", got, ok)
	}
	return cert
}

func TestCertificates(t *testing.T) {
	ca, _, err := LoadOrCreateCA(t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	c, err := ca.IssueClient("alice", now)
	if err != nil {
		t.Fatal(err)
	}
	cert := verifyClient(t, ca, c.CertPEM, "alice")
	if d := cert.NotAfter.Sub(now); d < 364*24*time.Hour || d > 366*24*time.Hour {
		t.Errorf("client certificate lifetime %v", d)
	}
	if _, err := tls.X509KeyPair(c.CertPEM, c.KeyPEM); err != nil {
		t.Fatalf("key does not match: %v", err)
	}
	// A client certificate is no server certificate.
	if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("a client certificate verifies for server auth")
	}
	// Another CA's pool does not trust it.
	other, _, _ := LoadOrCreateCA(t.TempDir(), "")
	if _, err := cert.Verify(x509.VerifyOptions{Roots: other.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("another CA trusts the certificate")
	}

	srv, err := ca.ServerCert([]string{"localhost", "127.0.0.1", "::1", "rack1.example", "localhost"}, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"localhost", "127.0.0.1", "::1", "rack1.example"} {
		if _, err := srv.Leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: host}); err != nil {
			t.Errorf("server certificate for %s: %v", host, err)
		}
	}
	if _, err := srv.Leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: "evil.example"}); err == nil {
		t.Error("server certificate verifies for another host")
	}
	if _, ok := TenantOfCert(srv.Leaf); ok {
		t.Error("the server certificate names a tenant")
	}
}

// tlsServer serves h over TLS with the CA as the client CA, as the API port
// does.
func tlsServer(t *testing.T, ca *CA, h http.Handler) *httptest.Server {
	t.Helper()
	cert, err := ca.ServerCert([]string{"127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s := httptest.NewUnstartedServer(h)
	s.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: ca.Pool()}
	s.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are the point
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

func tlsClient(ca *CA, cert *ClientCert) *http.Client {
	cfg := &tls.Config{RootCAs: ca.Pool()}
	if cert != nil {
		kp, err := tls.X509KeyPair(cert.CertPEM, cert.KeyPEM)
		if err != nil {
			panic(err)
		}
		cfg.Certificates = []tls.Certificate{kp}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
}

func get(t *testing.T, c *http.Client, url string, header ...string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err.Error(), nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func TestMiddlewareTLS(t *testing.T) {
	ca, _, _ := LoadOrCreateCA(t.TempDir(), "")
	fs := newFakeStore("alice")
	a := New(Config{Store: fs})
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := IdentityFrom(r.Context())
		io.WriteString(w, id.Tenant+" "+id.Method)
	})
	mux := http.NewServeMux()
	mux.Handle("/docker", a.RequireCert(echo))
	mux.Handle("/native", Middleware(a.Authenticate, echo))
	srv := tlsServer(t, ca, mux)

	alice, _ := ca.IssueClient("alice", time.Now())
	ghost, _ := ca.IssueClient("ghost", time.Now())
	other, _, _ := LoadOrCreateCA(t.TempDir(), "")
	forged, _ := other.IssueClient("alice", time.Now())
	token := fs.addToken(t, "alice", time.Now())

	status, body, _ := get(t, tlsClient(ca, &alice), srv.URL+"/docker")
	if status != 200 || body != "alice certificate" {
		t.Fatalf("docker with alice's certificate: %d %s", status, body)
	}
	status, body, hdr := get(t, tlsClient(ca, nil), srv.URL+"/docker", "Authorization", "Bearer "+token)
	var msg struct{ Message string }
	if status != 401 || json.Unmarshal([]byte(body), &msg) != nil || !strings.Contains(msg.Message, "client certificate") || hdr.Get("WWW-Authenticate") == "" {
		t.Fatalf("docker with a token only: %d %s", status, body)
	}
	if status, body, _ := get(t, tlsClient(ca, &ghost), srv.URL+"/docker"); status != 403 {
		t.Fatalf("docker with a certificate of an unknown tenant: %d %s", status, body)
	}
	if status, body, _ := get(t, tlsClient(ca, &forged), srv.URL+"/docker"); status != 0 || !strings.Contains(body, "certificate") {
		t.Fatalf("docker with another CA's certificate: %d %s", status, body)
	}
	if status, body, _ := get(t, tlsClient(ca, nil), srv.URL+"/native", "Authorization", "Bearer "+token); status != 200 || body != "alice token" {
		t.Fatalf("native with a token: %d %s", status, body)
	}
	if status, body, _ := get(t, tlsClient(ca, &alice), srv.URL+"/native"); status != 200 || body != "alice certificate" {
		t.Fatalf("native with a certificate: %d %s", status, body)
	}
	if status, body, _ := get(t, tlsClient(ca, nil), srv.URL+"/native"); status != 401 || !strings.Contains(body, "no credentials") {
		t.Fatalf("native without credentials: %d %s", status, body)
	}
}

func TestRateLimit(t *testing.T) {
	fs := newFakeStore("alice")
	clk := newClock()
	a := New(Config{Store: fs, Now: clk.Now, Burst: 3, Refill: 10 * time.Second})
	good := fs.addToken(t, "alice", clk.Now())
	req := func(addr, token string) (int, http.Header) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = addr
		r.Header.Set("Authorization", "Bearer "+token)
		w := httptest.NewRecorder()
		Middleware(a.Authenticate, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})).ServeHTTP(w, r)
		return w.Code, w.Header()
	}
	for i := 0; i < 3; i++ {
		if code, _ := req("192.0.2.1:1000", "wrong"); code != 401 {
			t.Fatalf("failure %d: %d", i, code)
		}
	}
	// The bucket is empty: even the right token waits, with Retry-After.
	code, hdr := req("192.0.2.1:1001", good)
	if code != 429 || hdr.Get("Retry-After") != "10" {
		t.Fatalf("after the burst: %d Retry-After %q", code, hdr.Get("Retry-After"))
	}
	// Another address is not affected.
	if code, _ := req("192.0.2.2:1000", good); code != 200 {
		t.Fatalf("another address: %d", code)
	}
	// Successes do not drain the bucket.
	for i := 0; i < 5; i++ {
		if code, _ := req("192.0.2.2:1000", good); code != 200 {
			t.Fatalf("success %d: %d", i, code)
		}
	}
	clk.Add(4 * time.Second)
	if _, hdr := req("192.0.2.1:1001", good); hdr.Get("Retry-After") != "6" {
		t.Fatalf("Retry-After after 4 s: %q", hdr.Get("Retry-After"))
	}
	clk.Add(6 * time.Second)
	if code, _ := req("192.0.2.1:1001", good); code != 200 {
		t.Fatalf("after the refill: %d", code)
	}
	// One token refilled: one more failure, then limited again.
	req("192.0.2.1:1001", "wrong")
	if code, _ := req("192.0.2.1:1001", good); code != 429 {
		t.Fatalf("after a failure with an empty bucket: %d", code)
	}
}

func TestLimiterSweep(t *testing.T) {
	l := newLimiter(2, time.Second)
	now := time.Now()
	for i := 0; i < maxBuckets; i++ {
		l.fail(string(rune(i)), now)
	}
	l.fail("late", now.Add(time.Hour))
	if len(l.buckets) != 1 {
		t.Fatalf("%d buckets after a sweep", len(l.buckets))
	}
}

func TestContext(t *testing.T) {
	ctx := context.Background()
	if _, ok := TenantFrom(ctx); ok {
		t.Fatal("tenant in an empty context")
	}
	ctx = WithTenant(ctx, "alice")
	if tn, ok := TenantFrom(ctx); !ok || tn != "alice" {
		t.Fatalf("tenant %q %v", tn, ok)
	}
	if id, _ := IdentityFrom(ctx); id.Method != MethodLocal {
		t.Fatalf("method %q", id.Method)
	}
}
