package ingress

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/macro-cloud/macro/auth"
)

// app is a backend: it answers with its name and what it was sent.
func app(t *testing.T, name string) (*httptest.Server, netip.AddrPort) {
	t.Helper()
	up := websocket.Upgrader{}
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			mt, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			c.WriteMessage(mt, append([]byte(name+":"), msg...))
		}
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		for i := 0; ; i++ {
			fmt.Fprintf(w, "tick %d\n", i)
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%s %s host=%s xff=%s proto=%s user=%q body=%d", name, r.URL.Path, r.Host,
			r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto"), r.Header.Get(IdentityHeader), n)
	})
	s := httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s, netip.MustParseAddrPort(s.Listener.Addr().String())
}

func routeTo(tenant, pod string, ap netip.AddrPort, route string) Backend {
	return Backend{
		Tenant: tenant, Pod: pod, Name: pod, Created: t0,
		Labels: map[string]string{fmt.Sprintf("kr.ingress.%d", ap.Port()): route},
		Addr:   ap.Addr(), Ready: true,
	}
}

type fakeWaker struct {
	mu    sync.Mutex
	woken []string
	err   error
}

func (f *fakeWaker) Wake(_ context.Context, tenant, pod string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.woken = append(f.woken, tenant+"/"+pod)
	return f.err
}

// ingressFixture runs the proxy on plain HTTP and on HTTPS with a CA.
type ingressFixture struct {
	proxy       *Proxy
	http, https string // base URLs
	client      *http.Client
	waker       *fakeWaker
	pool        *x509.CertPool
	httpsAddr   string
}

func newIngress(t *testing.T, cfg Config, backends ...Backend) *ingressFixture {
	t.Helper()
	ca, _, err := auth.LoadOrCreateCA(t.TempDir(), "test")
	if err != nil {
		t.Fatal(err)
	}
	f := &ingressFixture{waker: &fakeWaker{}, pool: ca.Pool()}
	f.proxy = NewProxy(Options{MaxBodyBytes: 1 << 20}, f.waker, slog.New(slog.DiscardHandler))
	f.proxy.SetTable(Build(cfg, backends))
	certs := NewCerts(f.proxy, func(host string) (tls.Certificate, error) {
		return ca.ServerCert([]string{host}, time.Now())
	})
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.httpsAddr = tl.Addr().String()
	_, port, _ := net.SplitHostPort(f.httpsAddr)
	fmt.Sscan(port, &f.proxy.opts.HTTPSPort)
	hs := Server(f.proxy, nil, f.proxy.log)
	ts := Server(f.proxy, certs.TLSConfig(), f.proxy.log)
	go hs.Serve(hl)
	go ts.ServeTLS(tl, "", "")
	t.Cleanup(func() {
		hs.Close()
		ts.Close()
		f.proxy.Close()
	})
	f.http = "http://" + hl.Addr().String()
	f.https = "https://" + f.httpsAddr
	// The client resolves every name to the ingress, as DNS would.
	f.client = &http.Client{
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				_, port, _ := net.SplitHostPort(addr)
				var d net.Dialer
				return d.DialContext(ctx, network, "127.0.0.1:"+port)
			},
			TLSClientConfig:   &tls.Config{RootCAs: f.pool},
			ForceAttemptHTTP2: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return f
}

