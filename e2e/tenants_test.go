package e2e

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/macro-cloud/macro/auth"
	"github.com/macro-cloud/macro/internal/testenv"
)

// tenantCloud is a macro server with its tenant-facing API port.
type tenantCloud struct {
	t     *testing.T
	macro string
	srv   *testenv.Server
	addr  string // 127.0.0.1:PORT of the API port
	caPEM []byte
	http  *http.Client // trusts the cluster CA, no client certificate
}

func newTenantCloud(t *testing.T) *tenantCloud {
	macro := testenv.Macro(t) // skips without root
	port := testenv.FreePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	srv := testenv.StartServer(t, testenv.WithArgs("--api-addr", addr))
	return newTenantCloudOn(t, macro, srv, addr)
}

// newTenantCloudOn is a tenantCloud over a server started already with
// --api-addr addr.
func newTenantCloudOn(t *testing.T, macro string, srv *testenv.Server, addr string) *tenantCloud {
	caPEM, err := os.ReadFile(filepath.Join(srv.DataDir, "ca", auth.CACertFile))
	if err != nil {
		t.Fatalf("the cluster CA: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	c := &tenantCloud{t: t, macro: macro, srv: srv, addr: addr, caPEM: caPEM,
		http: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}}
	return c
}

// admin runs `macro admin ARGS --data-dir DIR` and returns its standard
// output, standard error and whether it succeeded.
func (c *tenantCloud) admin(args ...string) (stdout, stderr string, err error) {
	cmd := exec.Command(c.macro, append(append([]string{"admin"}, args...), "--data-dir", c.srv.DataDir)...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	c.t.Logf("macro admin %s: %v\n%s%s", strings.Join(args, " "), err, o.String(), e.String())
	return o.String(), e.String(), err
}

func (c *tenantCloud) mustAdmin(args ...string) string {
	c.t.Helper()
	out, errOut, err := c.admin(args...)
	if err != nil {
		c.t.Fatalf("macro admin %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// certs asks POST /apis/macro/v1/certs with token and writes ca.pem,
// cert.pem and key.pem to a new directory, as DOCKER_CERT_PATH wants them.
// It returns the directory, or "" and the status and message of a refusal.
func (c *tenantCloud) certs(token string) (dir string, status int, msg string) {
	c.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "https://"+c.addr+"/apis/macro/v1/certs", strings.NewReader("{}"))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("POST /certs: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		var m struct{ Message string }
		json.Unmarshal(b, &m)
		return "", resp.StatusCode, m.Message
	}
	var certs struct{ CA, Cert, Key, Tenant string }
	if err := json.Unmarshal(b, &certs); err != nil {
		c.t.Fatalf("POST /certs: %v\n%s", err, b)
	}
	dir = c.t.TempDir()
	for name, data := range map[string]string{"ca.pem": certs.CA, "cert.pem": certs.Cert, "key.pem": certs.Key} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			c.t.Fatal(err)
		}
	}
	return dir, resp.StatusCode, ""
}

// docker runs the docker CLI against the API port over TLS with the files
// in certDir.
func (c *tenantCloud) docker(certDir string, args ...string) testenv.Result {
	c.t.Helper()
	return testenv.RunDocker(c.t, testenv.DockerCmd{
		Host: "tcp://" + c.addr,
		Env:  []string{"DOCKER_TLS_VERIFY=1", "DOCKER_CERT_PATH=" + certDir},
		Args: args, Timeout: time.Minute,
	})
}

var tokenRE = regexp.MustCompile(`kr_[0-9a-f]{16}_[0-9a-f]{64}`)

// TestTenants drives tenancy as an admin and two tenants would: macro admin
// makes tenants and tokens, each tenant gets client certificates with its
// token, and the real docker CLI talks to the API port over mutual TLS.
// That tenant B sees none of tenant A's objects is the isolation sweep's
// job (isolation_test.go).
func TestTenants(t *testing.T) {
	c := newTenantCloud(t)

	// First start: tenant default and its token, printed and kept 0600.
	first, err := os.ReadFile(filepath.Join(c.srv.DataDir, "first-token"))
	if err != nil {
		t.Fatalf("first-token: %v", err)
	}
	firstToken := strings.TrimSpace(string(first))
	if !tokenRE.MatchString(firstToken) {
		t.Errorf("first-token holds %q", firstToken)
	}
	// The server prints it once it serves: the log may not have it yet
	// when the first ping answers.
	eventually(t, "the first token in the server's log", func() bool {
		log := c.srv.Log()
		return strings.Contains(log, `first tenant "default" created; token: `+firstToken) && strings.Contains(log, "next: kra login")
	})
	for name, want := range map[string]os.FileMode{"first-token": 0o600, "admin.sock": 0o600, "ca/" + auth.CAKeyFile: 0o600} {
		if fi, err := os.Stat(filepath.Join(c.srv.DataDir, name)); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v, want mode %v", name, err, want)
		}
	}

	// Tenants and tokens with macro admin.
	for _, name := range []string{"alice", "bob"} {
		if out := c.mustAdmin("tenant", "create", name); !strings.Contains(out, name) {
			t.Errorf("tenant create %s: %q", name, out)
		}
	}
	if _, errOut, err := c.admin("tenant", "create", "alice"); err == nil || !strings.Contains(errOut, "already exists") {
		t.Errorf("tenant create alice twice: %v %q", err, errOut)
	}
	if _, errOut, err := c.admin("tenant", "create", "Not_A_Name"); err == nil || !strings.Contains(errOut, "invalid tenant name") {
		t.Errorf("tenant create with a bad name: %v %q", err, errOut)
	}
	out := c.mustAdmin("tenant", "ls")
	for _, name := range []string{"alice", "bob", "default"} {
		if !strings.Contains(out, name) {
			t.Errorf("tenant ls does not show %s:\n%s", name, out)
		}
	}
	tokenA := strings.TrimSpace(c.mustAdmin("token", "create", "--tenant", "alice"))
	tokenB := strings.TrimSpace(c.mustAdmin("token", "create", "--tenant", "bob"))
	if !tokenRE.MatchString(tokenA) || !tokenRE.MatchString(tokenB) || tokenA == tokenB {
		t.Fatalf("tokens %q %q", tokenA, tokenB)
	}
	if _, errOut, err := c.admin("token", "create", "--tenant", "carol"); err == nil || !strings.Contains(errOut, `tenant "carol" not found`) {
		t.Errorf("token of an unknown tenant: %v %q", err, errOut)
	}
	if _, errOut, err := c.admin("token", "create"); err == nil || !strings.Contains(errOut, "--tenant NAME is required") {
		t.Errorf("token create without --tenant: %v %q", err, errOut)
	}

	// Client certificates for each tenant, and the docker CLI with them.
	dirA, status, msg := c.certs(tokenA)
	if dirA == "" {
		t.Fatalf("certs of alice: %d %s", status, msg)
	}
	dirB, status, msg := c.certs(tokenB)
	if dirB == "" {
		t.Fatalf("certs of bob: %d %s", status, msg)
	}
	for tenant, dir := range map[string]string{"alice": dirA, "bob": dirB} {
		r := c.docker(dir, "version", "--format", "{{.Server.Version}}")
		if r.ExitCode != 0 || strings.TrimSpace(r.Stdout) == "" {
			t.Errorf("docker version as %s: exit %d\n%s", tenant, r.ExitCode, r.Combined())
		}
		if r := c.docker(dir, "ps"); r.ExitCode != 0 || !strings.HasPrefix(r.Stdout, "CONTAINER ID") {
			t.Errorf("docker ps as %s: exit %d\n%s", tenant, r.ExitCode, r.Combined())
		}
	}

	// Without a client certificate: a clear refusal.
	noCert := t.TempDir()
	os.WriteFile(filepath.Join(noCert, "ca.pem"), c.caPEM, 0o644)
	r := c.docker(noCert, "ps")
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, "needs your tenant's client certificate") {
		t.Errorf("docker ps without a client certificate: exit %d\n%s", r.ExitCode, r.Combined())
	}
	// A certificate of another CA does not get through the handshake.
	otherCA, _, err := auth.LoadOrCreateCA(t.TempDir(), "elsewhere")
	if err != nil {
		t.Fatal(err)
	}
	forged, _ := otherCA.IssueClient("alice", time.Now())
	forgedDir := t.TempDir()
	os.WriteFile(filepath.Join(forgedDir, "ca.pem"), c.caPEM, 0o644)
	os.WriteFile(filepath.Join(forgedDir, "cert.pem"), forged.CertPEM, 0o644)
	os.WriteFile(filepath.Join(forgedDir, "key.pem"), forged.KeyPEM, 0o600)
	if r := c.docker(forgedDir, "ps"); r.ExitCode == 0 {
		t.Errorf("docker ps with another CA's certificate succeeded:\n%s", r.Combined())
	}

	// The machine's own socket keeps working without credentials.
	if r := testenv.Docker(t, c.srv.Host(), "version", "--format", "{{.Server.Version}}"); r.ExitCode != 0 {
		t.Errorf("docker version on the unix socket: exit %d\n%s", r.ExitCode, r.Combined())
	}

	// token ls shows the use; revoke ends the supply of certificates.
	out = c.mustAdmin("token", "ls", "--tenant", "alice")
	idA := tokenA[3:19]
	if !strings.Contains(out, idA) || strings.Contains(out, tokenA[20:]) || strings.Contains(out, "never") {
		t.Errorf("token ls --tenant alice after a use:\n%s", out)
	}
	if _, errOut, err := c.admin("token", "revoke", "--tenant", "bob", idA); err == nil || !strings.Contains(errOut, "has no token") {
		t.Errorf("revoke alice's token as bob's: %v %q", err, errOut)
	}
	c.mustAdmin("token", "revoke", "--tenant", "alice", idA)
	if out := c.mustAdmin("token", "ls", "--tenant", "alice"); strings.Contains(out, idA) {
		t.Errorf("revoked token still listed:\n%s", out)
	}
	if dir, status, msg := c.certs(tokenA); dir != "" || status != http.StatusUnauthorized || !strings.Contains(msg, "invalid or revoked token") {
		t.Errorf("certs with a revoked token: %q %d %q", dir, status, msg)
	}
	// Bob's token is not affected.
	if dir, status, msg := c.certs(tokenB); dir == "" {
		t.Errorf("certs of bob after alice's revocation: %d %s", status, msg)
	}
}

// TestAdminErrors checks what macro admin says when no server runs.
func TestAdminErrors(t *testing.T) {
	macro := testenv.Macro(t)
	dir := t.TempDir()
	out, err := exec.Command(macro, "admin", "--data-dir", dir, "tenant", "ls").CombinedOutput()
	want := "macro admin: cannot reach the server at " + filepath.Join(dir, "admin.sock") + ": is `macro server --data-dir " + dir + "` running?"
	if err == nil || !strings.Contains(string(out), want) {
		t.Errorf("macro admin without a server: %v\n%s\nwant %s", err, out, want)
	}
	out, err = exec.Command(macro, "admin", "--data-dir", dir, "tenant", "frobnicate").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), `unknown command "tenant frobnicate"`) {
		t.Errorf("macro admin with an unknown command: %v\n%s", err, out)
	}
}
