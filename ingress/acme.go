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
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/acme"
)

// ACMEConfig is an ACME CA the ingress takes certificates from (macro
// server --acme-directory, --acme-email, --acme-ca-bundle) instead of the
// cluster's internal CA.
type ACMEConfig struct {
	// DirectoryURL is the CA's directory, e.g. Let's Encrypt's
	// https://acme-v02.api.letsencrypt.org/directory.
	DirectoryURL string
	// Email is the account's contact; may be empty.
	Email string
	// HTTPClient talks to the CA; nil means http.DefaultClient.
	HTTPClient *http.Client
	// CacheDir keeps the account key and the certificates, so a restart
	// orders none it already has.
	CacheDir string
	// Challenge is how control of a host is proven: "http-01" (the
	// default; the ingress answers on its HTTP listener, port 80 for a
	// public CA) or "tls-alpn-01" (on its HTTPS listener, port 443).
	Challenge string
	Log       *slog.Logger
}

// ACME issues certificates from an ACME CA, proving control of each host
// with the HTTP-01 challenge, which the ingress answers on its HTTP
// listener (Options.ACMEChallenge), or TLS-ALPN-01, answered in the TLS
// handshake of its HTTPS listener (Certs.ALPN). Certificates are cached
// as PEM under CacheDir/certs.
type ACME struct {
	cfg    ACMEConfig
	client *acme.Client
	now    func() time.Time

	regMu      sync.Mutex
	registered bool

	tokMu  sync.Mutex
	tokens map[string]string           // HTTP-01 token -> key authorization
	alpn   map[string]*tls.Certificate // host -> TLS-ALPN-01 certificate
}

// NewACME loads or creates the account key under cfg.CacheDir.
func NewACME(cfg ACMEConfig) (*ACME, error) {
	if cfg.DirectoryURL == "" {
		return nil, errors.New("acme: no directory URL")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	switch cfg.Challenge {
	case "":
		cfg.Challenge = "http-01"
	case "http-01", "tls-alpn-01":
	default:
		return nil, fmt.Errorf("acme: challenge %q: want http-01 or tls-alpn-01", cfg.Challenge)
	}
	if err := os.MkdirAll(filepath.Join(cfg.CacheDir, "certs"), 0o700); err != nil {
		return nil, fmt.Errorf("acme cache: %w", err)
	}
	key, err := loadOrCreateKey(filepath.Join(cfg.CacheDir, "account.key"))
	if err != nil {
		return nil, fmt.Errorf("acme account key: %w", err)
	}
	return &ACME{
		cfg:    cfg,
		client: &acme.Client{Key: key, DirectoryURL: cfg.DirectoryURL, HTTPClient: cfg.HTTPClient, UserAgent: "macro-ingress"},
		now:    time.Now,
		tokens: map[string]string{},
		alpn:   map[string]*tls.Certificate{},
	}, nil
}

func loadOrCreateKey(path string) (*ecdsa.PrivateKey, error) {
	if b, err := os.ReadFile(path); err == nil {
		blk, _ := pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("%s: no PEM", path)
		}
		return x509.ParseECPrivateKey(blk.Bytes)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := writeAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})); err != nil {
		return nil, err
	}
	return key, nil
}

// writeAtomic writes a secret file whole or not at all.
func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// ServeHTTP answers the HTTP-01 challenges of orders in progress:
// /.well-known/acme-challenge/<token>.
func (a *ACME) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	token := strings.TrimPrefix(r.URL.Path, "/.well-known/acme-challenge/")
	a.tokMu.Lock()
	ka, ok := a.tokens[token]
	a.tokMu.Unlock()
	if !ok || r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Write([]byte(ka))
}

// ALPNCert is the TLS-ALPN-01 challenge certificate of host while its
// authorization is in progress (for a handshake that offers only the
// acme-tls/1 protocol).
func (a *ACME) ALPNCert(host string) (*tls.Certificate, bool) {
	a.tokMu.Lock()
	defer a.tokMu.Unlock()
	c, ok := a.alpn[host]
	return c, ok
}

func (a *ACME) certFile(host string) string {
	return filepath.Join(a.cfg.CacheDir, "certs", host+".pem")
}