// get fetches path on host through the ingress; base is f.http or f.https.
func (f *ingressFixture) get(t *testing.T, base, host, path string) (*http.Response, string) {
	t.Helper()
	u, _ := url.Parse(base)
	_, port, _ := net.SplitHostPort(u.Host)
	resp, err := f.client.Get(u.Scheme + "://" + net.JoinHostPort(host, port) + path)
	if err != nil {
		t.Fatalf("GET %s%s: %v", host, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestProxyRoutes(t *testing.T) {
	_, a1 := app(t, "one")
	_, a2 := app(t, "two")
	_, api := app(t, "api")
	_, plain := app(t, "plain")
	f := newIngress(t, Config{Domain: "cloud.test"},
		routeTo("alice", "one", a1, "https://app.*"),
		routeTo("alice", "two", a2, "https://app.*"),
		routeTo("alice", "api", api, "https://app.*/api"),
		routeTo("alice", "plain", plain, "http://plain.*"),
	)

	t.Run("balances round robin over HTTP/2 and passes Host and X-Forwarded", func(t *testing.T) {
		seen := map[string]int{}
		for i := 0; i < 6; i++ {
			resp, body := f.get(t, f.https, "app.alice.cloud.test", "/x")
			if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
				t.Fatalf("status %d proto %s: %s", resp.StatusCode, resp.Proto, body)
			}
			if !strings.Contains(body, "host=app.alice.cloud.test") || !strings.Contains(body, "xff=127.0.0.1") || !strings.Contains(body, "proto=https") {
				t.Fatalf("headers: %s", body)
			}
			seen[strings.Fields(body)[0]]++
		}
		if seen["one"] != 3 || seen["two"] != 3 {
			t.Fatalf("balance: %v", seen)
		}
	})
	t.Run("longest path prefix wins", func(t *testing.T) {
		if _, body := f.get(t, f.https, "app.alice.cloud.test", "/api/v1"); !strings.HasPrefix(body, "api /api/v1") {
			t.Fatalf("got %s", body)
		}
		if _, body := f.get(t, f.https, "app.alice.cloud.test", "/apix"); strings.HasPrefix(body, "api") {
			t.Fatalf("/apix went to api: %s", body)
		}
	})
	t.Run("plain HTTP redirects to HTTPS keeping path and query", func(t *testing.T) {
		resp, _ := f.get(t, f.http, "app.alice.cloud.test", "/a/b?c=d")
		want := "https://app.alice.cloud.test:" + strings.Split(f.httpsAddr, ":")[1] + "/a/b?c=d"
		if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != want {
			t.Fatalf("status %d location %q, want %q", resp.StatusCode, resp.Header.Get("Location"), want)
		}
	})
	t.Run("http route is served over plain HTTP", func(t *testing.T) {
		if resp, body := f.get(t, f.http, "plain.alice.cloud.test", "/"); resp.StatusCode != 200 || !strings.HasPrefix(body, "plain") {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	})
	t.Run("unknown host is a 404 page, never an open proxy", func(t *testing.T) {
		resp, body := f.get(t, f.http, "example.org", "/")
		if resp.StatusCode != 404 || !strings.Contains(body, "No app is served at example.org") {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		// An absolute-form request for a foreign host, as to a forward proxy.
		c, err := net.Dial("tcp", strings.TrimPrefix(f.http, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET http://127.0.0.1:%d/ HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", a1.Port(), a1.Port())
		resp, err = http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 404 {
			t.Fatalf("absolute-form request: status %d", resp.StatusCode)
		}
	})
	t.Run("no certificate for a host without a route", func(t *testing.T) {
		c, err := tls.Dial("tcp", f.httpsAddr, &tls.Config{ServerName: "evil.test", RootCAs: f.pool})
		if err == nil {
			c.Close()
			t.Fatal("handshake for an unrouted name succeeded")
		}
	})
	t.Run("the identity header from a client is removed", func(t *testing.T) {
		u := "https://app.alice.cloud.test:" + strings.Split(f.httpsAddr, ":")[1] + "/"
		req, _ := http.NewRequest("GET", u, nil)
		req.Header.Set(IdentityHeader, "admin")
		resp, err := f.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), `user=""`) {
			t.Fatalf("identity header reached the backend: %s", b)
		}
	})
	t.Run("body over the limit is refused", func(t *testing.T) {
		u := "https://app.alice.cloud.test:" + strings.Split(f.httpsAddr, ":")[1] + "/upload"
		resp, err := f.client.Post(u, "application/octet-stream", strings.NewReader(strings.Repeat("x", 2<<20)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("status %d", resp.StatusCode)
		}
		resp, err = f.client.Post(u, "application/octet-stream", strings.NewReader(strings.Repeat("x", 1000)))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), "body=1000") {
			t.Fatalf("small body: %s", b)
		}
	})
	t.Run("websockets pass through", func(t *testing.T) {
		d := websocket.Dialer{
			NetDialContext:  f.client.Transport.(*http.Transport).DialContext,
			TLSClientConfig: &tls.Config{RootCAs: f.pool},
		}
		c, _, err := d.Dial("wss://app.alice.cloud.test:"+strings.Split(f.httpsAddr, ":")[1]+"/ws", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for _, m := range []string{"hello", "again"} {
			if err := c.WriteMessage(websocket.TextMessage, []byte(m)); err != nil {
				t.Fatal(err)
			}
			_, got, err := c.ReadMessage()
			if err != nil || !strings.HasSuffix(string(got), ":"+m) {
				t.Fatalf("got %q %v", got, err)
			}
		}
	})
	t.Run("responses stream as the backend flushes", func(t *testing.T) {
		u := "https://app.alice.cloud.test:" + strings.Split(f.httpsAddr, ":")[1] + "/stream"
		resp, err := f.client.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		// Reading lines one by one only works if each arrives before the
		// stream ends, which it never does.
		r := bufio.NewReader(resp.Body)
		for i := 0; i < 3; i++ {
			line, err := r.ReadString('\n')
			if err != nil || line != fmt.Sprintf("tick %d\n", i) {
				t.Fatalf("line %d: %q %v", i, line, err)
			}
		}
	})
}

func TestProxyBackendDownAndWake(t *testing.T) {
	_, up := app(t, "up")
	s, dead := app(t, "dead")
	down := routeTo("alice", "down", dead, "http://down.*")
	s.Close() // nothing listens there any more
	sleeping := routeTo("alice", "sleepy", up, "http://sleepy.*")
	sleeping.Ready, sleeping.Suspended = false, true
	unready := routeTo("alice", "unready", up, "http://unready.*")
	unready.Ready = false
	f := newIngress(t, Config{Domain: "cloud.test"}, down, sleeping, unready)

	if resp, body := f.get(t, f.http, "down.alice.cloud.test", "/"); resp.StatusCode != 502 || !strings.Contains(body, "did not answer") {
		t.Fatalf("backend down: %d %s", resp.StatusCode, body)
	}
	if resp, body := f.get(t, f.http, "unready.alice.cloud.test", "/"); resp.StatusCode != 502 || !strings.Contains(body, "No backend") {
		t.Fatalf("no ready backend: %d %s", resp.StatusCode, body)
	}
	resp, body := f.get(t, f.http, "sleepy.alice.cloud.test", "/hi")
	if resp.StatusCode != 200 || !strings.HasPrefix(body, "up /hi") {
		t.Fatalf("suspended backend: %d %s", resp.StatusCode, body)
	}
	if len(f.waker.woken) != 1 || f.waker.woken[0] != "alice/sleepy" {
		t.Fatalf("woken: %v", f.waker.woken)
	}
	if f.proxy.Activity.Requests("sleepy") != 1 || !f.proxy.Activity.Idle("sleepy", time.Now().Add(time.Second)) {
		t.Fatalf("activity not recorded")
	}
	f.waker.err = fmt.Errorf("cannot thaw")
	if resp, _ := f.get(t, f.http, "sleepy.alice.cloud.test", "/"); resp.StatusCode != 502 {
		t.Fatalf("failed wake: status %d", resp.StatusCode)
	}
}

// TestSlowClientIsCut: a client that never finishes its headers is
// disconnected (slowloris).
func TestSlowClientIsCut(t *testing.T) {
	t.Parallel() // it waits for the 10 s header timeout
	f := newIngress(t, Config{Domain: "cloud.test"})
	c, err := net.Dial("tcp", strings.TrimPrefix(f.http, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n")
	c.SetReadDeadline(time.Now().Add(time.Minute))
	_, err = io.ReadAll(c)
	if err != nil {
		t.Fatalf("connection not closed by the server: %v", err)
	}
}

// TestTCPIngress: a public TCP port reaches the pod that claims it, both
// ways with half-close; a port without a route closes at once.
func TestTCPIngress(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b, _ := io.ReadAll(c)
				c.Write(append([]byte("echo:"), b...))
			}()
		}
	}()
	ap := netip.MustParseAddrPort(echo.Addr().String())
	b := Backend{Tenant: "alice", Pod: "db", Created: t0, Addr: ap.Addr(), Ready: true,
		Labels: map[string]string{fmt.Sprintf("kr.ingress.tcp.%d", ap.Port()): "15432"}}
	p := NewProxy(Options{}, nil, slog.New(slog.DiscardHandler))
	p.SetTable(Build(Config{}, []Backend{b}))
	for _, port := range []int{15432, 15433} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- p.ServeTCP(l, port) }()
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("ping"))
		c.(*net.TCPConn).CloseWrite()
		got, _ := io.ReadAll(c)
		c.Close()
		want := "echo:ping"
		if port == 15433 {
			want = ""
		}
		if string(got) != want {
			t.Errorf("port %d: got %q, want %q", port, got, want)
		}
		l.Close()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
