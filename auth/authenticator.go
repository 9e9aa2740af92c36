package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/macro-cloud/macro/store"
	"github.com/macro-cloud/macro/types"
)

// Store is what the Authenticator reads: tokens by ID and tenants by name.
// *store.Store implements it; its ErrNotFound says "no such thing".
type Store interface {
	Token(ctx context.Context, id string) (types.Token, error)
	TouchToken(ctx context.Context, id string, t time.Time) error
	Tenant(ctx context.Context, name string) (types.Tenant, error)
}

var _ Store = (*store.Store)(nil)

// Errors of Authenticate. Each is an *Error with its HTTP status.
var (
	// ErrNoCredentials: the request carries neither a token nor a client
	// certificate.
	ErrNoCredentials = &Error{Status: http.StatusUnauthorized, Message: "no credentials: send an access token (Authorization: Bearer kr_...) or a client certificate"}
	// ErrBadToken: the token is malformed, unknown, revoked or its
	// tenant is gone.
	ErrBadToken = &Error{Status: http.StatusUnauthorized, Message: "invalid or revoked token"}
	// ErrNoCert: the Docker API needs a client certificate.
	ErrNoCert = &Error{Status: http.StatusUnauthorized, Message: "this is macro's API port: the Docker API needs your tenant's client certificate (get one with `kra setup docker`, or POST /apis/macro/v1/certs with your token)"}
	// ErrCertTenant: the certificate is signed by the CA but names no
	// tenant that exists.
	ErrCertTenant = &Error{Status: http.StatusForbidden, Message: "the client certificate names no tenant of this cloud"}
	// ErrCertRevoked: the certificate was revoked with the token it was
	// issued for, or with its tenant.
	ErrCertRevoked = &Error{Status: http.StatusUnauthorized, Message: "this client certificate has been revoked (its access token was revoked or its tenant removed): get a new one with a valid token (`kra login` and `kra setup docker`)"}
	// errRevocationsNotLoaded: the server cannot tell yet.
	errRevocationsNotLoaded = &Error{Status: http.StatusServiceUnavailable, Message: "the server is starting: the list of revoked certificates is not loaded yet, try again"}
)

// Error is a refusal with the HTTP status to answer it with.
type Error struct {
	Status     int
	Message    string
	RetryAfter time.Duration // with 429
}

func (e *Error) Error() string { return e.Message }

