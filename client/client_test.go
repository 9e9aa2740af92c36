package client_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/macro-cloud/macro/client"
	"github.com/macro-cloud/macro/client/clienttest"
)

func newServer(t *testing.T) *clienttest.Server {
	t.Helper()
	s := clienttest.NewServer()
	t.Cleanup(s.Close)
	return s
}

func roots(s *clienttest.Server) *x509.CertPool {
	p := x509.NewCertPool()
	p.AppendCertsFromPEM(s.CAPEM)
	return p
}

func newClient(t *testing.T, s *clienttest.Server, token string) *client.Client {
	t.Helper()
	c, err := client.New(s.URL, client.Options{Token: token, RootCAs: roots(s)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestNormalizeHost(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{in: "https://macro.example:7443", want: "https://macro.example:7443"},
		{in: "https://macro.example:7443/", want: "https://macro.example:7443"},
		{in: "macro.example:7443", want: "https://macro.example:7443"},
		{in: " https://[::1]:7443 ", want: "https://[::1]:7443"},
		{in: "", err: "empty host"},
		{in: "http://macro.example:7443", err: "https only"},
		{in: "tcp://macro.example:7443", err: "https only"},
		{in: "https://macro.example:7443/apis", err: "expected https://HOST:PORT"},
		{in: "https://user@macro.example", err: "expected https://HOST:PORT"},
		{in: "https://", err: "expected https://HOST:PORT"},
	} {
		got, err := client.NormalizeHost(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("NormalizeHost(%q) = %q, %v; want error with %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("NormalizeHost(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestWhoAmI(t *testing.T) {
	s := newServer(t)
	ctx := context.Background()
	id, err := newClient(t, s, "alice-token").WhoAmI(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if id.Tenant != "alice" || id.Cluster != clienttest.Cluster {
		t.Errorf("WhoAmI = %+v", id)
	}

	_, err = newClient(t, s, "nope").WhoAmI(ctx)
	var e *client.Error
	if !errors.Is(err, client.ErrUnauthorized) || !errors.As(err, &e) || e.Message != "invalid or revoked token" || e.Host != s.URL {
		t.Errorf("WhoAmI with a bad token: %#v", err)
	}

	_, err = newClient(t, s, "").WhoAmI(ctx)
	if !errors.Is(err, client.ErrNoToken) {
		t.Errorf("WhoAmI without a token: %v", err)
	}
	if n := s.Count("GET /apis/macro/v1/whoami"); n != 2 {
		t.Errorf("%d requests to /whoami; want 2 (none without a token)", n)
	}
}

func TestTransportErrors(t *testing.T) {
	s := newServer(t)
	ctx := context.Background()

	// The system's roots do not know the server's CA.
	c, err := client.New(s.URL, client.Options{Token: "alice-token"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.WhoAmI(ctx)
	var untrusted *client.UntrustedError
	if !errors.As(err, &untrusted) || untrusted.Host != s.URL {
		t.Errorf("unknown CA: %v", err)
	}

	// Nothing listens on a port just closed.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c, _ = client.New("https://"+addr, client.Options{Token: "x"})
	_, err = c.WhoAmI(ctx)
	var unreachable *client.UnreachableError
	if !errors.As(err, &unreachable) || unreachable.Reason != "connection refused" {
		t.Errorf("closed port: %v", err)
	}
	if want := "cannot reach https://" + addr + ": connection refused"; err.Error() != want {
		t.Errorf("closed port: %q; want %q", err, want)
	}

	// A plain HTTP server on the port.
	plain := httptest.NewServer(http.NotFoundHandler())
	defer plain.Close()
	c, _ = client.New(strings.Replace(plain.URL, "http://", "https://", 1), client.Options{Token: "x"})
	_, err = c.WhoAmI(ctx)
	if !errors.As(err, &unreachable) || !strings.Contains(err.Error(), "does not speak TLS") {
		t.Errorf("plain HTTP: %v", err)
	}

	// A cancelled context is not "unreachable".
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = newClient(t, s, "alice-token").WhoAmI(cctx)
	if !errors.Is(err, context.Canceled) || errors.As(err, &unreachable) {
		t.Errorf("cancelled: %v", err)
	}
}

func TestErrorBodies(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		status     int
		want       string
	}{
		{"message", `{"message": "namespace \"x\" not found"}`, 404, `namespace "x" not found`},
		{"error", `{"error": "quota exceeded"}`, 403, "quota exceeded"},
		{"text", "bad gateway\nmore", 502, "bad gateway"},
		{"empty", "", 500, "GET "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tc.status)
				w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			p := x509.NewCertPool()
			p.AddCert(srv.Certificate())
			c, _ := client.New(srv.URL, client.Options{Token: "t", RootCAs: p})
			_, err := c.Namespace(context.Background(), "x")
			var e *client.Error
			if !errors.As(err, &e) || e.Status != tc.status || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v; want status %d and %q", err, tc.status, tc.want)
			}
			if errors.Is(err, client.ErrNotFound) != (tc.status == 404) {
				t.Errorf("errors.Is(ErrNotFound) wrong for %d", tc.status)
			}
		})
	}
}

func TestRetryAfter(t *testing.T) {
	s := newServer(t)
	_, err := newClient(t, s, clienttest.ThrottledToken).WhoAmI(context.Background())
	var e *client.Error
	if !errors.As(err, &e) || e.Status != 429 || e.RetryAfter != 7 {
		t.Errorf("throttled: %#v", err)
	}
}

func TestCA(t *testing.T) {
	s := newServer(t)
	c, _ := client.New(s.URL, client.Options{InsecureSkipVerify: true})
	b, err := c.CA(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, s.CAPEM) {
		t.Errorf("CA = %q", b)
	}
}

func TestNamespaces(t *testing.T) {
	s := newServer(t)
	ctx := context.Background()
	c := newClient(t, s, "alice-token")
	list, err := c.Namespaces(ctx)
	if err != nil || len(list) != 2 || list[1].Name != "shop" {
		t.Fatalf("Namespaces = %+v, %v", list, err)
	}
	n, err := c.CreateNamespace(ctx, "blog")
	if err != nil || n.Name != "blog" || n.Created.IsZero() {
		t.Fatalf("CreateNamespace = %+v, %v", n, err)
	}
	if _, err := c.CreateNamespace(ctx, "blog"); err == nil || err.Error() != `namespace "blog" already exists` {
		t.Errorf("CreateNamespace again: %v", err)
	}
	if n, err := c.Namespace(ctx, "blog"); err != nil || n.Name != "blog" {
		t.Errorf("Namespace = %+v, %v", n, err)
	}
	if err := c.DeleteNamespace(ctx, "blog"); err != nil {
		t.Errorf("DeleteNamespace: %v", err)
	}
	if _, err := c.Namespace(ctx, "blog"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("Namespace after delete: %v", err)
	}
	if err := c.DeleteNamespace(ctx, "shop"); !errors.Is(err, client.ErrConflict) || !strings.Contains(err.Error(), "still has 1 pods") {
		t.Errorf("DeleteNamespace(shop) with a pod: %v", err)
	}
	// Another tenant sees none of alice's.
	if list, err := newClient(t, s, "bob-token").Namespaces(ctx); err != nil || len(list) != 1 || list[0].Name != "default" {
		t.Errorf("bob's namespaces = %+v, %v", list, err)
	}
}

// dockerClient returns a client with a certificate from CreateCerts.
func dockerClient(t *testing.T, s *clienttest.Server, token string) *client.Client {
	t.Helper()
	certs, err := newClient(t, s, token).CreateCerts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair([]byte(certs.Cert), []byte(certs.Key))
	if err != nil {
		t.Fatal(err)
	}
	if certs.CA != string(s.CAPEM) {
		t.Errorf("certs.CA is not the server's CA")
	}
	c, err := client.New(s.URL, client.Options{Token: token, RootCAs: roots(s), ClientCert: &cert})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDocker(t *testing.T) {
	s := newServer(t)
	ctx := context.Background()

	if _, err := newClient(t, s, "alice-token").Containers(ctx, true); !errors.Is(err, client.ErrNoClientCert) {
		t.Errorf("Containers without a certificate: %v", err)
	}

	c := dockerClient(t, s, "alice-token")
	running, err := c.Containers(ctx, false)
	if err != nil || len(running) != 1 || running[0].Names[0] != "/web" {
		t.Errorf("Containers(running) = %+v, %v", running, err)
	}
	all, err := c.Containers(ctx, true)
	if err != nil || len(all) != 2 {
		t.Errorf("Containers(all) = %+v, %v", all, err)
	}
	in, err := c.Container(ctx, "web")
	if err != nil || in.Name != "/web" {
		t.Errorf("Container(web) = %+v, %v", in, err)
	}
	_, err = c.Container(ctx, "nope")
	if !errors.Is(err, client.ErrNotFound) || err.Error() != "No such container: nope" {
		t.Errorf("Container(nope): %v", err)
	}
	imgs, err := c.Images(ctx, false)
	if err != nil || len(imgs) != 2 {
		t.Errorf("Images = %+v, %v", imgs, err)
	}
	if s.Count("GET /containers/json") != 2 {
		t.Errorf("requests: %v", s.Requests)
	}

	// bob's certificate sees none of alice's pods.
	if list, err := dockerClient(t, s, "bob-token").Containers(ctx, true); err != nil || len(list) != 0 {
		t.Errorf("bob's containers = %+v, %v", list, err)
	}

	s.RevokeCerts()
	if _, err := c.Containers(ctx, true); !errors.Is(err, client.ErrUnauthorized) {
		t.Errorf("revoked certificate: %v", err)
	}
}

func TestLogs(t *testing.T) {
	s := newServer(t)
	c := dockerClient(t, s, "alice-token")
	for _, tc := range []struct{ pod, stdout, stderr string }{
		{"web", "listening on :80\nGET / 200\n", "warning: no index.html\n"}, // multiplexed
		{"db", "Ready to accept connections\n", ""},                          // TTY: raw
	} {
		var stdout, stderr bytes.Buffer
		if err := c.Logs(context.Background(), tc.pod, client.LogsOptions{Tail: "all"}, &stdout, &stderr); err != nil {
			t.Fatalf("Logs(%s): %v", tc.pod, err)
		}
		if stdout.String() != tc.stdout || stderr.String() != tc.stderr {
			t.Errorf("Logs(%s): stdout %q, stderr %q; want %q, %q", tc.pod, stdout.String(), stderr.String(), tc.stdout, tc.stderr)
		}
	}
	if err := c.Logs(context.Background(), "nope", client.LogsOptions{}, &bytes.Buffer{}, &bytes.Buffer{}); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("Logs(nope): %v", err)
	}
}
