package ingress

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/macro-cloud/macro/internal/testoidc"
)

// seen is what an authenticated route's backend was sent.
type seen struct {
	User, Email, Method, Authorization, Cookie string
	Underscore                                 string // X_Macro_User, as a CGI backend would read it
	Path                                       string
}

// whoami is a backend that answers with the request's identity headers.
func whoami(t *testing.T) netip.AddrPort {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(seen{
			User: r.Header.Get(IdentityHeader), Email: r.Header.Get(EmailHeader), Method: r.Header.Get(AuthMethodHeader),
			Authorization: r.Header.Get("Authorization"), Cookie: r.Header.Get("Cookie"),
			Underscore: r.Header.Get("X_macro_user"), Path: r.URL.RequestURI(),
		})
	}))
	t.Cleanup(s.Close)
	return netip.MustParseAddrPort(s.Listener.Addr().String())
}

func authBackend(pod string, ap netip.AddrPort, route string, kv ...string) Backend {
	b := routeTo("alice", pod, ap, route)
	for i := 0; i+1 < len(kv); i += 2 {
		b.Labels[kv[i]] = kv[i+1]
	}
	return b
}

// browser is a client with a cookie jar that follows redirects, trusting
// the ingress's CA and the provider's certificate, every name dialled at
// 127.0.0.1 as DNS would send it to the ingress.
func (f *ingressFixture) browser(t *testing.T, prov *testoidc.Provider) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	pool := f.pool.Clone()
	pool.AddCert(prov.Server.Certificate())
	return &http.Client{
		Jar: jar,
		Transport: &http.Transport{
			DialContext:     f.client.Transport.(*http.Transport).DialContext,
			TLSClientConfig: &tls.Config{RootCAs: pool},
		},
	}
}

func (f *ingressFixture) url(host, path string) string {
	_, port, _ := net.SplitHostPort(f.httpsAddr)
	return "https://" + net.JoinHostPort(host, port) + path
}

// do sends a request; html makes it look like a browser's navigation.
func do(t *testing.T, c *http.Client, method, u string, html bool, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, u, nil)
	if html {
		req.Header.Set("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp, b.String()
}

func decodeSeen(t *testing.T, body string) seen {
	t.Helper()
	var s seen
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatalf("backend answer %q: %v", body, err)
	}
	return s
}

func newOIDCIngress(t *testing.T, backends ...Backend) (*ingressFixture, *testoidc.Provider) {
	t.Helper()
	prov := testoidc.Start(t)
	f := newIngressWith(t, Options{
		OIDC: &OIDCConfig{Issuer: prov.Issuer, ClientID: prov.ClientID, ClientSecret: prov.ClientSecret,
			HTTPClient: prov.Server.Client(), SessionTTL: time.Hour},
		SessionSecret: []byte("0123456789abcdef0123456789abcdef"),
	}, Config{Domain: "cloud.test"}, backends...)
	return f, prov
}

func cookieNamed(c *http.Client, u, name string) *http.Cookie {
	pu, _ := url.Parse(u)
	for _, ck := range c.Jar.Cookies(pu) {
		if ck.Name == name {
			return ck
		}
	}
	return nil
}

