package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/macro-cloud/macro/auth"
	"github.com/macro-cloud/macro/client"
	"github.com/macro-cloud/macro/client/compose"
	"github.com/macro-cloud/macro/internal/testenv"
	"github.com/macro-cloud/macro/internal/testimages"
)

// TestKraUpReferenceDockerd deploys through the reference dockerd (Debian's
// docker.io 20.10) what kra up sends, to check the requests against the real
// Docker Engine where macro's server side is still missing: named volumes,
// a local directory uploaded into a volume through a created (never
// started) helper container and PUT /archive, then down -v. The client
// reaches dockerd through a TLS proxy that stands in for macro's API port
// and speaks dockerd's API version (1.41). Networks stay out: dockerd would
// make a bridge on the host.
func TestKraUpReferenceDockerd(t *testing.T) {
	d := testenv.StartDockerd(t)
	if r := testenv.Docker(t, d.Host(), "load", "-i", testimages.Busybox(t)); r.ExitCode != 0 {
		t.Fatalf("docker load: %s", r.Combined())
	}
	c := dockerdClient(t, d)

	dir := filepath.Join(t.TempDir(), "ref")
	writeFiles(t, dir, map[string]string{
		"compose.yaml": `
services:
  web:
    image: busybox:latest
    network_mode: none
    init: true
    command: ["sh", "-c", "cat /etc/site/site.conf; echo data > /data/x; exec sleep 300"]
    volumes:
      - ./conf:/etc/site:ro
      - data:/data
    healthcheck:
      test: ["CMD", "test", "-f", "/data/x"]
      interval: 1s
    depends_on:
      init:
        condition: service_completed_successfully
  init:
    image: busybox:latest
    network_mode: none
    command: ["ls", "/etc/site"]
    volumes:
      - ./conf:/etc/site:ro
  after:
    image: busybox:latest
    network_mode: none
    command: ["sleep", "300"]
    init: true
    depends_on:
      web:
        condition: service_healthy
volumes:
  data:
`,
		"conf/site.conf": "listen=8080\n",
	})
	p, err := compose.Load(context.Background(), compose.LoadOptions{WorkDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	dep := &compose.Deployer{Engine: c, Out: &out}
	if err := dep.Up(context.Background(), p); err != nil {
		t.Fatalf("up against dockerd: %v\n%s", err, out.String())
	}
	t.Logf("up:\n%s", out.String())
	for _, want := range []string{"Volume ref_data  Created", "Files ./conf/  Uploaded to volume ref_kra-files-", "Container ref-init-1  Exited", "Container ref-web-1  Healthy", "Container ref-after-1  Started"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("up does not say %q", want)
		}
	}
	eventually(t, "the uploaded file in web's output", func() bool {
		return strings.Contains(testenv.Docker(t, d.Host(), "logs", "ref-web-1").Stdout, "listen=8080")
	})
	if s := testenv.Docker(t, d.Host(), "logs", "ref-init-1").Stdout; s != "site.conf\n" {
		t.Errorf("init saw %q in the upload's volume", s)
	}
	if s := testenv.Docker(t, d.Host(), "ps", "-a", "--format", "{{.Names}}").Stdout; strings.Contains(s, "kra-upload") {
		t.Errorf("an upload helper is left: %q", s)
	}

	out.Reset()
	if err := dep.Up(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "Files ./conf/  Unchanged") || !strings.Contains(out.String(), "Container ref-web-1  Running") {
		t.Errorf("second up:\n%s", out.String())
	}

	out.Reset()
	if err := dep.Down(context.Background(), "ref", compose.DownOptions{Volumes: true, Project: p}); err != nil {
		t.Fatal(err)
	}
	if s := testenv.Docker(t, d.Host(), "ps", "-aq").Stdout; strings.TrimSpace(s) != "" {
		t.Errorf("containers left: %q", s)
	}
	if s := testenv.Docker(t, d.Host(), "volume", "ls", "-q").Stdout; strings.TrimSpace(s) != "" {
		t.Errorf("volumes left: %q", s)
	}
}

var apiVersionRE = regexp.MustCompile(`^/v1\.[0-9]+/`)

// dockerdClient is kra's client of the Docker API, pointed at a TLS proxy
// in front of d that requires a client certificate, as macro's API port.
func dockerdClient(t *testing.T, d *testenv.Dockerd) *client.Client {
	ca, _, err := auth.LoadOrCreateCA(t.TempDir(), "reference")
	if err != nil {
		t.Fatal(err)
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(&url.URL{Scheme: "http", Host: "docker"})
			r.Out.URL.Path = apiVersionRE.ReplaceAllString(r.In.URL.Path, "/v1.41/")
			r.Out.URL.RawPath = ""
		},
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", d.Socket)
		}},
	}
	srv := httptest.NewUnstartedServer(proxy)
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	issued, err := ca.IssueClient("alice", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(issued.CertPEM, issued.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	c, err := client.New(srv.URL, client.Options{RootCAs: pool, ClientCert: &cert})
	if err != nil {
		t.Fatal(err)
	}
	return c
}
