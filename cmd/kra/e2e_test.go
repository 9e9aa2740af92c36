package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/macro-cloud/macro/internal/testenv"
	"github.com/macro-cloud/macro/internal/testimages"
)

// serverHasTenancy reports whether the macro binary has the server side of
// kra (macro admin, --api-addr), and why not.
func serverHasTenancy(t *testing.T, macro string) (bool, string) {
	out, _ := exec.Command(macro, "server", "--help").CombinedOutput()
	if !strings.Contains(string(out), "api-addr") {
		return false, "macro server has no --api-addr flag yet"
	}
	out, err := exec.Command(macro, "admin", "--help").CombinedOutput()
	if err != nil && strings.Contains(string(out), "unknown command") {
		return false, "macro has no admin command yet"
	}
	return true, ""
}

// kraRun runs the kra binary with env on top of a clean environment.
func kraRun(t *testing.T, kra string, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(kra, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "TZ=UTC"}, env...)
	out, err := cmd.CombinedOutput()
	logged := string(out)
	if len(logged) > 2000 {
		logged = logged[:2000] + "\n[...]"
	}
	t.Logf("kra %s\n%s", strings.Join(args, " "), logged)
	return string(out), err
}

func mustKra(t *testing.T, kra string, env []string, args ...string) string {
	t.Helper()
	out, err := kraRun(t, kra, env, args...)
	if err != nil {
		t.Fatalf("kra %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// macroAdmin runs `macro admin ARGS --data-dir DIR`.
func macroAdmin(t *testing.T, macro, dataDir string, args ...string) string {
	t.Helper()
	cmd := exec.Command(macro, append(append([]string{"admin"}, args...), "--data-dir", dataDir)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("macro admin %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

// TestEndToEnd drives kra against a real macro server: a tenant and its
// token from macro admin, kra login (pinning the server's CA on first use),
// kra setup docker, and the real docker CLI through the context it made.
func TestEndToEnd(t *testing.T) {
	macro := testenv.Macro(t) // skips without root
	if ok, why := serverHasTenancy(t, macro); !ok {
		t.Skipf("the server side of issue 3 has not landed: %s", why)
	}
	kra := testenv.Kra(t)
	port := testenv.FreePort(t)
	dns := testenv.StartDNS(t)
	srv := testenv.StartServer(t, testenv.WithArgs("--api-addr", "127.0.0.1:"+strconv.Itoa(port), "--domain", "cloud.test", "--domain-resolver", dns.Addr))

	macroAdmin(t, macro, srv.DataDir, "tenant", "create", "alice")
	token := lastField(macroAdmin(t, macro, srv.DataDir, "token", "create", "--tenant", "alice"))

	home := t.TempDir()
	dockerConfig := filepath.Join(home, "docker")
	host := "https://127.0.0.1:" + strconv.Itoa(port)
	env := []string{"HOME=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, "config"), "DOCKER_CONFIG=" + dockerConfig, "KR_HOST=" + host}

	// Before login: readable errors.
	if out, err := kraRun(t, kra, env, "ns", "ls"); err == nil || !strings.Contains(out, "not logged in") {
		t.Errorf("kra ns ls before login: %v\n%s", err, out)
	}
	if out, err := kraRun(t, kra, env, "login", "not-a-token"); err == nil || !strings.Contains(out, "presents a certificate that is not trusted") {
		t.Errorf("kra login without trusting the CA: %v\n%s", err, out)
	}
	if out, err := kraRun(t, kra, env, "login", "--insecure-skip-verify", "not-a-token"); err == nil || !strings.Contains(out, "revoked or mistyped") {
		t.Errorf("kra login with a wrong token: %v\n%s", err, out)
	}

	out := mustKra(t, kra, env, "login", "--insecure-skip-verify", token)
	if !strings.Contains(out, "SHA-256 fingerprint") || !strings.Contains(out, "as tenant alice") {
		t.Errorf("kra login: %s", out)
	}
	mustKra(t, kra, env, "ns", "ls")
	out = mustKra(t, kra, env, "setup", "docker")
	name := contextFrom(t, out)

	docker := func(args ...string) testenv.Result {
		return testenv.RunDocker(t, testenv.DockerCmd{Env: []string{"DOCKER_CONFIG=" + dockerConfig}, Args: args, Timeout: time.Minute})
	}
	if r := docker("--context", name, "ps"); r.ExitCode != 0 || !strings.HasPrefix(r.Stdout, "CONTAINER ID") {
		t.Fatalf("docker --context %s ps: exit %d\n%s", name, r.ExitCode, r.Combined())
	}
	mustDocker := func(args ...string) string {
		t.Helper()
		r := docker(args...)
		if r.ExitCode != 0 {
			t.Fatalf("docker %s: exit %d\n%s", strings.Join(args, " "), r.ExitCode, r.Combined())
		}
		return r.Stdout
	}
	mustDocker("--context", name, "load", "-i", testimages.Busybox(t))
	mustDocker("--context", name, "run", "-d", "--name", "hello", "busybox:latest", "sh", "-c", "echo hello from macro; exec sleep 300")

	if out := mustKra(t, kra, env, "images", "ls"); !strings.Contains(out, "busybox") {
		t.Errorf("kra images ls does not show the loaded image:\n%s", out)
	}
	if out := mustKra(t, kra, env, "ps"); !strings.Contains(out, "hello") {
		t.Errorf("kra ps does not show the pod docker ran:\n%s", out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		out := mustKra(t, kra, env, "pods", "logs", "hello")
		if strings.Contains(out, "hello from macro") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("kra pods logs hello: %q", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if out := mustKra(t, kra, env, "pods", "inspect", "hello"); !strings.Contains(out, `"Name": "/hello"`) {
		t.Errorf("kra pods inspect hello:\n%s", out)
	}
	if out, err := kraRun(t, kra, env, "pods", "logs", "nope"); err == nil || !strings.Contains(out, "No such container: nope") {
		t.Errorf("kra pods logs nope: %v\n%s", err, out)
	}

	// Ingress labels show in kra in ig ls, with what is wrong with them.
	mustDocker("--context", name, "run", "-d", "--name", "web", "-l", "kr.ingress.80=https://app.*", "busybox:latest", "sleep", "300")
	mustDocker("--context", name, "run", "-d", "--name", "thief", "-l", "kr.ingress.80=https://www.bob.cloud.test", "busybox:latest", "sleep", "300")
	out = mustKra(t, kra, env, "in", "ig", "ls")
	if !strings.Contains(out, "https://app.alice.cloud.test") || !strings.Contains(out, "default/web:80") ||
		!strings.Contains(out, "default/thief") || !strings.Contains(out, "under alice.cloud.test only") {
		t.Errorf("kra in ig ls:\n%s", out)
	}
	if out := mustKra(t, kra, env, "ingress", "ls", "-o", "json"); !strings.Contains(out, `"url": "https://app.alice.cloud.test"`) {
		t.Errorf("kra ingress ls -o json:\n%s", out)
	}
	if r := docker("--context", name, "run", "-d", "-l", "kr.ingress.80=ftp://x", "busybox:latest", "true"); r.ExitCode == 0 || !strings.Contains(r.Stderr, "scheme must be https or http") {
		t.Errorf("a bad ingress label: exit %d\n%s", r.ExitCode, r.Combined())
	}

	// A custom domain: claimed, proven by a TXT record, then it routes.
	mustDocker("--context", name, "run", "-d", "--name", "shop", "-l", "kr.ingress.80=https://www.shop.example", "busybox:latest", "sleep", "300")
	out = mustKra(t, kra, env, "domains", "add", "shop.example")
	record := ""
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "_macro-challenge.shop.example. TXT ") {
			record = strings.Trim(strings.Fields(line)[2], `"`)
		}
	}
	if record == "" {
		t.Fatalf("kra domains add printed no record:\n%s", out)
	}
	if out, err := kraRun(t, kra, env, "domains", "verify", "shop.example"); err == nil || !strings.Contains(out, "has TXT records none") {
		t.Errorf("verify before publishing: %v\n%s", err, out)
	}
	if out := mustKra(t, kra, env, "in", "ig", "ls"); !strings.Contains(out, "not a verified domain") {
		t.Errorf("a pending domain routes:\n%s", out)
	}
	dns.SetTXT("_macro-challenge.shop.example", record)
	mustKra(t, kra, env, "domains", "verify", "shop.example")
	if out := mustKra(t, kra, env, "domains", "ls"); !strings.Contains(out, "verified") {
		t.Errorf("kra domains ls:\n%s", out)
	}
	if out := mustKra(t, kra, env, "in", "ig", "ls"); !strings.Contains(out, "https://www.shop.example") {
		t.Errorf("a verified domain does not route:\n%s", out)
	}

	// Another tenant sees none of it, through kra or its own context.
	macroAdmin(t, macro, srv.DataDir, "tenant", "create", "bob")
	bobToken := lastField(macroAdmin(t, macro, srv.DataDir, "token", "create", "--tenant", "bob"))
	bobEnv := append(append([]string{}, env...), "KR_ACCESS_TOKEN="+bobToken)
	bobCtx := contextFrom(t, mustKra(t, kra, bobEnv, "setup", "docker"))
	if bobCtx == name {
		t.Errorf("both tenants got context %q", name)
	}
	t.Run("OtherTenant", func(t *testing.T) {
		if out := mustDocker("--context", bobCtx, "ps", "-a", "--format", "{{.Names}}"); strings.TrimSpace(out) != "" {
			t.Errorf("docker --context %s ps -a shows alice's pods: %q", bobCtx, out)
		}
		if out := mustKra(t, kra, bobEnv, "ps", "-a"); strings.Contains(out, "hello") {
			t.Errorf("bob's kra ps shows alice's pod:\n%s", out)
		}
		if out, err := kraRun(t, kra, bobEnv, "pods", "logs", "hello"); err == nil || !strings.Contains(out, "No such container: hello") {
			t.Errorf("bob's kra pods logs hello: %v\n%s", err, out)
		}
		if out := mustKra(t, kra, bobEnv, "ingress", "ls"); strings.Contains(out, "alice") || strings.Contains(out, "web") {
			t.Errorf("bob's kra ingress ls shows alice's routes:\n%s", out)
		}
		if out, err := kraRun(t, kra, bobEnv, "domains", "add", "shop.example"); err == nil || !strings.Contains(out, "held by another tenant") {
			t.Errorf("bob claims alice's domain: %v\n%s", err, out)
		}
		if out, err := kraRun(t, kra, bobEnv, "domains", "rm", "shop.example"); err == nil || !strings.Contains(out, "not found") {
			t.Errorf("bob removes alice's domain: %v\n%s", err, out)
		}
	})

	// A revoked token is refused, with kra's message.
	id := strings.Split(bobToken, "_")[1]
	macroAdmin(t, macro, srv.DataDir, "token", "revoke", "--tenant", "bob", id)
	if out, err := kraRun(t, kra, bobEnv, "ns", "ls"); err == nil || !strings.Contains(out, "the token was refused by "+host+": revoked or mistyped") {
		t.Errorf("kra ns ls with a revoked token: %v\n%s", err, out)
	}

	// Logged out: the token is gone; KR_ACCESS_TOKEN still works.
	mustKra(t, kra, env, "logout")
	if out, err := kraRun(t, kra, env, "ps"); err == nil || !strings.Contains(out, "not logged in") {
		t.Errorf("kra ps after logout: %v\n%s", err, out)
	}
	mustKra(t, kra, append(env, "KR_ACCESS_TOKEN="+token), "ps", "-a")
}

// lastField returns the last whitespace-separated field of out: macro admin
// token create prints the token last.
func lastField(out string) string {
	f := strings.Fields(out)
	if len(f) == 0 {
		return ""
	}
	return f[len(f)-1]
}

// contextFrom reads the context's name from kra setup docker's output.
func contextFrom(t *testing.T, out string) string {
	t.Helper()
	_, rest, ok := strings.Cut(out, `Docker context "`)
	name, _, ok2 := strings.Cut(rest, `"`)
	if !ok || !ok2 {
		t.Fatalf("no context name in %q", out)
	}
	return name
}
