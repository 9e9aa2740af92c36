package ingress

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// OIDCConfig is the OpenID Connect provider that routes with
// kr.ingress.auth=oidc log users in with (macro server --oidc-issuer,
// --oidc-client-id, --oidc-client-secret-file). The provider must accept
// https://<host>/.macro/oidc/callback as a redirect URI for every host
// that uses it.
type OIDCConfig struct {
	Issuer       string
	ClientID     string
	ClientSecret string
	// HTTPClient talks to the provider; nil means http.DefaultClient.
	HTTPClient *http.Client
	// Scopes asked for besides openid; nil means email and profile.
	Scopes []string
	// SessionTTL is how long a login lasts; 0 means 12 hours.
	SessionTTL time.Duration
}

// oidcClient discovers the provider on first use and again after a
// failure, so a provider that is down when the server starts does not keep
// logins broken once it is back.
type oidcClient struct {
	cfg OIDCConfig
	now func() time.Time

	mu       sync.Mutex
	provider *oidc.Provider
	verifier *oidc.IDTokenVerifier
}

func newOIDCClient(cfg OIDCConfig, now func() time.Time) *oidcClient {
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	if cfg.Scopes == nil {
		cfg.Scopes = []string{"email", "profile"}
	}
	if cfg.SessionTTL == 0 {
		cfg.SessionTTL = 12 * time.Hour
	}
	return &oidcClient{cfg: cfg, now: now}
}

// ctx carries the provider's HTTP client for go-oidc and oauth2.
func (o *oidcClient) ctx(ctx context.Context) context.Context {
	ctx = oidc.ClientContext(ctx, o.cfg.HTTPClient)
	return context.WithValue(ctx, oauth2.HTTPClient, o.cfg.HTTPClient)
}

func (o *oidcClient) get(ctx context.Context) (*oidc.Provider, *oidc.IDTokenVerifier, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.provider != nil {
		return o.provider, o.verifier, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// Discovery with the request's deadline; the key set the provider
	// keeps fetches with the client only (go-oidc: context not kept for
	// cancelation).
	p, err := oidc.NewProvider(o.ctx(ctx), o.cfg.Issuer)
	if err != nil {
		return nil, nil, fmt.Errorf("oidc discovery of %s: %w", o.cfg.Issuer, err)
	}
	o.provider = p
	o.verifier = p.Verifier(&oidc.Config{ClientID: o.cfg.ClientID, Now: o.now})
	return o.provider, o.verifier, nil
}

func (o *oidcClient) oauth2(p *oidc.Provider, redirect string) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     o.cfg.ClientID,
		ClientSecret: o.cfg.ClientSecret,
		Endpoint:     p.Endpoint(),
		RedirectURL:  redirect,
		Scopes:       append([]string{oidc.ScopeOpenID}, o.cfg.Scopes...),
	}
}

// idClaims are the ID token's claims the ingress reads.
type idClaims struct {
	Email         string          `json:"email"`
	EmailVerified json.RawMessage `json:"email_verified"`
}

// verifiedEmail is the lower-case email when the provider says it is
// verified (true, or "true" as some providers write it), else "".
func (c idClaims) verifiedEmail() string {
	v := strings.TrimSpace(string(c.EmailVerified))
	if c.Email == "" || (v != "true" && v != `"true"`) {
		return ""
	}
	return strings.ToLower(c.Email)
}