// Issue is an Issuer: the cached certificate of host while more than a
// third of its life is left, else a new one from the CA. When ordering
// fails, a cached certificate that has not expired is still served.
func (a *ACME) Issue(host string) (tls.Certificate, error) {
	for _, l := range strings.Split(host, ".") {
		if !validLabel(l) {
			return tls.Certificate{}, fmt.Errorf("acme: %q is not a host name", host)
		}
	}
	cached, cerr := a.loadCached(host)
	if cerr == nil && freshFor(cached.Leaf, a.now()) {
		return cached, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cert, err := a.order(ctx, host)
	if err != nil {
		if cerr == nil && a.now().Before(cached.Leaf.NotAfter) {
			a.cfg.Log.Warn("acme renewal failed; serving the cached certificate", "host", host, "err", err)
			return cached, nil
		}
		return tls.Certificate{}, err
	}
	return cert, nil
}

func (a *ACME) loadCached(host string) (tls.Certificate, error) {
	b, err := os.ReadFile(a.certFile(host))
	if err != nil {
		return tls.Certificate{}, err
	}
	cert, err := tls.X509KeyPair(b, b)
	if err != nil {
		return tls.Certificate{}, err
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return tls.Certificate{}, err
		}
	}
	if err := cert.Leaf.VerifyHostname(host); err != nil {
		return tls.Certificate{}, err
	}
	return cert, nil
}

// freshFor is true while more than a third of leaf's life is left.
func freshFor(leaf *x509.Certificate, now time.Time) bool {
	if leaf == nil {
		return true
	}
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	return now.Before(leaf.NotAfter.Add(-life / 3))
}

func (a *ACME) register(ctx context.Context) error {
	a.regMu.Lock()
	defer a.regMu.Unlock()
	if a.registered {
		return nil
	}
	acct := &acme.Account{}
	if a.cfg.Email != "" {
		acct.Contact = []string{"mailto:" + a.cfg.Email}
	}
	if _, err := a.client.Register(ctx, acct, acme.AcceptTOS); err != nil && !errors.Is(err, acme.ErrAccountAlreadyExists) {
		return fmt.Errorf("acme account: %w", err)
	}
	a.registered = true
	return nil
}

// order gets a certificate for host: a new order, the HTTP-01 challenge
// of each authorization answered, and a CSR for a fresh P-256 key.
func (a *ACME) order(ctx context.Context, host string) (tls.Certificate, error) {
	if err := a.register(ctx); err != nil {
		return tls.Certificate{}, err
	}
	o, err := a.client.AuthorizeOrder(ctx, acme.DomainIDs(host))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("acme order for %s: %w", host, err)
	}
	for _, u := range o.AuthzURLs {
		if err := a.authorize(ctx, host, u); err != nil {
			return tls.Certificate{}, fmt.Errorf("acme authorization of %s: %w", host, err)
		}
	}
	uri := o.URI
	if o, err = a.client.WaitOrder(ctx, uri); err != nil {
		return tls.Certificate{}, fmt.Errorf("acme order for %s: %w", host, err)
	}
	if o.URI == "" {
		o.URI = uri // the order's own answer has no Location
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{host}}, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	der, _, err := a.client.CreateCertFromOrder(ctx, o, csr, true)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("acme certificate for %s: %w", host, err)
	}
	leaf, err := x509.ParseCertificate(der[0])
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("acme certificate for %s: %w", host, err)
	}
	if err := leaf.VerifyHostname(host); err != nil {
		return tls.Certificate{}, fmt.Errorf("acme certificate for %s: %w", host, err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return tls.Certificate{}, err
	}
	pemData := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	for _, c := range der {
		pemData = append(pemData, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c})...)
	}
	if err := writeAtomic(a.certFile(host), pemData); err != nil {
		a.cfg.Log.Warn("acme cache", "host", host, "err", err)
	}
	a.cfg.Log.Info("acme certificate", "host", host, "not_after", leaf.NotAfter)
	return tls.Certificate{Certificate: der, PrivateKey: key, Leaf: leaf}, nil
}

func (a *ACME) authorize(ctx context.Context, host, url string) error {
	z, err := a.client.GetAuthorization(ctx, url)
	if err != nil {
		return err
	}
	if z.Status == acme.StatusValid {
		return nil
	}
	var chal *acme.Challenge
	for _, c := range z.Challenges {
		if c.Type == a.cfg.Challenge {
			chal = c
		}
	}
	if chal == nil {
		return fmt.Errorf("the CA offers no %s challenge", a.cfg.Challenge)
	}
	if chal.Type == "http-01" {
		ka, err := a.client.HTTP01ChallengeResponse(chal.Token)
		if err != nil {
			return err
		}
		a.tokMu.Lock()
		a.tokens[chal.Token] = ka
		a.tokMu.Unlock()
		defer func() {
			a.tokMu.Lock()
			delete(a.tokens, chal.Token)
			a.tokMu.Unlock()
		}()
	} else {
		cert, err := a.client.TLSALPN01ChallengeCert(chal.Token, host)
		if err != nil {
			return err
		}
		a.tokMu.Lock()
		a.alpn[host] = &cert
		a.tokMu.Unlock()
		defer func() {
			a.tokMu.Lock()
			delete(a.alpn, host)
			a.tokMu.Unlock()
		}()
	}
	if _, err := a.client.Accept(ctx, chal); err != nil {
		return err
	}
	_, err = a.client.WaitAuthorization(ctx, z.URI)
	return err
}
