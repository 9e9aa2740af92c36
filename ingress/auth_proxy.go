package ingress

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"html"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/oauth2"
)

// Headers the backend of an authenticated route receives. The proxy
// removes them, and any spelling of them with underscores, from every
// incoming request, so a backend can trust them.
const (
	// EmailHeader is the verified email of an OIDC login.
	EmailHeader = "X-Macro-Email"
	// AuthMethodHeader says how the client got in: oidc, basic or token.
	AuthMethodHeader = "X-Macro-Auth"
)

// identity is who a request comes from once authenticated.
type identity struct {
	user, email, method string
}

type identityKey struct{}

// authState is the proxy's part of authenticated ingress.
type authState struct {
	seal sealer
	oidc *oidcClient // nil: no provider configured

	mu    sync.Mutex
	basic map[[sha256.Size]byte]bool // passwords bcrypt already accepted

	throttle throttle
}

// dummyHash is compared against when a basic-auth user does not exist, so
// an unknown user costs as much as a wrong password.
// Made on first use: bcrypt is slow on purpose, and most processes that
// link the ingress never check a password.
var dummyHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("macro ingress"), bcrypt.DefaultCost)
	return h
})

func newAuthState(opts Options, now func() time.Time) *authState {
	secret := opts.SessionSecret
	if len(secret) == 0 {
		secret = make([]byte, 32)
		rand.Read(secret)
	}
	a := &authState{seal: sealer{secret: secret}, basic: map[[sha256.Size]byte]bool{}}
	if opts.OIDC != nil {
		a.oidc = newOIDCClient(*opts.OIDC, now)
	}
	return a
}

// acceptedBasic is true when bcrypt accepted this user and password of
// the route before (no bcrypt now).
func (a *authState) acceptedBasic(auth *Auth, user, pass string) bool {
	for _, u := range auth.Users {
		if u.Name == user {
			k := sha256.Sum256([]byte(user + "\x00" + pass + "\x00" + string(u.Hash)))
			a.mu.Lock()
			defer a.mu.Unlock()
			return a.basic[k]
		}
	}
	return false
}

// checkBasic verifies a basic-auth user and password against the route's
// bcrypt hashes. Accepted passwords are remembered (by a hash of user,
// password and bcrypt hash) so a client does not pay bcrypt per request.
func (a *authState) checkBasic(auth *Auth, user, pass string) bool {
	var hash []byte
	known := false
	for _, u := range auth.Users {
		if u.Name == user {
			hash, known = u.Hash, true
			break
		}
	}
	if !known {
		hash = dummyHash()
	}
	k := sha256.Sum256([]byte(user + "\x00" + pass + "\x00" + string(hash)))
	a.mu.Lock()
	ok := a.basic[k]
	a.mu.Unlock()
	if ok {
		return known
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(pass)) != nil || !known {
		return false
	}
	a.mu.Lock()
	if len(a.basic) >= 4096 {
		clear(a.basic)
	}
	a.basic[k] = true
	a.mu.Unlock()
	return true
}

// checkToken finds the bearer token among the route's by its SHA-256.
func checkToken(auth *Auth, token string) (string, bool) {
	if token == "" {
		return "", false
	}
	sum := sha256.Sum256([]byte(token))
	name, found := "", 0
	for _, t := range auth.Tokens {
		if subtle.ConstantTimeCompare(sum[:], t.Sum[:]) == 1 {
			name, found = t.Name, 1
		}
	}
	return name, found == 1
}

