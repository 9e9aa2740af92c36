package ingress

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/macro-cloud/macro/internal/testacme"
)

// TestACMEWithPebble: a routed host gets its certificate from pebble,
// which validates for real: its validation authority resolves the host
// through a test DNS server to 127.0.0.1 and fetches the HTTP-01 challenge
// from the ingress's HTTP listener (an HTTPS route, which would redirect
// any other path), or makes the TLS-ALPN-01 handshake with its HTTPS
// listener. The challenge is answered by another ACME instance than the
// one that orders, sharing only its State (two ingresses of a cluster: the
// CA may reach either). The certificate is cached in the State and served
// from there by a new ingress without asking the CA.
func TestACMEWithPebble(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs pebble")
	}
	for _, challenge := range []string{"http-01", "tls-alpn-01"} {
		t.Run(challenge, func(t *testing.T) { testACME(t, challenge) })
	}
}

func testACME(t *testing.T, challenge string) {
	_, be := app(t, "web")
	var acmeP, issuerP atomic.Pointer[ACME]
	var answered atomic.Int32 // challenges the ingress answered
	challenges := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		answered.Add(1)
		acmeP.Load().ServeHTTP(w, r)
	})
	alpn := func(host string) (*tls.Certificate, bool) {
		answered.Add(1)
		return acmeP.Load().ALPNCert(host)
	}
	f := newIngressIssuer(t, Options{ACMEChallenge: challenges},
		func(host string) (tls.Certificate, error) { return issuerP.Load().Issue(host) }, alpn,
		Config{Domain: "cloud.test"}, routeTo("alice", "web", be, "https://app.*"))
	port := func(addr string) int {
		_, p, _ := net.SplitHostPort(addr)
		n, _ := strconv.Atoi(p)
		return n
	}
	tlsPort := 0
	if challenge == "tls-alpn-01" {
		tlsPort = port(f.httpsAddr)
	}
	pebble := testacme.Start(t, port(strings.TrimPrefix(f.http, "http://")), tlsPort, testacme.StartDNS(t))
	cache := t.TempDir()
	a, err := NewACME(ACMEConfig{DirectoryURL: pebble.Directory, Email: "ops@example.com", HTTPClient: pebble.Client, CacheDir: cache, Challenge: challenge})
	if err != nil {
		t.Fatal(err)
	}
	issuerP.Store(a)
	// The instance that answers shares the cache directory and nothing else.
	peer, err := NewACME(ACMEConfig{DirectoryURL: pebble.Directory, HTTPClient: pebble.Client, State: DirState(cache), Challenge: challenge})
	if err != nil {
		t.Fatal(err)
	}
	acmeP.Store(peer)
	if peer.client.Key.(*ecdsa.PrivateKey).D.Cmp(a.client.Key.(*ecdsa.PrivateKey).D) != 0 {
		t.Fatal("two instances on one state made two account keys")
	}

	roots := pebble.Root(t)
	client := &http.Client{Transport: &http.Transport{
		DialContext:     f.client.Transport.(*http.Transport).DialContext,
		TLSClientConfig: &tls.Config{RootCAs: roots},
	}}
	resp, err := client.Get(f.url("app.alice.cloud.test", "/hello"))
	if err != nil {
		_, ierr := a.Issue("app.alice.cloud.test")
		t.Fatalf("GET over a pebble certificate: %v (issue: %v)", err, ierr)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	leaf := resp.TLS.PeerCertificates[0]
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "app.alice.cloud.test" {
		t.Fatalf("certificate names %v", leaf.DNSNames)
	}
	if answered.Load() == 0 {
		t.Fatalf("the ingress answered no %s challenge:\n%s", challenge, pebble.Log())
	}
	// The certificate does not verify against the test CA: it is pebble's.
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: f.pool, DNSName: "app.alice.cloud.test"}); err == nil {
		t.Fatal("leaf verifies against the internal CA")
	}
	if fi, err := os.Stat(filepath.Join(cache, "certs", "app.alice.cloud.test.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("cached certificate: %v %v", fi, err)
	}

	// A restarted ingress with the same cache and the CA gone serves it.
	gone, err := NewACME(ACMEConfig{DirectoryURL: "https://127.0.0.1:1/dir", CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := gone.Issue("app.alice.cloud.test")
	if err != nil || !cert.Leaf.Equal(leaf) {
		t.Fatalf("from the cache: %v", err)
	}
	if _, err := gone.Issue("other.alice.cloud.test"); err == nil {
		t.Fatal("issued without a CA")
	}
	if _, err := gone.Issue("../../etc/x"); err == nil {
		t.Fatal("a path as host name")
	}
}

// TestCertsRenewAndBackoff: a certificate past two thirds of its life is
// served while a new one is issued behind it; a failed issue is not
// retried for a minute.
func TestCertsRenewAndBackoff(t *testing.T) {
	f := newIngress(t, Config{Domain: "cloud.test"}, routeTo("alice", "web", netip.MustParseAddrPort("127.0.0.1:1"), "https://app.*"))
	now := time.Now()
	var mu sync.Mutex
	calls, fail := 0, false
	renewed := make(chan struct{}, 10)
	issue := func(host string) (tls.Certificate, error) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		defer func() { renewed <- struct{}{} }()
		if fail {
			return tls.Certificate{}, errors.New("CA down")
		}
		return testCert(t, host, now, 90*24*time.Hour)
	}
	c := NewCerts(f.proxy, issue)
	c.now = func() time.Time { return now }
	hello := &tls.ClientHelloInfo{ServerName: "app.alice.cloud.test"}
	first, err := c.GetCertificate(hello)
	if err != nil || calls != 1 {
		t.Fatalf("%v, %d calls", err, calls)
	}
	<-renewed
	// Day 70 of 90: served at once, renewed behind.
	c.now = func() time.Time { return now.Add(70 * 24 * time.Hour) }
	got, err := c.GetCertificate(hello)
	if err != nil || got != first {
		t.Fatalf("stale certificate not served while renewing: %v", err)
	}
	<-renewed
	waitFor(t, func() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.cache["app.alice.cloud.test"] != first })
	// Past its end with the CA down: an error, and no second try within a minute.
	mu.Lock()
	fail = true
	mu.Unlock()
	c.now = func() time.Time { return now.Add(200 * 24 * time.Hour) }
	if _, err := c.GetCertificate(hello); err == nil || !strings.Contains(err.Error(), "CA down") {
		t.Fatalf("expired, CA down: %v", err)
	}
	<-renewed
	if _, err := c.GetCertificate(hello); err == nil {
		t.Fatal("no error")
	}
	mu.Lock()
	n := calls
	mu.Unlock()
	if n != 3 {
		t.Fatalf("%d issue calls, want 3 (no retry within a minute)", n)
	}
	c.now = func() time.Time { return now.Add(200*24*time.Hour + 2*time.Minute) }
	c.GetCertificate(hello)
	<-renewed
	mu.Lock()
	n = calls
	mu.Unlock()
	if n != 4 {
		t.Fatalf("%d issue calls after the back-off, want 4", n)
	}
}