func TestOIDCLogin(t *testing.T) {
	be := whoami(t)
	f, prov := newOIDCIngress(t,
		authBackend("app", be, "https://app.*", AuthLabel, "oidc", AuthAllowLabel, "*@example.com, bob@other.org"),
		authBackend("app2", be, "https://app2.*", AuthLabel, "oidc", AuthAllowLabel, "*"),
	)
	app := f.url("app.alice.cloud.test", "/page?x=1")
	prov.SignIn(testoidc.User{Subject: "u-alice", Email: "Alice@Example.com", EmailVerified: true})
	b := f.browser(t, prov)

	t.Run("a browser is sent to log in and comes back to the page it asked for", func(t *testing.T) {
		resp, body := do(t, b, "GET", app, true,
			IdentityHeader, "admin@example.com", "X_Macro_User", "admin@example.com", EmailHeader, "admin@example.com", "Cookie", "theme=dark")
		if resp.StatusCode != 200 || resp.Request.URL.String() != app {
			t.Fatalf("status %d at %s: %s", resp.StatusCode, resp.Request.URL, body)
		}
		s := decodeSeen(t, body)
		if s.User != "alice@example.com" || s.Email != "alice@example.com" || s.Method != "oidc" || s.Path != "/page?x=1" {
			t.Fatalf("backend saw %+v", s)
		}
		if prov.Authorizations() != 1 {
			t.Fatalf("%d authorizations", prov.Authorizations())
		}
	})
	t.Run("the session holds without the provider; forged identity headers and the session cookie never reach the backend", func(t *testing.T) {
		resp, body := do(t, b, "GET", app, false,
			IdentityHeader, "admin@example.com", "X_Macro_User", "admin@example.com", EmailHeader, "admin@example.com", AuthMethodHeader, "token")
		s := decodeSeen(t, body)
		if resp.StatusCode != 200 || s.User != "alice@example.com" || s.Email != "alice@example.com" || s.Method != "oidc" || s.Underscore != "" {
			t.Fatalf("%d %+v", resp.StatusCode, s)
		}
		if strings.Contains(s.Cookie, "macro") {
			t.Fatalf("ingress cookie passed on: %q", s.Cookie)
		}
		if prov.Authorizations() != 1 {
			t.Fatal("logged in again")
		}
	})
	t.Run("other cookies still reach the backend", func(t *testing.T) {
		u, _ := url.Parse(app)
		b.Jar.SetCookies(u, []*http.Cookie{{Name: "theme", Value: "dark"}})
		_, body := do(t, b, "GET", app, false)
		if s := decodeSeen(t, body); s.Cookie != "theme=dark" {
			t.Fatalf("cookie %q", s.Cookie)
		}
	})
	sess := cookieNamed(b, app, sessionCookie)
	if sess == nil {
		t.Fatal("no session cookie in the jar")
	}
	plain := f.client // no jar, no redirects
	t.Run("an API client without a session gets 401, not a login page", func(t *testing.T) {
		resp, _ := do(t, plain, "GET", app, false)
		if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "OIDC realm=") {
			t.Fatalf("%d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
		resp, _ = do(t, plain, "POST", app, true)
		if resp.StatusCode != 401 {
			t.Fatalf("POST without session: %d", resp.StatusCode)
		}
		resp, _ = do(t, plain, "GET", app, true)
		if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), prov.Issuer+"/authorize?") {
			t.Fatalf("browser without session: %d %s", resp.StatusCode, resp.Header.Get("Location"))
		}
		loc, _ := url.Parse(resp.Header.Get("Location"))
		q := loc.Query()
		if q.Get("code_challenge_method") != "S256" || q.Get("state") == "" || q.Get("nonce") == "" ||
			q.Get("redirect_uri") != f.url("app.alice.cloud.test", CallbackPath) {
			t.Fatalf("authorize request %s", loc)
		}
	})
	t.Run("the session cookie works alone, and a tampered one does not", func(t *testing.T) {
		resp, body := do(t, plain, "GET", app, false, "Cookie", sessionCookie+"="+sess.Value)
		if resp.StatusCode != 200 || decodeSeen(t, body).User != "alice@example.com" {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		v := []byte(sess.Value)
		v[len(v)/2] ^= 1
		if v[len(v)/2] == '-'+1 || v[len(v)/2] == '_'+1 { // keep it base64url
			v[len(v)/2] = 'A'
		}
		resp, _ = do(t, plain, "GET", app, false, "Cookie", sessionCookie+"="+string(v))
		if resp.StatusCode != 401 {
			t.Fatalf("tampered cookie: %d", resp.StatusCode)
		}
	})
	t.Run("a session of one host does not open on another", func(t *testing.T) {
		resp, _ := do(t, plain, "GET", f.url("app2.alice.cloud.test", "/"), false, "Cookie", sessionCookie+"="+sess.Value)
		if resp.StatusCode != 401 {
			t.Fatalf("cookie of app on app2: %d", resp.StatusCode)
		}
	})
	t.Run("a session made with another secret does not open", func(t *testing.T) {
		other := sealer{secret: []byte("another secret, another ingress!")}
		v, _ := other.seal("app.alice.cloud.test", sessionCookie, session{Host: "app.alice.cloud.test", Email: "alice@example.com", Expires: time.Now().Add(time.Hour)})
		resp, _ := do(t, plain, "GET", app, false, "Cookie", sessionCookie+"="+v)
		if resp.StatusCode != 401 {
			t.Fatalf("foreign cookie: %d", resp.StatusCode)
		}
	})
	t.Run("an expired session does not open", func(t *testing.T) {
		f.proxy.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
		defer func() { f.proxy.now = time.Now }()
		resp, _ := do(t, plain, "GET", app, false, "Cookie", sessionCookie+"="+sess.Value)
		if resp.StatusCode != 401 {
			t.Fatalf("expired session: %d", resp.StatusCode)
		}
	})
	t.Run("logout ends the session", func(t *testing.T) {
		resp, body := do(t, b, "GET", f.url("app.alice.cloud.test", LogoutPath), true)
		if resp.StatusCode != 200 || !strings.Contains(body, "signed out") {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		if cookieNamed(b, app, sessionCookie) != nil {
			t.Fatal("session cookie kept")
		}
		if resp, _ := do(t, b, "GET", app, false); resp.StatusCode != 401 {
			t.Fatalf("after logout: %d", resp.StatusCode)
		}
	})
	t.Run("a user not on the allow list is refused", func(t *testing.T) {
		for _, u := range []testoidc.User{
			{Subject: "u-eve", Email: "eve@evil.example", EmailVerified: true},
			{Subject: "u-mallory", Email: "mallory@example.com", EmailVerified: false}, // unverified address
			{Subject: "u-nomail"},
		} {
			prov.SignIn(u)
			resp, body := do(t, f.browser(t, prov), "GET", app, true)
			if resp.StatusCode != 403 || strings.Contains(body, `"User"`) {
				t.Fatalf("%+v: %d %s", u, resp.StatusCode, body)
			}
		}
		prov.SignIn(testoidc.User{Subject: "u-bob", Email: "bob@other.org", EmailVerified: true})
		if resp, body := do(t, f.browser(t, prov), "GET", app, true); resp.StatusCode != 200 || decodeSeen(t, body).User != "bob@other.org" {
			t.Fatalf("bob: %d %s", resp.StatusCode, body)
		}
		// "*" lets in anyone the provider signs in, by subject without email.
		prov.SignIn(testoidc.User{Subject: "u-nomail"})
		if resp, body := do(t, f.browser(t, prov), "GET", f.url("app2.alice.cloud.test", "/"), true); resp.StatusCode != 200 || decodeSeen(t, body).User != "u-nomail" {
			t.Fatalf("no email on *: %d %s", resp.StatusCode, body)
		}
	})
	t.Run("unfinished logins do not pile up cookies", func(t *testing.T) {
		b := f.browser(t, prov)
		b.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		most := 0
		for i := 0; i < 10; i++ {
			do(t, b, "GET", app, true)
			n := 0
			pu, _ := url.Parse(app)
			for _, c := range b.Jar.Cookies(pu) {
				if strings.HasPrefix(c.Name, loginCookie) {
					n++
				}
			}
			most = max(most, n)
		}
		if most > 5 || most < 2 {
			t.Fatalf("%d login cookies at most", most)
		}
	})
	t.Run("after login the browser is only sent back to this host", func(t *testing.T) {
		prov.SignIn(testoidc.User{Subject: "u-alice", Email: "alice@example.com", EmailVerified: true})
		resp, _ := do(t, f.browser(t, prov), "GET", f.url("app.alice.cloud.test", "//evil.example/x"), true)
		if resp.Request.URL.Hostname() != "app.alice.cloud.test" || resp.Request.URL.Path != "/" {
			t.Fatalf("ended at %s", resp.Request.URL)
		}
	})
}

// TestOIDCBadTokens: ID tokens that are forged, for another client,
// expired or for another login are refused, and no session is made.
func TestOIDCBadTokens(t *testing.T) {
	be := whoami(t)
	f, prov := newOIDCIngress(t, authBackend("app", be, "https://app.*", AuthLabel, "oidc", AuthAllowLabel, "*"))
	app := f.url("app.alice.cloud.test", "/")
	prov.SignIn(testoidc.User{Subject: "u-alice", Email: "alice@example.com", EmailVerified: true})
	forger, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	other := "another-nonce"
	cases := []struct {
		name  string
		setup func()
	}{
		{"signed with a key not in the provider's JWKS", func() { prov.ForgeWith(forger) }},
		{"for another client", func() { prov.Audience("someone-else") }},
		{"expired", func() { prov.ExpiresIn(-time.Minute) }},
		{"for another login (nonce)", func() { prov.Nonce(&other) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.setup()
			defer func() { prov.ForgeWith(nil); prov.Audience(""); prov.ExpiresIn(time.Hour); prov.Nonce(nil) }()
			b := f.browser(t, prov)
			resp, body := do(t, b, "GET", app, true)
			if resp.StatusCode != 401 || !strings.Contains(body, "Sign-in failed") {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			if cookieNamed(b, app, sessionCookie) != nil {
				t.Fatal("session made")
			}
		})
	}
	t.Run("a good token still works (the cases above fail for their reason)", func(t *testing.T) {
		if resp, body := do(t, f.browser(t, prov), "GET", app, true); resp.StatusCode != 200 || decodeSeen(t, body).User != "alice@example.com" {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	})
	t.Run("a callback not started in this browser is refused", func(t *testing.T) {
		// Start a login in one browser, finish it in another (login CSRF).
		noFollow := f.browser(t, prov)
		noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		resp, _ := do(t, noFollow, "GET", app, true)
		resp, _ = do(t, noFollow, "GET", resp.Header.Get("Location"), true) // the provider's redirect with a code
		cb := resp.Header.Get("Location")
		if !strings.Contains(cb, CallbackPath+"?") {
			t.Fatalf("provider sent %s", cb)
		}
		victim := f.browser(t, prov)
		resp, body := do(t, victim, "GET", cb, true)
		if resp.StatusCode != 400 || cookieNamed(victim, app, sessionCookie) != nil {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		// The same callback with its state changed, in the right browser.
		u, _ := url.Parse(cb)
		q := u.Query()
		q.Set("state", q.Get("state")[:12]+"tampered-state-value")
		u.RawQuery = q.Encode()
		if resp, _ := do(t, noFollow, "GET", u.String(), true); resp.StatusCode != 400 {
			t.Fatalf("tampered state: %d", resp.StatusCode)
		}
		// And as it came: it completes.
		if resp, _ := do(t, noFollow, "GET", cb, true); resp.StatusCode != http.StatusSeeOther || cookieNamed(noFollow, app, sessionCookie) == nil {
			t.Fatalf("genuine callback: %d", resp.StatusCode)
		}
	})
}

func TestOIDCWithoutProvider(t *testing.T) {
	be := whoami(t)
	f := newIngress(t, Config{Domain: "cloud.test"}, authBackend("app", be, "https://app.*", AuthLabel, "oidc", AuthAllowLabel, "*"))
	resp, body := do(t, f.client, "GET", f.url("app.alice.cloud.test", "/"), true)
	if resp.StatusCode != 503 || !strings.Contains(body, "--oidc-issuer") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
}

func TestBasicAndBearer(t *testing.T) {
	be := whoami(t)
	f := newIngress(t, Config{Domain: "cloud.test"},
		authBackend("api", be, "https://api.*", AuthLabel, "basic,token",
			AuthBasicLabel, "alice:"+pwHash, AuthTokensLabel, "ci:sha256:"+tokenSum("t0ken-of-ci")+",deploy:sha256:"+tokenSum("other")),
		authBackend("open", be, "https://open.*"),
	)
	api := f.url("api.alice.cloud.test", "/v1")
	cases := []struct {
		name   string
		hdr    []string
		status int
		user   string
		method string
	}{
		{"bearer token", []string{"Authorization", "Bearer t0ken-of-ci"}, 200, "ci", "token"},
		{"second token", []string{"Authorization", "bearer other"}, 200, "deploy", "token"},
		{"basic", []string{"Authorization", "Basic YWxpY2U6cHc="}, 200, "alice", "basic"}, // alice:pw
		{"forged identity with a token", []string{"Authorization", "Bearer t0ken-of-ci", IdentityHeader, "alice"}, 200, "ci", "token"},
		{"wrong token", []string{"Authorization", "Bearer t0ken-of-cj"}, 401, "", ""},
		{"empty token", []string{"Authorization", "Bearer "}, 401, "", ""},
		{"wrong password", []string{"Authorization", "Basic YWxpY2U6cHg="}, 401, "", ""}, // alice:px
		{"unknown user", []string{"Authorization", "Basic Ym9iOnB3"}, 401, "", ""},       // bob:pw
		{"token as password", []string{"Authorization", "Basic Y2k6dDBrZW4tb2YtY2k="}, 401, "", ""},
		{"nothing", nil, 401, "", ""},
		{"nothing, as a browser", []string{"Accept", "text/html"}, 401, "", ""},
		{"identity header alone", []string{IdentityHeader, "ci"}, 401, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, body := do(t, f.client, "GET", api, false, c.hdr...)
			if resp.StatusCode != c.status {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if c.status == 401 {
				ch := resp.Header.Values("WWW-Authenticate")
				if len(ch) != 2 || !strings.HasPrefix(ch[0], `Basic realm="api.alice.cloud.test"`) || ch[1] != `Bearer realm="api.alice.cloud.test"` {
					t.Fatalf("challenges %q", ch)
				}
				return
			}
			s := decodeSeen(t, body)
			if s.User != c.user || s.Method != c.method || s.Authorization != "" {
				t.Fatalf("backend saw %+v", s)
			}
		})
	}
	t.Run("an open route passes Authorization on and no identity", func(t *testing.T) {
		_, body := do(t, f.client, "GET", f.url("open.alice.cloud.test", "/"), false, "Authorization", "Bearer app-own", IdentityHeader, "ci")
		if s := decodeSeen(t, body); s.User != "" || s.Authorization != "Bearer app-own" {
			t.Fatalf("%+v", s)
		}
	})
	t.Run("curl", func(t *testing.T) {
		if _, err := exec.LookPath("curl"); err != nil {
			t.Skip("no curl")
		}
		_, port, _ := net.SplitHostPort(f.httpsAddr)
		curl := func(args ...string) string {
			base := []string{"-sS", "--cacert", f.caFile, "--resolve", "api.alice.cloud.test:" + port + ":127.0.0.1", "-w", " %{http_code}"}
			out, err := exec.Command("curl", append(base, args...)...).CombinedOutput()
			if err != nil {
				t.Fatalf("curl %v: %v %s", args, err, out)
			}
			return string(out)
		}
		if out := curl("-u", "alice:pw", api); !strings.HasSuffix(out, " 200") || !strings.Contains(out, `"User":"alice"`) {
			t.Fatalf("curl -u: %s", out)
		}
		if out := curl("-H", "Authorization: Bearer t0ken-of-ci", "--http2", api); !strings.HasSuffix(out, " 200") || !strings.Contains(out, `"User":"ci"`) {
			t.Fatalf("curl bearer: %s", out)
		}
		if out := curl("-u", "alice:wrong", api); !strings.HasSuffix(out, " 401") {
			t.Fatalf("curl wrong password: %s", out)
		}
	})
}

// TestAuthBeforeWakeAndWebSockets: a request that does not authenticate
// never wakes a suspended pod nor counts as its activity; one that does
// wakes it, and a WebSocket with a bearer token passes.
func TestAuthBeforeWakeAndWebSockets(t *testing.T) {
	_, ap := app(t, "sleepy")
	b := authBackend("sleepy", ap, "https://ws.*", AuthLabel, "token", AuthTokensLabel, "ci:sha256:"+tokenSum("t0ken-of-ci"))
	b.Ready, b.Suspended = false, true
	f := newIngress(t, Config{Domain: "cloud.test"}, b)
	u := f.url("ws.alice.cloud.test", "/x")
	if resp, _ := do(t, f.client, "GET", u, false, "Authorization", "Bearer wrong"); resp.StatusCode != 401 {
		t.Fatalf("wrong token: %d", resp.StatusCode)
	}
	if len(f.waker.woken) != 0 || f.proxy.Activity.Requests("sleepy") != 0 {
		t.Fatalf("an unauthenticated request woke the pod: %v", f.waker.woken)
	}
	if resp, body := do(t, f.client, "GET", u, false, "Authorization", "Bearer t0ken-of-ci"); resp.StatusCode != 200 || !strings.HasPrefix(body, "sleepy /x") || !strings.Contains(body, `user="ci"`) {
		t.Fatalf("with token: %d %s", resp.StatusCode, body)
	}
	if len(f.waker.woken) != 1 {
		t.Fatalf("woken %v", f.waker.woken)
	}
	d := websocket.Dialer{
		NetDialContext:  f.client.Transport.(*http.Transport).DialContext,
		TLSClientConfig: &tls.Config{RootCAs: f.pool},
	}
	ws := strings.Replace(f.url("ws.alice.cloud.test", "/ws"), "https://", "wss://", 1)
	if _, resp, err := d.Dial(ws, nil); err == nil || resp == nil || resp.StatusCode != 401 {
		t.Fatalf("websocket without token: %v", err)
	}
	c, _, err := d.Dial(ws, http.Header{"Authorization": {"Bearer t0ken-of-ci"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.WriteMessage(websocket.TextMessage, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if _, got, err := c.ReadMessage(); err != nil || string(got) != "sleepy:hi" {
		t.Fatalf("got %q %v", got, err)
	}
}