// authenticate lets a request of an authenticated route through, with who
// sent it, or answers it: a login redirect for a browser, 401 with
// WWW-Authenticate for other clients, 403 for a user not on the allow list.
func (p *Proxy) authenticate(w http.ResponseWriter, r *http.Request, host string, route *Route) (identity, bool) {
	a := route.Auth
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, cred, _ := strings.Cut(h, " ")
		switch {
		case a.Token && strings.EqualFold(scheme, "Bearer"):
			if name, ok := checkToken(a, strings.TrimSpace(cred)); ok {
				return identity{user: name, method: "token"}, true
			}
			p.loginFailed(w, r, host, route, "The bearer token is not valid for this app.")
			return identity{}, false
		case a.Basic && strings.EqualFold(scheme, "Basic"):
			user, pass, ok := r.BasicAuth()
			if ok && p.auth.acceptedBasic(a, user, pass) {
				return identity{user: user, method: "basic"}, true
			}
			if wait := p.auth.throttle.blocked(routeKey(route), clientPrefix(r), p.now()); wait > 0 {
				tooMany(w, wait)
				return identity{}, false
			}
			if ok && p.auth.checkBasic(a, user, pass) {
				return identity{user: user, method: "basic"}, true
			}
			p.loginFailed(w, r, host, route, "The user name or password is not valid for this app.")
			return identity{}, false
		}
	}
	if a.OIDC {
		if s, ok := p.readSession(r, host); ok {
			if !a.allows(s.Email) {
				who := s.Email
				if who == "" {
					who = "a user without a verified email"
				}
				authPage(w, http.StatusForbidden, "Not allowed",
					fmt.Sprintf("You are signed in as %s, whom this app does not let in.", who), true)
				return identity{}, false
			}
			user := s.Email
			if user == "" {
				user = s.Subject
			}
			return identity{user: user, email: s.Email, method: "oidc"}, true
		}
		if wantsHTML(r) && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			p.startLogin(w, r, host)
			return identity{}, false
		}
	}
	p.challenge(w, host, a, "This app needs you to sign in.")
	return identity{}, false
}

// wantsHTML is true for a browser's navigation.
func wantsHTML(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

// loginFailed counts a failed login and answers 401, or 429 once the
// client or the route is over its limit.
func (p *Proxy) loginFailed(w http.ResponseWriter, r *http.Request, host string, route *Route, msg string) {
	key, addr, now := routeKey(route), clientPrefix(r), p.now()
	p.auth.throttle.failed(key, addr, now)
	if wait := p.auth.throttle.blocked(key, addr, now); wait > 0 {
		tooMany(w, wait)
		return
	}
	p.challenge(w, host, route.Auth, msg)
}

// challenge answers 401 with the schemes the route takes.
func (p *Proxy) challenge(w http.ResponseWriter, host string, a *Auth, msg string) {
	realm := strconv.Quote(host)
	if a.Basic {
		w.Header().Add("WWW-Authenticate", "Basic realm="+realm+`, charset="UTF-8"`)
	}
	if a.Token {
		w.Header().Add("WWW-Authenticate", "Bearer realm="+realm)
	}
	if a.OIDC && !a.Basic && !a.Token {
		// No scheme an API client can answer: it says a browser login is
		// needed.
		w.Header().Add("WWW-Authenticate", "OIDC realm="+realm)
	}
	authPage(w, http.StatusUnauthorized, "Sign-in required", msg, false)
}

// readSession opens the host's session cookie; false when there is none,
// it does not open (forged, another host's, an old secret) or it expired.
func (p *Proxy) readSession(r *http.Request, host string) (session, bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return session{}, false
	}
	var s session
	if err := p.auth.seal.open(host, sessionCookie, c.Value, &s); err != nil {
		return session{}, false
	}
	if s.Host != host || !p.now().Before(s.Expires) {
		return session{}, false
	}
	return s, true
}

// callbackURL is the redirect URI the provider sends users back to.
func (p *Proxy) callbackURL(host string) string {
	h := host
	if p.opts.HTTPSPort != 443 || strings.Contains(host, ":") {
		h = net.JoinHostPort(host, strconv.Itoa(p.opts.HTTPSPort))
	}
	return "https://" + h + CallbackPath
}

