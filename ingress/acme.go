package ingress

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
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
	// State keeps the account key, the certificates and the answers of
	// challenges in progress, shared by every ingress of a cluster (the CA
	// may check a challenge through any of them); nil means
	// DirState(CacheDir).
	State State
	// CacheDir keeps them in files when State is nil.
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
// handshake of its HTTPS listener (Certs.ALPN). The account key,
// certificates (PEM, under certs/HOST) and challenge answers live in its
// State, so that several ingresses share one account and one certificate
// per host and any of them answers a challenge another started.
type ACME struct {
	cfg    ACMEConfig
	client *acme.Client
	now    func() time.Time

	regMu      sync.Mutex
	registered bool

	lookups chan struct{} // bounds the State lookups of unknown tokens

	id   string        // this instance, in its order claims
	poll time.Duration // how often a waiting instance looks for the certificate

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
	if cfg.State == nil {
		if cfg.CacheDir == "" {
			return nil, errors.New("acme: no state to keep the account in")
		}
		cfg.State = DirState(cfg.CacheDir)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key, err := loadOrCreateKey(ctx, cfg.State, "account.key")
	if err != nil {
		return nil, fmt.Errorf("acme account key: %w", err)
	}
	id := make([]byte, 12)
	if _, err := rand.Read(id); err != nil {
		return nil, err
	}
	return &ACME{
		cfg:     cfg,
		id:      hex.EncodeToString(id),
		poll:    2 * time.Second,
		client:  &acme.Client{Key: key, DirectoryURL: cfg.DirectoryURL, HTTPClient: cfg.HTTPClient, UserAgent: "macro-ingress"},
		now:     time.Now,
		tokens:  map[string]string{},
		alpn:    map[string]*tls.Certificate{},
		lookups: make(chan struct{}, 8),
	}, nil
}

// loadOrCreateKey reads the account key, or makes one; when several
// ingresses start at once, the first one stored is everyone's.
func loadOrCreateKey(ctx context.Context, st State, name string) (*ecdsa.PrivateKey, error) {
	b, err := st.Get(ctx, name)
	if errors.Is(err, ErrNoState) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return nil, err
		}
		b, err = st.Create(ctx, name, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
		if err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s: no PEM", name)
	}
	return x509.ParseECPrivateKey(blk.Bytes)
}

// ServeHTTP answers the HTTP-01 challenges of orders in progress:
// /.well-known/acme-challenge/<token>.
func (a *ACME) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	token := strings.TrimPrefix(r.URL.Path, "/.well-known/acme-challenge/")
	a.tokMu.Lock()
	ka, ok := a.tokens[token]
	a.tokMu.Unlock()
	if !ok && validToken(token) {
		// Another ingress of the cluster may have started this order. At
		// most a few lookups at once: anyone may send tokens.
		select {
		case a.lookups <- struct{}{}:
			ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
			b, err := a.cfg.State.Get(ctx, "http-01/"+token)
			cancel()
			<-a.lookups
			ka, ok = string(b), err == nil
		default:
		}
	}
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
	c, ok := a.alpn[host]
	a.tokMu.Unlock()
	if ok || ValidHost(host) != nil {
		return c, ok
	}
	// Another ingress of the cluster may have started this order: the
	// certificate follows from its token and the shared account key.
	select {
	case a.lookups <- struct{}{}:
		defer func() { <-a.lookups }()
	default:
		return nil, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	token, err := a.cfg.State.Get(ctx, "tls-alpn-01/"+host)
	if err != nil || !validToken(string(token)) {
		return nil, false
	}
	cert, err := a.client.TLSALPN01ChallengeCert(string(token), host)
	if err != nil {
		return nil, false
	}
	return &cert, true
}

// validToken is true for an ACME challenge token: base64url, as RFC 8555
// makes them.
func validToken(t string) bool {
	if t == "" || len(t) > 256 {
		return false
	}
	for _, c := range t {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func certName(host string) string { return "certs/" + host + ".pem" }

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
	ctx, cancel := context.WithTimeout(context.Background(), orderTimeout)
	defer cancel()
	cert, err := a.orderOnce(ctx, host)
	if err != nil {
		if cerr == nil && a.now().Before(cached.Leaf.NotAfter) {
			a.cfg.Log.Warn("acme renewal failed; serving the cached certificate", "host", host, "err", err)
			return cached, nil
		}
		return tls.Certificate{}, err
	}
	return cert, nil
}

// orderTimeout bounds one certificate order; an ingress's claim on a
// host's order lapses after it.
const orderTimeout = 3 * time.Minute

// orderClaim is stored (under orders/HOST) by the ingress that orders a
// host's certificate, so that the others of its cluster wait for that
// certificate instead of ordering too: every order counts against the
// CA's rate limits (Let's Encrypt: 5 duplicate certificates a week).
type orderClaim struct {
	Owner string    `json:"owner"`
	Until time.Time `json:"until"`
}

func orderName(host string) string { return "orders/" + host }

// orderOnce orders host's certificate unless another ingress sharing the
// state is ordering it: then it waits for that one's certificate, and
// orders itself only when that order ended without one (or its claim
// lapsed, an ingress that stopped mid-order).
func (a *ACME) orderOnce(ctx context.Context, host string) (tls.Certificate, error) {
	for {
		mine, until, err := a.claim(ctx, host)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("acme order for %s: %w", host, err)
		}
		if mine {
			defer a.cfg.State.Delete(context.WithoutCancel(ctx), orderName(host))
			o, err := a.order(ctx, host)
			if err != nil {
				return tls.Certificate{}, err
			}
			return a.keep(ctx, host, o)
		}
		a.cfg.Log.Debug("acme: another ingress orders this host; waiting for its certificate", "host", host)
		for a.now().Before(until) {
			select {
			case <-ctx.Done():
				return tls.Certificate{}, fmt.Errorf("acme order for %s: waiting for another ingress's order: %w", host, ctx.Err())
			case <-time.After(a.poll):
			}
			if c, err := a.loadCached(host); err == nil && freshFor(c.Leaf, a.now()) {
				return c, nil
			}
			if _, err := a.cfg.State.Get(ctx, orderName(host)); errors.Is(err, ErrNoState) {
				break // that order ended without a certificate
			}
		}
	}
}