// WriteError answers a request with err as JSON {"message": ...}: the
// status of an *Error (with WWW-Authenticate on 401 and Retry-After on
// 429), 500 for anything else.
func WriteError(w http.ResponseWriter, err error) {
	status, msg := http.StatusInternalServerError, err.Error()
	var ae *Error
	if errors.As(err, &ae) {
		status = ae.Status
		if status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="macro"`)
		}
		if ae.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int((ae.RetryAfter+time.Second-1)/time.Second)))
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"message": msg})
}

// Config configures an Authenticator.
type Config struct {
	Store Store
	Log   *slog.Logger
	// Burst failed attempts per remote address are allowed at once, then
	// one every Refill (defaults 20 and 3 s).
	Burst  int
	Refill time.Duration
	// Now is the clock (time.Now).
	Now func() time.Time
	// Revocations, when set, is the list of revoked client certificates
	// that every certificate is checked against.
	Revocations *Revocations
}

// Authenticator maps a request to its caller's tenant.
type Authenticator struct {
	store   Store
	log     *slog.Logger
	now     func() time.Time
	limiter *limiter
	revoked *Revocations
}

// New returns an Authenticator over cfg.Store.
func New(cfg Config) *Authenticator {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Burst <= 0 {
		cfg.Burst = 20
	}
	if cfg.Refill <= 0 {
		cfg.Refill = 3 * time.Second
	}
	return &Authenticator{
		store:   cfg.Store,
		log:     cfg.Log.With("subsystem", "auth"),
		now:     cfg.Now,
		limiter: newLimiter(cfg.Burst, cfg.Refill),
		revoked: cfg.Revocations,
	}
}

// Revocations is the list of revoked certificates the Authenticator
// checks, nil when it checks none.
func (a *Authenticator) Revocations() *Revocations { return a.revoked }

// certSlack absorbs clock differences between the server that made a
// tenant and the one that issued a certificate to it.
const certSlack = time.Minute

// activeTenant reads a tenant that exists and is not being removed;
// store.ErrNotFound otherwise.
func (a *Authenticator) activeTenant(ctx context.Context, name string) (types.Tenant, error) {
	t, err := a.store.Tenant(ctx, name)
	if err == nil && t.Deleting {
		return t, store.ErrNotFound
	}
	return t, err
}

// TenantActive says whether a tenant exists and is not being removed:
// credentials that outlive a request (the registry's bearer tokens) check
// it on every use.
func (a *Authenticator) TenantActive(ctx context.Context, name string) bool {
	_, err := a.activeTenant(ctx, name)
	return err == nil
}

// Authenticate returns the caller of r: the tenant of its verified client
// certificate, else of its bearer token (or of the password of basic auth,
// as registry clients send a token). Errors are *Error values; failed
// attempts count against the remote address.
func (a *Authenticator) Authenticate(r *http.Request) (Identity, error) {
	if id, ok, err := a.fromCert(r); ok {
		return id, err
	}
	tok, ok := credentialToken(r)
	if !ok {
		return Identity{}, ErrNoCredentials
	}
	ip := remoteIP(r)
	if wait := a.limiter.wait(ip, a.now()); wait > 0 {
		return Identity{}, rateLimited(wait)
	}
	t, err := a.VerifyToken(r.Context(), tok)
	if err != nil {
		if errors.Is(err, ErrBadToken) {
			a.fail(ip, "token")
		}
		return Identity{}, err
	}
	return Identity{Tenant: t.Tenant, Method: MethodToken, TokenID: t.ID}, nil
}

// AuthenticateCert returns the caller of r from its client certificate
// only: what the Docker API accepts.
func (a *Authenticator) AuthenticateCert(r *http.Request) (Identity, error) {
	if id, ok, err := a.fromCert(r); ok {
		return id, err
	}
	return Identity{}, ErrNoCert
}

// fromCert authenticates a verified client certificate; ok is false when
// the request has none.
func (a *Authenticator) fromCert(r *http.Request) (id Identity, ok bool, err error) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return Identity{}, false, nil
	}
	ip := remoteIP(r)
	if wait := a.limiter.wait(ip, a.now()); wait > 0 {
		return Identity{}, true, rateLimited(wait)
	}
	leaf := r.TLS.VerifiedChains[0][0]
	tenant, named := TenantOfCert(leaf)
	if !named {
		a.fail(ip, "certificate")
		return Identity{}, true, ErrCertTenant
	}
	if a.revoked != nil {
		revoked, loaded := a.revoked.Revoked(leaf)
		if !loaded {
			return Identity{}, true, errRevocationsNotLoaded
		}
		if revoked {
			a.fail(ip, "revoked certificate")
			return Identity{}, true, ErrCertRevoked
		}
	}
	t, err := a.activeTenant(r.Context(), tenant)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			a.fail(ip, "certificate")
			return Identity{}, true, ErrCertTenant
		}
		return Identity{}, true, fmt.Errorf("authenticate: %w", err)
	}
	// A certificate older than its tenant was issued to an earlier
	// tenant of that name, removed since: whatever the revocation list
	// says, it is not this tenant's.
	if leaf.NotBefore.Add(backdate + certSlack).Before(t.Created) {
		a.fail(ip, "certificate of an earlier tenant")
		return Identity{}, true, ErrCertRevoked
	}
	return Identity{Tenant: tenant, Method: MethodCertificate}, true, nil
}

// dummyHash is compared when a token's ID is unknown, so that an unknown
// ID costs the same work as a wrong secret.
var dummyHash = strings.Repeat("0", 64)

// VerifyToken checks an access token: its shape, its ID in the store, its
// secret against the stored hash (in constant time) and that its tenant
// still exists. It records the use (to the minute). A refused token gives
// ErrBadToken; a store failure another error.
func (a *Authenticator) VerifyToken(ctx context.Context, token string) (types.Token, error) {
	id, secret, ok := ParseToken(token)
	if !ok {
		return types.Token{}, ErrBadToken
	}
	t, err := a.store.Token(ctx, id)
	found := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return types.Token{}, fmt.Errorf("verify token: %w", err)
	}
	want := t.Hash
	if !found {
		want = dummyHash
	}
	if !secretMatches(secret, want) || !found {
		return types.Token{}, ErrBadToken
	}
	if _, err := a.activeTenant(ctx, t.Tenant); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return types.Token{}, ErrBadToken
		}
		return types.Token{}, fmt.Errorf("verify token: %w", err)
	}
	if now := a.now(); now.Sub(t.LastUsed) >= time.Minute {
		if err := a.store.TouchToken(ctx, t.ID, now.Truncate(time.Second)); err != nil {
			a.log.Warn("cannot record token use", "token", t.ID, "err", err)
		}
	}
	return t, nil
}

// secretMatches compares the SHA-256 of secret with the hex hash wantHex
// in constant time.
func secretMatches(secret, wantHex string) bool {
	sum := sha256.Sum256([]byte(secret))
	want, err := hex.DecodeString(wantHex)
	if err != nil || len(want) != len(sum) {
		want = make([]byte, len(sum))
	}
	return subtle.ConstantTimeCompare(sum[:], want) == 1 && err == nil
}

func (a *Authenticator) fail(ip, what string) {
	a.limiter.fail(ip, a.now())
	a.log.Info("authentication failed", "remote", ip, "credential", what)
}

func rateLimited(wait time.Duration) error {
	return &Error{Status: http.StatusTooManyRequests, RetryAfter: wait,
		Message: fmt.Sprintf("too many failed attempts from your address: try again in %d s", int((wait+time.Second-1)/time.Second))}
}

// credentialToken returns the token of a bearer Authorization header, or
// the password of basic auth.
func credentialToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	if scheme, tok, ok := strings.Cut(h, " "); ok && strings.EqualFold(scheme, "Bearer") {
		tok = strings.TrimSpace(tok)
		return tok, tok != ""
	}
	if _, pass, ok := r.BasicAuth(); ok && pass != "" {
		return pass, true
	}
	return "", false
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// Middleware authenticates every request with authn (Authenticate or
// AuthenticateCert), answers refusals as JSON, and hands the others to
// next with the caller's Identity in the context.
func Middleware(authn func(*http.Request) (Identity, error), next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := authn(r)
		if err != nil {
			WriteError(w, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(WithIdentity(r.Context(), id)))
	})
}

// RequireCert is Middleware with AuthenticateCert: the Docker API's guard.
func (a *Authenticator) RequireCert(next http.Handler) http.Handler {
	return Middleware(a.AuthenticateCert, next)
}

// Local hands every request to next as tenant: the machine's own unix
// sockets, where the file mode is the credential.
func Local(tenant string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(WithTenant(r.Context(), tenant)))
	})
}

// RegistryAuth tells the tenant of a registry request's credentials, as
// registry.Config.Authenticate wants it.
func (a *Authenticator) RegistryAuth(r *http.Request) (string, bool) {
	id, err := a.Authenticate(r)
	if err != nil {
		return "", false
	}
	return id.Tenant, true
}