// testCert is a self-signed certificate for host valid from notBefore for life.
func testCert(t *testing.T, host string, notBefore time.Time, life time.Duration) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(notBefore.UnixNano()), DNSNames: []string{host},
		NotBefore: notBefore, NotAfter: notBefore.Add(life)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, err
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for i := 0; i < 1000; i++ {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("condition never held")
}

// TestACMEOneOrderPerHost: of the ingresses sharing a state, one orders a
// host's certificate and the others wait for it (every order counts
// against the CA's limits); they order themselves only when that order
// ended without a certificate or its claim lapsed.
func TestACMEOneOrderPerHost(t *testing.T) {
	const host = "app.alice.cloud.test"
	st := DirState(t.TempDir())
	newACME := func() *ACME {
		// No CA answers there: an instance that orders fails at once.
		a, err := NewACME(ACMEConfig{DirectoryURL: "https://127.0.0.1:1/dir", State: st})
		if err != nil {
			t.Fatal(err)
		}
		a.poll = 5 * time.Millisecond
		return a
	}
	a, b := newACME(), newACME()
	ctx := context.Background()
	if mine, _, err := a.claim(ctx, host); err != nil || !mine {
		t.Fatalf("first claim: mine=%v %v", mine, err)
	}
	if mine, _, err := b.claim(ctx, host); err != nil || mine {
		t.Fatalf("second claim while the first holds: mine=%v %v", mine, err)
	}

	// b waits for a's certificate instead of ordering.
	type result struct {
		cert tls.Certificate
		err  error
	}
	waited := make(chan result, 1)
	go func() {
		c, err := b.orderOnce(ctx, host)
		waited <- result{c, err}
	}()
	cert, err := testCert(t, host, time.Now().Add(-time.Minute), 90*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(cert.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	pemData := append(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})...)
	select {
	case r := <-waited:
		t.Fatalf("the waiting instance returned before a certificate was stored: %v", r.err)
	case <-time.After(50 * time.Millisecond):
	}
	if err := st.Put(ctx, certName(host), pemData); err != nil {
		t.Fatal(err)
	}
	if r := <-waited; r.err != nil || !r.cert.Leaf.Equal(cert.Leaf) {
		t.Fatalf("waiting for the other's order: %v", r.err)
	}

	// a's order ends without a certificate (claim gone, none stored): the
	// waiter orders itself, which here fails at the CA.
	if err := st.Delete(ctx, certName(host)); err != nil {
		t.Fatal(err)
	}
	go func() {
		c, err := b.orderOnce(ctx, host)
		waited <- result{c, err}
	}()
	if err := st.Delete(ctx, orderName(host)); err != nil {
		t.Fatal(err)
	}
	if r := <-waited; r.err == nil || strings.Contains(r.err.Error(), "waiting") {
		t.Fatalf("after the other's order ended: %v, want the own order's failure", r.err)
	}
	if _, err := st.Get(ctx, orderName(host)); !errors.Is(err, ErrNoState) {
		t.Fatalf("the failed order left its claim: %v", err)
	}

	// A lapsed claim (an ingress that stopped mid-order) is replaced.
	if mine, _, err := a.claim(ctx, host); err != nil || !mine {
		t.Fatalf("claim: mine=%v %v", mine, err)
	}
	b.now = func() time.Time { return time.Now().Add(orderTimeout + time.Minute) }
	if mine, _, err := b.claim(ctx, host); err != nil || !mine {
		t.Fatalf("claim over a lapsed one: mine=%v %v", mine, err)
	}
}
