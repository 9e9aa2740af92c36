package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/macro-cloud/macro/internal/testenv"
	"github.com/macro-cloud/macro/internal/testimages"
)

// revokedMsg is what the docker CLI prints with a revoked certificate.
const revokedMsg = "Error response from daemon: this client certificate has been revoked (its access token was revoked or its tenant removed)"

// TestTokenRevokeRevokesCerts: revoking a token revokes the client
// certificates issued with it, on connections already open too; the
// tenant's other tokens and their certificates go on working.
func TestTokenRevokeRevokesCerts(t *testing.T) {
	c := newTenantCloud(t)
	token1, dir1 := c.newTenant("revoke-me")
	token2 := strings.TrimSpace(c.mustAdmin("token", "create", "--tenant", "revoke-me"))
	dir2, status, msg := c.certs(token2)
	if dir2 == "" {
		t.Fatalf("certs with the second token: %d %s", status, msg)
	}
	dir1b, _, _ := c.certs(token1) // two certificates for one token
	for _, d := range []string{dir1, dir1b, dir2} {
		c.mustDocker(d, "ps")
	}
	// A connection opened before the revocation (docker events streams).
	pool := c.http.Transport.(*http.Transport).TLSClientConfig.RootCAs
	open := &http.Client{Transport: &http.Transport{TLSClientConfig: certTLS(t, pool, dir1)}}
	get := func() int {
		resp, err := open.Get("https://" + c.addr + "/v1.50/containers/json")
		if err != nil {
			t.Fatalf("GET /containers/json: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := get(); st != http.StatusOK {
		t.Fatalf("before the revocation: %d", st)
	}

	c.mustAdmin("token", "revoke", "--tenant", "revoke-me", token1[3:19])
	for _, d := range []string{dir1, dir1b} {
		r := c.docker(d, "ps")
		if r.ExitCode == 0 || !strings.Contains(r.Stderr, revokedMsg) {
			t.Errorf("docker ps with a certificate of the revoked token: exit %d\n%s", r.ExitCode, r.Combined())
		}
	}
	if st := get(); st != http.StatusUnauthorized {
		t.Errorf("a connection opened before the revocation: %d, want 401", st)
	}
	c.mustDocker(dir2, "ps")
	if d, status, _ := c.certs(token1); d != "" || status != http.StatusUnauthorized {
		t.Errorf("certs with the revoked token: %q %d", d, status)
	}

	// After a restart the list is read from the store.
	c.srv.Stop()
	c.srv.Start()
	if r := c.docker(dir1, "ps"); r.ExitCode == 0 || !strings.Contains(r.Stderr, revokedMsg) {
		t.Errorf("after a restart, docker ps with a revoked certificate: exit %d\n%s", r.ExitCode, r.Combined())
	}
	c.mustDocker(dir2, "ps")
}

// TestTenantRemove: macro admin tenant rm refuses a tenant with containers
// unless --force, which stops and removes them; the tenant's tokens,
// certificates, namespaces and images go, and nothing of it is reachable
// afterwards, not even by a new tenant of the same name. Layers another
// tenant shares stay.
func TestTenantRemove(t *testing.T) {
	c := newTenantCloud(t)
	tokenA, dirA := c.newTenant("doomed")
	_, dirB := c.newTenant("survivor")
	busybox := testimages.Busybox(t)
	c.mustDocker(dirA, "load", "-i", busybox)
	c.mustDocker(dirB, "load", "-i", busybox)
	c.mustDocker(dirA, "tag", "busybox:latest", "doomed-img:1")
	c.mustDocker(dirA, "run", "-d", "--name", "doomed-run", "busybox", "sleep", "300")
	c.mustDocker(dirA, "create", "--name", "doomed-stopped", "busybox", "true")
	pid := c.mustDocker(dirA, "inspect", "--format", "{{.State.Pid}}", "doomed-run")
	req, _ := http.NewRequest(http.MethodPost, "https://"+c.addr+"/apis/macro/v1/namespaces", strings.NewReader(`{"name":"doomed-ns"}`))
	req.Header.Set("Authorization", "Bearer "+tokenA)
	if resp, err := c.http.Do(req); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("namespace create: %v %v", resp, err)
	}
	// Registry credentials bought before the removal.
	regRef, _ := name.ParseReference(c.addr + "/doomed-img:1")
	bearer := registryToken(t, c, tokenA)

	_, errOut, err := c.admin("tenant", "rm", "doomed")
	if err == nil || !strings.Contains(errOut, `tenant "doomed" has 2 pods: remove them first, or use --force`) {
		t.Errorf("tenant rm with pods: %v %q", err, errOut)
	}
	c.mustDocker(dirA, "ps") // still there, still usable

	out := c.mustAdmin("tenant", "rm", "doomed", "--force")
	if !strings.Contains(out, `tenant "doomed" removed: 2 pods, 1 token, 1 certificate revoked, 1 image`) {
		t.Errorf("tenant rm --force: %q", out)
	}
	if strings.Contains(c.mustAdmin("tenant", "ls"), "doomed") {
		t.Errorf("tenant ls still shows the removed tenant")
	}
	if _, err := os.Stat("/proc/" + pid); err == nil {
		if b, _ := os.ReadFile("/proc/" + pid + "/cmdline"); strings.Contains(string(b), "sleep") {
			t.Errorf("the tenant's container (pid %s) still runs", pid)
		}
	}

	// Nothing is reachable: certificate, token, registry token.
	if r := c.docker(dirA, "ps"); r.ExitCode == 0 || !strings.Contains(r.Stderr, revokedMsg) {
		t.Errorf("docker ps of a removed tenant: exit %d\n%s", r.ExitCode, r.Combined())
	}
	if d, status, _ := c.certs(tokenA); d != "" || status != http.StatusUnauthorized {
		t.Errorf("certs with the removed tenant's token: %q %d", d, status)
	}
	for what, auth := range map[string]remote.Option{
		"the tenant's token": remote.WithAuth(&authn.Basic{Username: "x", Password: tokenA}),
		"a registry token":   remote.WithAuth(&authn.Bearer{Token: bearer}),
	} {
		_, err := remote.Get(regRef, auth, remote.WithTransport(c.http.Transport))
		if err == nil || !strings.Contains(err.Error(), "UNAUTHORIZED") {
			t.Errorf("registry with %s of a removed tenant: %v", what, err)
		}
	}

	// A new tenant of the same name starts empty, and the old
	// certificate is not its.
	tokenA2, dirA2 := c.newTenant("doomed")
	if r := c.docker(dirA, "ps"); r.ExitCode == 0 || !strings.Contains(r.Stderr, revokedMsg) {
		t.Errorf("the old certificate with a new tenant of its name: exit %d\n%s", r.ExitCode, r.Combined())
	}
	if out := c.mustDocker(dirA2, "ps", "-aq"); out != "" {
		t.Errorf("containers of the new tenant: %q", out)
	}
	if out := c.mustDocker(dirA2, "images", "-q"); out != "" {
		t.Errorf("images of the new tenant: %q", out)
	}
	req, _ = http.NewRequest(http.MethodGet, "https://"+c.addr+"/apis/macro/v1/namespaces/doomed-ns", nil)
	req.Header.Set("Authorization", "Bearer "+tokenA2)
	if resp, err := c.http.Do(req); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("the old tenant's namespace for the new one: %v %v", resp, err)
	}
	// The other tenant's image, with the same layers, still runs.
	c.mustDocker(dirB, "run", "--rm", "busybox", "true")

	// A tenant without pods goes without --force; an unknown one is 404.
	c.mustAdmin("tenant", "rm", "doomed")
	if _, errOut, err := c.admin("tenant", "rm", "doomed"); err == nil || !strings.Contains(errOut, `tenant "doomed" not found`) {
		t.Errorf("tenant rm of an unknown tenant: %v %q", err, errOut)
	}
}

