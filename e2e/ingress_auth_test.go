package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/macro-cloud/macro/internal/testacme"
	"github.com/macro-cloud/macro/internal/testenv"
	"github.com/macro-cloud/macro/internal/testimages"
	"github.com/macro-cloud/macro/internal/testoidc"
)

// TestIngressAuthAndACME runs macro server with the OIDC and ACME flags
// against a test provider and pebble: docker run refuses broken auth
// labels; a routed host gets its certificate from pebble over a real
// HTTP-01 validation of the server's HTTP ingress; an authenticated route
// answers 401 to an API client and sends a browser through the provider's
// login, after which the request passes authentication.
func TestIngressAuthAndACME(t *testing.T) {
	testenv.RequireRoot(t)
	prov := testoidc.Start(t)
	dir := t.TempDir()
	provCA := filepath.Join(dir, "provider.pem")
	os.WriteFile(provCA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: prov.Server.Certificate().Raw}), 0o644)
	secret := filepath.Join(dir, "secret")
	os.WriteFile(secret, []byte(prov.ClientSecret), 0o600)
	httpPort, httpsPort := testenv.FreePort(t), testenv.FreePort(t)
	pebble := testacme.Start(t, httpPort, 0, testacme.StartDNS(t))

	srv := testenv.StartServer(t, testenv.WithArgs(
		"--domain", "cloud.test",
		"--ingress-http", "127.0.0.1:"+strconv.Itoa(httpPort), "--ingress-https", "127.0.0.1:"+strconv.Itoa(httpsPort),
		"--oidc-issuer", prov.Issuer, "--oidc-client-id", prov.ClientID, "--oidc-client-secret-file", secret, "--oidc-ca-bundle", provCA,
		"--acme-directory", pebble.Directory, "--acme-email", "ops@example.com", "--acme-ca-bundle", pebble.CAFile,
	))
	c := &cloud{t: t, srv: srv, host: srv.Host()}
	c.must("load", "-i", testimages.Busybox(t))

	r := c.docker("run", "-d", "--name", "open-by-mistake", "-l", "kr.ingress.8080=https://app.*", "-l", "kr.ingress.auth=oidc", "busybox", "true")
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, "kr.ingress.auth.allow") {
		c.docker("rm", "-f", "open-by-mistake")
		t.Fatalf("oidc without allow list accepted: exit %d %s", r.ExitCode, r.Stderr)
	}
	// The backend prints the identity the ingress passes (busybox httpd, CGI).
	c.must("run", "-d", "--name", "app",
		"-l", "kr.ingress.8080=https://app.*", "-l", "kr.ingress.auth=oidc", "-l", "kr.ingress.auth.allow=*@example.com",
		"busybox", "sh", "-c", `mkdir -p /www/cgi-bin && printf '#!/bin/sh\necho Content-Type: text/plain\necho\necho "user=$HTTP_X_MACRO_USER"\n' > /www/cgi-bin/who && chmod +x /www/cgi-bin/who && exec httpd -f -p 8080 -h /www`)
	defer c.docker("rm", "-f", "app")

	const host = "app.default.cloud.test"
	roots := pebble.Root(t)
	roots.AddCert(prov.Server.Certificate())
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if h, _, _ := net.SplitHostPort(addr); h == host {
			addr = "127.0.0.1:" + strconv.Itoa(httpsPort)
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Transport: &http.Transport{DialContext: dial, TLSClientConfig: &tls.Config{RootCAs: roots}}}
	api := &http.Client{Transport: &http.Transport{DialContext: dial, TLSClientConfig: &tls.Config{RootCAs: roots}}}
	u := "https://" + host + "/cgi-bin/who"

	// Once the ingress has the route, the handshake asks pebble for a
	// certificate; the client verifies it against pebble's root only.
	var resp *http.Response
	eventually(t, "the route, with a certificate from pebble", func() bool {
		var err error
		resp, err = api.Get(u)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	})
	leaf := resp.TLS.PeerCertificates[0]
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: host, Intermediates: pool(resp.TLS.PeerCertificates[1:])}); err != nil {
		t.Fatalf("certificate: %v", err)
	}
	if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "OIDC") {
		t.Fatalf("API client without a session: %d %v", resp.StatusCode, resp.Header)
	}
	// The account and the certificate are the cluster's, sealed in the
	// store (ingress.State; TestIngressStateSealed, TestACMEWithPebble):
	// nothing of them in this server's data dir.
	if _, err := os.Stat(filepath.Join(srv.DataDir, "ingress", "acme")); err == nil {
		t.Fatal("ACME state in the data dir, not in the store")
	}

	prov.SignIn(testoidc.User{Subject: "u1", Email: "alice@example.com", EmailVerified: true})
	req, _ := http.NewRequest("GET", u, nil)
	req.Header.Set("Accept", "text/html")
	req.Header.Set("X-Macro-User", "root@example.com")
	resp, err := browser.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// The provider sends the browser back to the ingress's own port.
	if end := resp.Request.URL; prov.Authorizations() != 1 || end.Hostname() != host || end.Path != "/cgi-bin/who" {
		t.Fatalf("login: %d authorizations, ended at %s (%d %s)", prov.Authorizations(), resp.Request.URL, resp.StatusCode, body)
	}
	// Past authentication the request reaches the pod, or, where pods have
	// no address yet (no VPC on this node), the ingress says no backend is up.
	switch {
	case resp.StatusCode == 200 && strings.TrimSpace(string(body)) == "user=alice@example.com":
	case resp.StatusCode == 502 && strings.Contains(string(body), "No backend of "+host):
		t.Logf("the pod has no address on this node: authentication passed, no backend reached")
	default:
		t.Fatalf("after login: %d %s", resp.StatusCode, body)
	}
}

func pool(certs []*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}
