// Package testoidc is a small OpenID Connect provider for tests: discovery,
// a JWKS, an authorize endpoint that signs in a chosen user at once, and a
// token endpoint for the authorization code flow with PKCE (S256). ID
// tokens are RS256 JWTs signed with a key made per provider. Fields let a
// test make the provider misbehave: sign with another key, name another
// audience or nonce, hand out expired tokens.
package testoidc

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// User is who signs in at the authorize endpoint.
type User struct {
	Subject       string
	Email         string
	EmailVerified bool
}

// Provider is a running test provider over HTTPS.
type Provider struct {
	Server       *httptest.Server
	Issuer       string // the server's URL
	ClientID     string
	ClientSecret string

	key *rsa.PrivateKey

	mu sync.Mutex
	// User signs in at the next authorization.
	user User
	// Misbehaviour, for tests of the relying party.
	forgeKey  *rsa.PrivateKey // sign ID tokens with this key, not the published one
	audience  string          // aud of ID tokens, instead of ClientID
	nonce     *string         // nonce of ID tokens, instead of the one asked for
	expiresIn time.Duration   // ID token lifetime; negative: already expired
	codes     map[string]grant
	// Authorizations counts the redirects the authorize endpoint made.
	authorizations int
}

type grant struct {
	clientID, redirect, challenge, nonce string
	user                                 User
}

// Start runs a provider until the test ends.
func Start(t testing.TB) *Provider {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p := &Provider{ClientID: "macro-ingress", ClientSecret: "s3cret-" + random(), key: key, codes: map[string]grant{}, expiresIn: time.Hour}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", p.discovery)
	mux.HandleFunc("GET /jwks", p.jwks)
	mux.HandleFunc("GET /authorize", p.authorize)
	mux.HandleFunc("POST /token", p.token)
	p.Server = httptest.NewTLSServer(mux)
	t.Cleanup(p.Server.Close)
	p.Issuer = p.Server.URL
	return p
}

// SignIn sets who signs in at the next authorization.
func (p *Provider) SignIn(u User) { p.mu.Lock(); p.user = u; p.mu.Unlock() }

// ForgeWith makes the provider sign ID tokens with key (nil: its own).
func (p *Provider) ForgeWith(key *rsa.PrivateKey) { p.mu.Lock(); p.forgeKey = key; p.mu.Unlock() }

// Audience makes ID tokens name aud ("" : the client ID).
func (p *Provider) Audience(aud string) { p.mu.Lock(); p.audience = aud; p.mu.Unlock() }

// Nonce makes ID tokens carry nonce instead of the one asked for (nil: as asked).
func (p *Provider) Nonce(nonce *string) { p.mu.Lock(); p.nonce = nonce; p.mu.Unlock() }

// ExpiresIn sets the lifetime of ID tokens (negative: expired when issued).
func (p *Provider) ExpiresIn(d time.Duration) { p.mu.Lock(); p.expiresIn = d; p.mu.Unlock() }

// Authorizations is how many sign-ins the authorize endpoint granted.
func (p *Provider) Authorizations() int { p.mu.Lock(); defer p.mu.Unlock(); return p.authorizations }

func random() string {
	b := make([]byte, 16)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func (p *Provider) discovery(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, 200, map[string]any{
		"issuer":                                p.Issuer,
		"authorization_endpoint":                p.Issuer + "/authorize",
		"token_endpoint":                        p.Issuer + "/token",
		"jwks_uri":                              p.Issuer + "/jwks",
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"code_challenge_methods_supported":      []string{"S256"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
	})
}

func (p *Provider) jwks(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, 200, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &p.key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
}

// authorize signs the configured user in at once and sends the browser
// back with a code, as a provider does after its login form.
func (p *Provider) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	redirect, err := url.Parse(q.Get("redirect_uri"))
	if err != nil || redirect.Scheme != "https" {
		http.Error(w, "bad redirect_uri", 400)
		return
	}
	if q.Get("client_id") != p.ClientID || q.Get("response_type") != "code" || q.Get("state") == "" {
		http.Error(w, "bad authorization request", 400)
		return
	}
	if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" {
		http.Error(w, "PKCE S256 required", 400)
		return
	}
	code := random()
	p.mu.Lock()
	p.codes[code] = grant{clientID: p.ClientID, redirect: redirect.String(), challenge: q.Get("code_challenge"), nonce: q.Get("nonce"), user: p.user}
	p.authorizations++
	p.mu.Unlock()
	v := redirect.Query()
	v.Set("code", code)
	v.Set("state", q.Get("state"))
	redirect.RawQuery = v.Encode()
	http.Redirect(w, r, redirect.String(), http.StatusFound)
}

func (p *Provider) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeJSON(w, 400, map[string]string{"error": "invalid_request"})
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id != p.ClientID || subtle.ConstantTimeCompare([]byte(secret), []byte(p.ClientSecret)) != 1 {
		writeJSON(w, 401, map[string]string{"error": "invalid_client"})
		return
	}
	p.mu.Lock()
	g, ok := p.codes[r.PostForm.Get("code")]
	delete(p.codes, r.PostForm.Get("code")) // one use
	key, aud, nonce, life := p.key, p.ClientID, g.nonce, p.expiresIn
	if p.forgeKey != nil {
		key = p.forgeKey
	}
	if p.audience != "" {
		aud = p.audience
	}
	if p.nonce != nil {
		nonce = *p.nonce
	}
	p.mu.Unlock()
	if !ok || r.PostForm.Get("grant_type") != "authorization_code" || r.PostForm.Get("redirect_uri") != g.redirect {
		writeJSON(w, 400, map[string]string{"error": "invalid_grant"})
		return
	}
	sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
	if base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge {
		writeJSON(w, 400, map[string]string{"error": "invalid_grant", "error_description": "PKCE verifier does not match"})
		return
	}
	now := time.Now()
	claims := map[string]any{
		"iss": p.Issuer, "sub": g.user.Subject, "aud": aud,
		"iat": now.Unix(), "exp": now.Add(life).Unix(),
		"nonce": nonce,
	}
	if g.user.Email != "" {
		claims["email"] = g.user.Email
		claims["email_verified"] = g.user.EmailVerified
	}
	idToken, err := sign(key, claims)
	if err != nil {
		writeJSON(w, 500, map[string]string{"error": "server_error"})
		return
	}
	writeJSON(w, 200, map[string]any{"access_token": random(), "token_type": "Bearer", "expires_in": 3600, "id_token": idToken})
}

func sign(key *rsa.PrivateKey, claims map[string]any) (string, error) {
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: "k1"}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", err
	}
	b, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	jws, err := s.Sign(b)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}