func randomString() string {
	b := make([]byte, 24)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// startLogin sends a browser to the provider: authorization code flow
// with state, nonce and PKCE (S256), remembered in a sealed cookie.
func (p *Proxy) startLogin(w http.ResponseWriter, r *http.Request, host string) {
	if p.auth.oidc == nil {
		authPage(w, http.StatusServiceUnavailable, "Sign-in unavailable",
			"This app signs users in with OpenID Connect, and this cloud has no provider configured (macro server --oidc-issuer).", false)
		return
	}
	prov, _, err := p.auth.oidc.get(r.Context())
	if err != nil {
		p.log.Warn("oidc", "err", err)
		authPage(w, http.StatusBadGateway, "Sign-in unavailable", "The sign-in provider cannot be reached.", false)
		return
	}
	ret := r.URL.RequestURI()
	if !strings.HasPrefix(ret, "/") || strings.HasPrefix(ret, "//") || strings.HasPrefix(ret, "/\\") {
		ret = "/"
	}
	ls := loginState{
		State: randomString(), Nonce: randomString(), Verifier: oauth2.GenerateVerifier(),
		Return: ret, Expires: p.now().Add(10 * time.Minute),
	}
	name := loginCookie + ls.State[:12]
	// Logins started and never finished (tabs, a provider that failed)
	// each left a cookie for ten minutes; past a few, drop them, so they
	// cannot grow the browser's requests past the header limit.
	var pending []string
	for _, c := range r.Cookies() {
		if strings.HasPrefix(c.Name, loginCookie) {
			pending = append(pending, c.Name)
		}
	}
	if len(pending) >= 4 {
		for _, n := range pending {
			http.SetCookie(w, &http.Cookie{Name: n, Value: "", Path: "/", MaxAge: -1, Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
		}
	}
	v, err := p.auth.seal.seal(host, name, ls)
	if err != nil {
		authPage(w, http.StatusInternalServerError, "Sign-in failed", err.Error(), false)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: name, Value: v, Path: "/", MaxAge: 600, Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	u := p.auth.oidc.oauth2(prov, p.callbackURL(host)).AuthCodeURL(ls.State, oidc.Nonce(ls.Nonce), oauth2.S256ChallengeOption(ls.Verifier))
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, u, http.StatusFound)
}

// serveReserved answers the paths under /.macro/ of a host with an OIDC
// route: the provider's callback and logout.
func (p *Proxy) serveReserved(w http.ResponseWriter, r *http.Request, host string) {
	switch r.URL.Path {
	case CallbackPath:
		p.callback(w, r, host)
	case LogoutPath:
		http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
		authPage(w, http.StatusOK, "Signed out", "You are signed out of "+host+".", false)
	default:
		page(w, http.StatusNotFound, "Not found", "No such page of the ingress.")
	}
}

func (p *Proxy) callback(w http.ResponseWriter, r *http.Request, host string) {
	if p.auth.oidc == nil {
		authPage(w, http.StatusServiceUnavailable, "Sign-in unavailable", "This cloud has no OpenID Connect provider configured.", false)
		return
	}
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		authPage(w, http.StatusUnauthorized, "Sign-in refused", "The provider said: "+e+" "+q.Get("error_description"), false)
		return
	}
	state := q.Get("state")
	if len(state) < 12 {
		authPage(w, http.StatusBadRequest, "Sign-in failed", "The provider's answer has no state.", false)
		return
	}
	name := loginCookie + state[:12]
	c, err := r.Cookie(name)
	var ls loginState
	if err == nil {
		err = p.auth.seal.open(host, name, c.Value, &ls)
	}
	if err != nil || subtle.ConstantTimeCompare([]byte(ls.State), []byte(state)) != 1 || !p.now().Before(ls.Expires) {
		authPage(w, http.StatusBadRequest, "Sign-in failed",
			"This sign-in was not started here in this browser, or it took too long. Open the app again to sign in.", false)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1, Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	prov, verifier, err := p.auth.oidc.get(r.Context())
	if err != nil {
		p.log.Warn("oidc", "err", err)
		authPage(w, http.StatusBadGateway, "Sign-in unavailable", "The sign-in provider cannot be reached.", false)
		return
	}
	ctx, cancel := context.WithTimeout(p.auth.oidc.ctx(r.Context()), 15*time.Second)
	defer cancel()
	tok, err := p.auth.oidc.oauth2(prov, p.callbackURL(host)).Exchange(ctx, q.Get("code"), oauth2.VerifierOption(ls.Verifier))
	if err != nil {
		p.log.Info("oidc code exchange", "host", host, "err", err)
		authPage(w, http.StatusUnauthorized, "Sign-in failed", "The provider did not accept the sign-in code.", false)
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := verifier.Verify(ctx, raw)
	if err != nil {
		p.log.Info("oidc id token", "host", host, "err", err)
		authPage(w, http.StatusUnauthorized, "Sign-in failed", "The provider's ID token did not verify.", false)
		return
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(ls.Nonce)) != 1 {
		authPage(w, http.StatusUnauthorized, "Sign-in failed", "The provider's ID token is not for this sign-in.", false)
		return
	}
	var claims idClaims
	if err := idt.Claims(&claims); err != nil {
		authPage(w, http.StatusUnauthorized, "Sign-in failed", "The provider's ID token is malformed.", false)
		return
	}
	s := session{Host: host, Subject: idt.Subject, Email: claims.verifiedEmail(), Expires: p.now().Add(p.auth.oidc.cfg.SessionTTL)}
	v, err := p.auth.seal.seal(host, sessionCookie, s)
	if err != nil {
		authPage(w, http.StatusInternalServerError, "Sign-in failed", err.Error(), false)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: v, Path: "/", MaxAge: int(p.auth.oidc.cfg.SessionTTL / time.Second),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, ls.Return, http.StatusSeeOther)
}

// authPage is page with, for a signed-in user, a way to sign out.
func authPage(w http.ResponseWriter, status int, title, msg string, logout bool) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	fmt.Fprintf(w, "<!doctype html>\n<title>%d %s</title>\n<h1>%s</h1>\n<p>%s</p>\n",
		status, html.EscapeString(title), html.EscapeString(title), html.EscapeString(msg))
	if logout {
		fmt.Fprintf(w, "<p><a href=\"%s\">Sign out</a></p>\n", LogoutPath)
	}
}

// trustedHeaders are the headers only the proxy sets, canonical.
var trustedHeaders = map[string]bool{IdentityHeader: true, EmailHeader: true, AuthMethodHeader: true}

// stripTrusted removes the proxy's identity headers from h, and any
// spelling that a backend may read as one of them (X_Macro_User: CGI,
// WSGI and some servers turn - and _ into the same name), and the
// ingress's own cookies.
func stripTrusted(h http.Header) {
	for k := range h {
		if trustedHeaders[textproto.CanonicalMIMEHeaderKey(strings.ReplaceAll(k, "_", "-"))] {
			delete(h, k)
		}
	}
	cookies := h.Values("Cookie")
	if len(cookies) == 0 {
		return
	}
	var keep []string
	changed := false
	for _, line := range cookies {
		for _, part := range strings.Split(line, ";") {
			name, _, _ := strings.Cut(strings.TrimSpace(part), "=")
			if name == sessionCookie || strings.HasPrefix(name, loginCookie) {
				changed = true
				continue
			}
			if s := strings.TrimSpace(part); s != "" {
				keep = append(keep, s)
			}
		}
	}
	if !changed {
		return
	}
	h.Del("Cookie")
	if len(keep) > 0 {
		h.Set("Cookie", strings.Join(keep, "; "))
	}
}

// setIdentity passes who the client is to the backend. The credentials the
// ingress checked (basic or bearer) are its own and not passed on.
func setIdentity(h http.Header, id identity) {
	h.Set(IdentityHeader, id.user)
	h.Set(AuthMethodHeader, id.method)
	if id.email != "" {
		h.Set(EmailHeader, id.email)
	}
	if id.method == "basic" || id.method == "token" {
		h.Del("Authorization")
	}
}