// registryToken buys a bearer token of the registry with an access token,
// as docker does after a 401.
func registryToken(t *testing.T, c *tenantCloud, token string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "https://"+c.addr+"/v2/token?service=macro", nil)
	req.SetBasicAuth("x", token)
	resp, err := c.http.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v2/token: %v %v", resp, err)
	}
	defer resp.Body.Close()
	var body struct{ Token string }
	if err := jsonDecode(resp, &body); err != nil || body.Token == "" {
		t.Fatalf("GET /v2/token: %v", err)
	}
	return body.Token
}

// TestDockerLogin: docker login to the cloud's own registry with a
// tenant's token as the password, through the tenant's docker context
// (the Docker API's /auth) and with no daemon at all (the CLI logs in by
// itself, trusting the cluster CA from certs.d), and docker push after it.
func TestDockerLogin(t *testing.T) {
	c := newTenantCloud(t)
	token, dir := c.newTenant("login-a")
	otherToken, _ := c.newTenant("login-b")
	login := func(stdin string, args ...string) testenv.Result {
		return testenv.RunDocker(t, testenv.DockerCmd{
			Host: "tcp://" + c.addr, Env: []string{"DOCKER_TLS_VERIFY=1", "DOCKER_CERT_PATH=" + dir},
			Args: append([]string{"login"}, args...), Stdin: stdin, Timeout: time.Minute,
		})
	}
	r := login(token, c.addr, "-u", "anyone", "--password-stdin")
	if r.ExitCode != 0 || !strings.Contains(r.Stdout, "Login Succeeded") {
		t.Errorf("docker login through the context: exit %d\n%s", r.ExitCode, r.Combined())
	}
	for what, pw := range map[string]string{"another tenant's token": otherToken, "no token": "hunter2"} {
		r := login(pw, c.addr, "-u", "anyone", "--password-stdin")
		if r.ExitCode == 0 || !strings.Contains(r.Stderr, "unauthorized: the password is not a valid access token of your tenant") {
			t.Errorf("docker login with %s: exit %d\n%s", what, r.ExitCode, r.Combined())
		}
	}
	// docker push to the registry it logged in to.
	c.mustDocker(dir, "load", "-i", testimages.Busybox(t))
	c.mustDocker(dir, "tag", "busybox:latest", c.addr+"/mine:1")
	if out := c.mustDocker(dir, "push", c.addr+"/mine:1"); !strings.Contains(out, "digest: sha256:") {
		t.Errorf("docker push: %s", out)
	}

	// No daemon: the CLI logs in by itself, over the registry's token
	// flow; it trusts the CA from /etc/docker/certs.d/HOST:PORT.
	certsD := filepath.Join("/etc/docker/certs.d", c.addr)
	if _, err := os.Stat(certsD); err == nil {
		t.Fatalf("%s exists already", certsD)
	}
	// Remove what the test makes, parents included when it made them,
	// deepest first.
	made := []string{filepath.Join(certsD, "ca.crt")}
	for d := certsD; d != "/etc"; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		}
		made = append(made, d)
	}
	t.Cleanup(func() {
		for _, p := range made {
			if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
				t.Errorf("cleanup: %v", err)
			}
		}
	})
	if err := os.MkdirAll(certsD, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(certsD, "ca.crt"), c.caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	noDaemon := func(pw string) testenv.Result {
		return testenv.RunDocker(t, testenv.DockerCmd{Host: "unix://" + filepath.Join(t.TempDir(), "none.sock"),
			Args: []string{"login", c.addr, "-u", "anyone", "--password-stdin"}, Stdin: pw, Timeout: time.Minute})
	}
	if r := noDaemon(token); r.ExitCode != 0 || !strings.Contains(r.Stdout, "Login Succeeded") {
		t.Errorf("docker login without a daemon: exit %d\n%s", r.ExitCode, r.Combined())
	}
	if r := noDaemon("kr_0000000000000000_" + strings.Repeat("0", 64)); r.ExitCode == 0 {
		t.Errorf("docker login without a daemon, with a wrong token: exit %d\n%s", r.ExitCode, r.Combined())
	}
}

func jsonDecode(resp *http.Response, v any) error { return json.NewDecoder(resp.Body).Decode(v) }