// claim stores this ingress's claim on host's order unless another's
// holds; it says whether the claim is this ingress's and until when the
// holding one lasts. A lapsed claim is replaced. (Two ingresses that find
// the same lapsed claim at the same moment may both order: the rare case
// costs one duplicate order, never a wrong certificate.)
func (a *ACME) claim(ctx context.Context, host string) (bool, time.Time, error) {
	me := orderClaim{Owner: a.id, Until: a.now().Add(orderTimeout)}
	b, err := json.Marshal(me)
	if err != nil {
		return false, time.Time{}, err
	}
	for try := 0; ; try++ {
		held, err := a.cfg.State.Create(ctx, orderName(host), b)
		if err != nil {
			return false, time.Time{}, err
		}
		var c orderClaim
		if err := json.Unmarshal(held, &c); err == nil && a.now().Before(c.Until) {
			return c.Owner == me.Owner, c.Until, nil
		}
		if try > 0 {
			return false, time.Time{}, errors.New("the claim on this order lapses as soon as it is made (are the servers' clocks apart?)")
		}
		if err := a.cfg.State.Delete(ctx, orderName(host)); err != nil {
			return false, time.Time{}, err
		}
	}
}

// keep stores a new certificate unless another ingress stored a fresh one
// meanwhile, and returns the one to serve.
func (a *ACME) keep(ctx context.Context, host string, c ordered) (tls.Certificate, error) {
	if other, err := a.loadCached(host); err == nil && freshFor(other.Leaf, a.now()) {
		// Ordered only because none was fresh: this one is newer.
		return other, nil
	}
	if err := a.cfg.State.Put(ctx, certName(host), c.pem); err != nil {
		a.cfg.Log.Warn("acme cache", "host", host, "err", err)
	}
	return c.cert, nil
}

func (a *ACME) loadCached(host string) (tls.Certificate, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := a.cfg.State.Get(ctx, certName(host))
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
// ordered is a new certificate, parsed and as PEM (key first).
type ordered struct {
	cert tls.Certificate
	pem  []byte
}

func (a *ACME) order(ctx context.Context, host string) (ordered, error) {
	if err := a.register(ctx); err != nil {
		return ordered{}, err
	}
	o, err := a.client.AuthorizeOrder(ctx, acme.DomainIDs(host))
	if err != nil {
		return ordered{}, fmt.Errorf("acme order for %s: %w", host, err)
	}
	for _, u := range o.AuthzURLs {
		if err := a.authorize(ctx, host, u); err != nil {
			return ordered{}, fmt.Errorf("acme authorization of %s: %w", host, err)
		}
	}
	uri := o.URI
	if o, err = a.client.WaitOrder(ctx, uri); err != nil {
		return ordered{}, fmt.Errorf("acme order for %s: %w", host, err)
	}
	if o.URI == "" {
		o.URI = uri // the order's own answer has no Location
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return ordered{}, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{host}}, key)
	if err != nil {
		return ordered{}, err
	}
	der, _, err := a.client.CreateCertFromOrder(ctx, o, csr, true)
	if err != nil {
		return ordered{}, fmt.Errorf("acme certificate for %s: %w", host, err)
	}
	leaf, err := x509.ParseCertificate(der[0])
	if err != nil {
		return ordered{}, fmt.Errorf("acme certificate for %s: %w", host, err)
	}
	if err := leaf.VerifyHostname(host); err != nil {
		return ordered{}, fmt.Errorf("acme certificate for %s: %w", host, err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return ordered{}, err
	}
	pemData := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	for _, c := range der {
		pemData = append(pemData, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c})...)
	}
	a.cfg.Log.Info("acme certificate", "host", host, "not_after", leaf.NotAfter)
	return ordered{tls.Certificate{Certificate: der, PrivateKey: key, Leaf: leaf}, pemData}, nil
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
		name := "http-01/" + chal.Token
		if err := a.cfg.State.Put(ctx, name, []byte(ka)); err != nil {
			return fmt.Errorf("publish the challenge to the other ingresses: %w", err)
		}
		defer func() {
			a.tokMu.Lock()
			delete(a.tokens, chal.Token)
			a.tokMu.Unlock()
			a.cfg.State.Delete(context.WithoutCancel(ctx), name)
		}()
	} else {
		cert, err := a.client.TLSALPN01ChallengeCert(chal.Token, host)
		if err != nil {
			return err
		}
		a.tokMu.Lock()
		a.alpn[host] = &cert
		a.tokMu.Unlock()
		name := "tls-alpn-01/" + host
		if err := a.cfg.State.Put(ctx, name, []byte(chal.Token)); err != nil {
			return fmt.Errorf("publish the challenge to the other ingresses: %w", err)
		}
		defer func() {
			a.tokMu.Lock()
			delete(a.alpn, host)
			a.tokMu.Unlock()
			a.cfg.State.Delete(context.WithoutCancel(ctx), name)
		}()
	}
	if _, err := a.client.Accept(ctx, chal); err != nil {
		return err
	}
	_, err = a.client.WaitAuthorization(ctx, z.URI)
	return err
}
