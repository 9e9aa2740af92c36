package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/macro-cloud/macro/internal/testenv"
	"github.com/macro-cloud/macro/internal/testimages"
)

// kraUp is a tenant of a macro server with kra logged in (by
// KR_ACCESS_TOKEN and KR_CA) and the docker CLI holding the tenant's
// client certificate, busybox loaded.
type kraUp struct {
	*tenantCloud
	kra     string
	env     []string
	certDir string
}

func newKraUp(t *testing.T) *kraUp {
	return kraUpOn(t, newTenantCloud(t))
}

// kraUpOn is newKraUp over a tenantCloud started already: tenant alice,
// her token, kra and docker set up for her.
func kraUpOn(t *testing.T, c *tenantCloud) *kraUp {
	c.mustAdmin("tenant", "create", "alice")
	token := strings.TrimSpace(c.mustAdmin("token", "create", "--tenant", "alice"))
	home := t.TempDir()
	ca := filepath.Join(home, "ca.pem")
	if err := os.WriteFile(ca, c.caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	certDir, status, msg := c.certs(token)
	if certDir == "" {
		t.Fatalf("certs: %d %s", status, msg)
	}
	k := &kraUp{tenantCloud: c, kra: testenv.Kra(t), certDir: certDir, env: []string{
		"PATH=" + os.Getenv("PATH"), "TZ=UTC", "HOME=" + home,
		"XDG_CONFIG_HOME=" + filepath.Join(home, "config"), "DOCKER_CONFIG=" + filepath.Join(home, "docker"),
		"KR_HOST=https://" + c.addr, "KR_CA=" + ca, "KR_ACCESS_TOKEN=" + token,
	}}
	if r := k.docker("load", "-i", testimages.Busybox(t)); r.ExitCode != 0 {
		t.Fatalf("docker load: %s", r.Combined())
	}
	return k
}

func (k *kraUp) docker(args ...string) testenv.Result {
	k.t.Helper()
	return k.tenantCloud.docker(k.certDir, args...)
}

func (k *kraUp) mustDocker(args ...string) string {
	k.t.Helper()
	r := k.docker(args...)
	if r.ExitCode != 0 {
		k.t.Fatalf("docker %s: exit %d\n%s", strings.Join(args, " "), r.ExitCode, r.Combined())
	}
	return r.Stdout
}

// run runs kra in dir.
func (k *kraUp) run(dir string, args ...string) (string, error) {
	k.t.Helper()
	cmd := exec.Command(k.kra, args...)
	cmd.Dir = dir
	cmd.Env = k.env
	out, err := cmd.CombinedOutput()
	k.t.Logf("kra %s: %v\n%s", strings.Join(args, " "), err, out)
	return string(out), err
}

func (k *kraUp) must(dir string, args ...string) string {
	k.t.Helper()
	out, err := k.run(dir, args...)
	if err != nil {
		k.t.Fatalf("kra %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// containers returns docker inspect of the namespace's containers by name.
func (k *kraUp) containers(ns string) map[string]map[string]any {
	k.t.Helper()
	ids := strings.Fields(k.mustDocker("ps", "-aq", "--filter", "label=com.docker.compose.project="+ns))
	out := map[string]map[string]any{}
	if len(ids) == 0 {
		return out
	}
	var list []map[string]any
	if err := json.Unmarshal([]byte(k.mustDocker(append([]string{"inspect"}, ids...)...)), &list); err != nil {
		k.t.Fatal(err)
	}
	for _, c := range list {
		out[strings.TrimPrefix(c["Name"].(string), "/")] = c
	}
	return out
}

func labelsOf(c map[string]any) map[string]any {
	return c["Config"].(map[string]any)["Labels"].(map[string]any)
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// kraupContainers is a project that needs neither networks nor volumes:
// every service has network_mode: none.
const kraupContainers = `
services:
  migrate:
    image: busybox:latest
    network_mode: none
    command: ["sh", "-c", "echo migrated"]
  db:
    image: busybox:latest
    network_mode: none
    command: ["sleep", "300"]
    init: true
    healthcheck:
      test: ["CMD", "true"]
      interval: 1s
      retries: 30
    depends_on:
      migrate:
        condition: service_completed_successfully
  web:
    image: busybox:latest
    network_mode: none
    entrypoint: ["sh", "-c"]
    command: ["echo \"$$GREETING from $$MODE\"; exec sleep 300"]
    init: true
    environment:
      GREETING: ${GREETING}
      MODE: ${MODE:-production}
    labels:
      kr.ingress.8080: https://web.example.com
    deploy:
      replicas: 2
      resources:
        limits:
          memory: 64M
    restart: unless-stopped
    stop_grace_period: 3s
    read_only: true
    tmpfs: [/tmp]
    working_dir: /tmp
    user: "1000"
    depends_on:
      db:
        condition: service_healthy
`

// TestKraUp deploys a compose file with kra up -d, looks at it with the
// docker CLI as docker compose would (its labels), redeploys it unchanged
// and changed, and removes it with kra down.
func TestKraUp(t *testing.T) {
	k := newKraUp(t)
	dir := filepath.Join(t.TempDir(), "shop")
	writeFiles(t, dir, map[string]string{"compose.yaml": kraupContainers, ".env": "GREETING=hello\n"})

	out := k.must(dir, "up", "-d")
	for _, want := range []string{
		"Deploying compose.yaml into namespace shop",
		"Container shop-migrate-1  Exited", "Container shop-db-1  Healthy",
		"Container shop-web-1  Started", "Container shop-web-2  Started",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("kra up -d does not say %q", want)
		}
	}
	cs := k.containers("shop")
	if len(cs) != 4 {
		t.Fatalf("containers of shop: %v", keys(cs))
	}
	for name, svc := range map[string]string{"shop-migrate-1": "migrate", "shop-db-1": "db", "shop-web-1": "web", "shop-web-2": "web"} {
		c, ok := cs[name]
		if !ok {
			t.Errorf("no container %s", name)
			continue
		}
		l := labelsOf(c)
		want := map[string]string{
			"com.docker.compose.project":              "shop",
			"com.docker.compose.service":              svc,
			"com.docker.compose.oneoff":               "False",
			"com.docker.compose.project.working_dir":  dir,
			"com.docker.compose.project.config_files": filepath.Join(dir, "compose.yaml"),
			"com.docker.compose.version":              "2.40.3",
			"com.docker.compose.container-number":     name[len(name)-1:],
		}
		for k, v := range want {
			if l[k] != v {
				t.Errorf("%s: label %s=%v, want %q", name, k, l[k], v)
			}
		}
		if h, _ := l["com.docker.compose.config-hash"].(string); len(h) != 64 {
			t.Errorf("%s: config-hash %q", name, h)
		}
	}
	web := cs["shop-web-1"]
	if l := labelsOf(web); l["kr.ingress.8080"] != "https://web.example.com" {
		t.Errorf("web's kr.ingress label: %v", l["kr.ingress.8080"])
	}
	hc := web["HostConfig"].(map[string]any)
	if hc["Memory"].(float64) != 64<<20 || hc["ReadonlyRootfs"] != true || hc["Init"] != true ||
		hc["RestartPolicy"].(map[string]any)["Name"] != "unless-stopped" {
		t.Errorf("web's HostConfig: %v", hc)
	}
	cfg := web["Config"].(map[string]any)
	if cfg["User"] != "1000" || cfg["WorkingDir"] != "/tmp" || cfg["StopTimeout"].(float64) != 3 || !contains(cfg["Env"], "GREETING=hello") || !contains(cfg["Env"], "MODE=production") {
		t.Errorf("web's Config: %v", cfg)
	}
	if s := cs["shop-db-1"]["State"].(map[string]any); s["Health"].(map[string]any)["Status"] != "healthy" {
		t.Errorf("db's health: %v", s["Health"])
	}
	if s := cs["shop-migrate-1"]["State"].(map[string]any); s["Status"] != "exited" || s["ExitCode"].(float64) != 0 {
		t.Errorf("migrate's state: %v", s)
	}
	eventually(t, "web's output", func() bool {
		return strings.Contains(k.docker("logs", "shop-web-2").Stdout, "hello from production")
	})
	if out := k.must(dir, "ns", "ls"); !strings.Contains(out, "shop") {
		t.Errorf("kra ns ls does not list shop:\n%s", out)
	}

	// docker compose v2 sees kra's project as its own: same labels, same
	// config-hash, so its up leaves the containers alone.
	t.Run("ComposeV2", func(t *testing.T) {
		compose := composeV2(t)
		run := func(args ...string) string {
			t.Helper()
			cmd := exec.Command(compose, args...)
			cmd.Dir = dir
			cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "DOCKER_HOST=tcp://" + k.addr, "DOCKER_TLS_VERIFY=1", "DOCKER_CERT_PATH=" + k.certDir}, "GREETING=hello")
			out, err := cmd.CombinedOutput()
			t.Logf("docker compose %s: %v\n%s", strings.Join(args, " "), err, out)
			if err != nil {
				t.Fatalf("docker compose %s: %v", strings.Join(args, " "), err)
			}
			return string(out)
		}
		ps := run("ps", "-a", "--format", "{{.Name}} {{.Service}}")
		for _, want := range []string{"shop-db-1 db", "shop-web-1 web", "shop-web-2 web", "shop-migrate-1 migrate"} {
			if !strings.Contains(ps, want) {
				t.Errorf("docker compose ps does not list %q", want)
			}
		}
		out := run("up", "-d")
		if strings.Contains(out, "Recreate") {
			t.Errorf("docker compose up -d recreated what kra up made (config-hash differs)")
		}
		now := k.containers("shop")
		for _, name := range []string{"shop-db-1", "shop-web-1", "shop-web-2"} {
			if now[name]["Id"] != cs[name]["Id"] {
				t.Errorf("docker compose up -d replaced %s", name)
			}
		}
	})

	// Unchanged: the running containers are left alone.
	out = k.must(dir, "up", "-d")
	if !strings.Contains(out, "Container shop-web-1  Running") || !strings.Contains(out, "Container shop-db-1  Running") || strings.Contains(out, "Recreated") {
		t.Errorf("a second kra up -d:\n%s", out)
	}
	again := k.containers("shop")
	for _, name := range []string{"shop-db-1", "shop-web-1", "shop-web-2"} {
		if again[name]["Id"] != cs[name]["Id"] {
			t.Errorf("%s was replaced by an unchanged kra up", name)
		}
	}

	// -e changes web's environment: web is recreated, db is not.
	out = k.must(dir, "up", "-d", "-e", "MODE=staging")
	if !strings.Contains(out, "Container shop-web-1  Recreated") || !strings.Contains(out, "Container shop-db-1  Running") {
		t.Errorf("kra up -d -e MODE=staging:\n%s", out)
	}
	again = k.containers("shop")
	if again["shop-web-1"]["Id"] == cs["shop-web-1"]["Id"] || again["shop-db-1"]["Id"] != cs["shop-db-1"]["Id"] {
		t.Errorf("after changing MODE: web-1 %v -> %v, db-1 %v -> %v", cs["shop-web-1"]["Id"], again["shop-web-1"]["Id"], cs["shop-db-1"]["Id"], again["shop-db-1"]["Id"])
	}
	if !contains(again["shop-web-2"]["Config"].(map[string]any)["Env"], "MODE=staging") {
		t.Errorf("web-2 was not recreated with MODE=staging")
	}

	// kra down, from another directory by name: nothing of shop is left.
	out = k.must(t.TempDir(), "down", "-n", "shop")
	if !strings.Contains(out, "Container shop-web-1  Removed") {
		t.Errorf("kra down:\n%s", out)
	}
	if left := k.containers("shop"); len(left) != 0 {
		t.Errorf("left after kra down: %v", keys(left))
	}
	if out := k.must(dir, "down"); !strings.Contains(out, `no resource found to remove for namespace "shop"`) {
		t.Errorf("a second kra down:\n%s", out)
	}

	// The other way round: what docker compose v2 made, kra up leaves
	// alone and kra down removes.
	t.Run("ComposeV2ThenKra", func(t *testing.T) {
		compose := composeV2(t)
		cmd := exec.Command(compose, "up", "-d")
		cmd.Dir = dir
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "DOCKER_HOST=tcp://" + k.addr, "DOCKER_TLS_VERIFY=1", "DOCKER_CERT_PATH=" + k.certDir}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("docker compose up -d: %v\n%s", err, out)
		}
		out := k.must(dir, "up", "-d")
		if strings.Contains(out, "Recreated") || !strings.Contains(out, "Container shop-web-2  Running") {
			t.Errorf("kra up -d after docker compose up -d:\n%s", out)
		}
		k.must(dir, "down")
		if left := k.containers("shop"); len(left) != 0 {
			t.Errorf("left after kra down: %v", keys(left))
		}
	})
}

// TestKraUpAttached runs kra up without -d: it shows the services' output
// with their names, and Ctrl-C stops them.
func TestKraUpAttached(t *testing.T) {
	k := newKraUp(t)
	dir := filepath.Join(t.TempDir(), "chat")
	writeFiles(t, dir, map[string]string{"compose.yaml": `
services:
  talk:
    image: busybox:latest
    network_mode: none
    init: true
    command: ["sh", "-c", "echo talking; exec sleep 300"]
`})
	t.Cleanup(func() { k.run(dir, "down") })
	cmd := exec.Command(k.kra, "up")
	cmd.Dir = dir
	cmd.Env = k.env
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kra up:\n%s", out.String())
		}
	})
	eventually(t, "talk's output", func() bool { return strings.Contains(out.String(), "talk-1  | talking") })
	cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-done:
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
			t.Errorf("kra up after Ctrl-C: %v, want exit 130", err)
		}
	case <-time.After(time.Minute):
		t.Fatalf("kra up did not end after Ctrl-C:\n%s", out.String())
	}
	if s := out.String(); !strings.Contains(s, "Gracefully stopping...") || !strings.Contains(s, "Container chat-talk-1  Stopped") {
		t.Errorf("kra up output:\n%s", s)
	}
	if c := k.containers("chat")["chat-talk-1"]; c == nil || c["State"].(map[string]any)["Running"] != false {
		t.Errorf("chat-talk-1 is not stopped after Ctrl-C")
	}
	k.must(dir, "down")
	if left := k.containers("chat"); len(left) != 0 {
		t.Errorf("left after kra down: %v", keys(left))
	}

	// A container that ignores SIGTERM (sleep as PID 1, no init) and may
	// take ten minutes to stop: the second Ctrl-C kills it.
	writeFiles(t, dir, map[string]string{"compose.yaml": `
services:
  stubborn:
    image: busybox:latest
    network_mode: none
    command: ["sh", "-c", "echo stubborn; exec sleep 3000"]
    stop_grace_period: 10m
`})
	cmd = exec.Command(k.kra, "up")
	cmd.Dir = dir
	cmd.Env = k.env
	var out2 syncBuffer
	cmd.Stdout, cmd.Stderr = &out2, &out2
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done2 := make(chan error, 1)
	go func() { done2 <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })
	eventually(t, "stubborn's output", func() bool { return strings.Contains(out2.String(), "stubborn-1  | stubborn") })
	cmd.Process.Signal(syscall.SIGINT)
	eventually(t, "the graceful stop", func() bool { return strings.Contains(out2.String(), "Gracefully stopping...") })
	cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-done2:
	case <-time.After(2 * time.Minute):
		t.Fatalf("kra up did not end after a second Ctrl-C:\n%s", out2.String())
	}
	if c := k.containers("chat")["chat-stubborn-1"]; c == nil || c["State"].(map[string]any)["Running"] != false || !strings.Contains(out2.String(), "Container chat-stubborn-1  Killed") {
		t.Errorf("chat-stubborn-1 is not killed after two Ctrl-C:\n%s", out2.String())
	}
	k.must(dir, "down")
}

// TestKraUpNetworksVolumes deploys what needs the Docker API's networks and
// volumes: the project's default network with an alias, a named volume two
// services share; kra down keeps the volume, kra down -v removes it.
func TestKraUpNetworksVolumes(t *testing.T) {
	k := newKraUp(t)
	requireNetworksAPI(t, k)
	dir := filepath.Join(t.TempDir(), "site")
	writeFiles(t, dir, map[string]string{"compose.yaml": `
services:
  web:
    image: busybox:latest
    init: true
    command: ["sh", "-c", "echo shared > /data/x; exec sleep 300"]
    volumes:
      - data:/data
    networks:
      default:
        aliases: [www]
    healthcheck:
      test: ["CMD", "test", "-f", "/data/x"]
      interval: 1s
  reader:
    image: busybox:latest
    init: true
    command: ["sh", "-c", "cat /data/x; exec sleep 300"]
    volumes:
      - data:/data:ro
    depends_on:
      web:
        condition: service_healthy
volumes:
  data:
`})
	t.Cleanup(func() { k.run(dir, "down", "-v") })
	out := k.must(dir, "up", "-d")
	for _, want := range []string{"Network site_default  Created", "Volume site_data  Created", "Container site-web-1  Healthy", "Container site-reader-1  Started"} {
		if !strings.Contains(out, want) {
			t.Errorf("kra up -d does not say %q", want)
		}
	}
	eventually(t, "the shared volume in reader's output", func() bool {
		return strings.Contains(k.docker("logs", "site-reader-1").Stdout, "shared")
	})
	if nets := k.mustDocker("network", "ls", "--filter", "label=com.docker.compose.project=site", "--format", "{{.Name}}"); strings.TrimSpace(nets) != "site_default" {
		t.Errorf("docker network ls: %q", nets)
	}
	var eps map[string]struct{ Aliases []string }
	if err := json.Unmarshal([]byte(k.mustDocker("inspect", "site-web-1", "--format", "{{json .NetworkSettings.Networks}}")), &eps); err != nil {
		t.Fatal(err)
	}
	if a := eps["site_default"].Aliases; !slices.Contains(a, "web") || !slices.Contains(a, "www") || !slices.Contains(a, "site-web-1") {
		t.Errorf("web's aliases on site_default: %v", eps)
	}
	if out := k.must(dir, "up", "-d"); !strings.Contains(out, "Container site-web-1  Running") || strings.Contains(out, "Created") {
		t.Errorf("second kra up -d:\n%s", out)
	}
	k.must(dir, "down")
	if s := k.mustDocker("volume", "ls", "--filter", "label=com.docker.compose.project=site", "--format", "{{.Name}}"); strings.TrimSpace(s) != "site_data" {
		t.Errorf("volumes after kra down (without -v): %q", s)
	}
	if s := k.mustDocker("network", "ls", "--filter", "label=com.docker.compose.project=site", "-q"); strings.TrimSpace(s) != "" {
		t.Errorf("networks left after kra down: %q", s)
	}
	k.must(dir, "down", "-v")
	if s := k.mustDocker("volume", "ls", "--filter", "label=com.docker.compose.project=site", "-q"); strings.TrimSpace(s) != "" {
		t.Errorf("volumes left after kra down -v: %q", s)
	}
}

// TestKraUpLocalFiles uploads bind mounts of a local directory and a local
// file into volumes (PUT /containers/{id}/archive into a created helper
// container, as dockerd takes it: see TestKraUpReferenceDockerd), once.
func TestKraUpLocalFiles(t *testing.T) {
	k := newKraUp(t)
	requireNetworksAPI(t, k)
	dir := filepath.Join(t.TempDir(), "files")
	writeFiles(t, dir, map[string]string{
		"compose.yaml": `
services:
  web:
    image: busybox:latest
    network_mode: none
    init: true
    command: ["sh", "-c", "cat /etc/site/site.conf /www/index.html; exec sleep 300"]
    volumes:
      - ./conf:/etc/site:ro
      - ./index.html:/www/index.html
`,
		"conf/site.conf": "listen=8080\n",
		"index.html":     "<h1>site</h1>\n",
	})
	t.Cleanup(func() { k.run(dir, "down", "-v") })
	out := k.must(dir, "up", "-d")
	for _, want := range []string{"Files ./conf/  Uploaded to volume files_kra-files-", "Files ./index.html  Uploaded to volume files_kra-files-"} {
		if !strings.Contains(out, want) {
			t.Errorf("kra up -d does not say %q", want)
		}
	}
	eventually(t, "the uploaded files in web's output", func() bool {
		s := k.docker("logs", "files-web-1").Stdout
		return strings.Contains(s, "listen=8080") && strings.Contains(s, "<h1>site</h1>")
	})
	if s := k.mustDocker("volume", "ls", "--filter", "label=com.docker.compose.project=files", "--format", "{{.Name}}"); strings.Count(s, "files_kra-files-") != 2 {
		t.Errorf("docker volume ls: %q", s)
	}
	// Unchanged files are not uploaded again; changed ones are, and the
	// service is recreated with them.
	if out := k.must(dir, "up", "-d"); !strings.Contains(out, "Files ./conf/  Unchanged") || !strings.Contains(out, "Container files-web-1  Running") {
		t.Errorf("second kra up -d:\n%s", out)
	}
	writeFiles(t, dir, map[string]string{"conf/site.conf": "listen=9090\n"})
	if out := k.must(dir, "up", "-d"); !strings.Contains(out, "Files ./conf/  Uploaded") || !strings.Contains(out, "Container files-web-1  Recreated") {
		t.Errorf("kra up -d after a change:\n%s", out)
	}
	eventually(t, "the changed file in web's output", func() bool {
		return strings.Contains(k.docker("logs", "files-web-1").Stdout, "listen=9090")
	})
	k.must(dir, "down")
	if s := k.mustDocker("volume", "ls", "--filter", "label=com.docker.compose.project=files", "-q"); strings.TrimSpace(s) != "" {
		t.Errorf("upload volumes left after kra down: %q", s)
	}
}

// requireNetworksAPI skips, saying why, when the server answers GET
// /networks with 404: the Docker API's networks and volumes come with the
// compose issue's server side, which this test waits for.
func requireNetworksAPI(t *testing.T, k *kraUp) {
	t.Helper()
	r := k.docker("network", "ls")
	if r.ExitCode != 0 && strings.Contains(r.Combined(), "page not found") {
		t.Skipf("AWAITING the Docker API's /networks and /volumes (compose branch): docker network ls answers %q", strings.TrimSpace(r.Stderr))
	}
}

// composeV2 is the docker compose v2 binary that the compose tests build
// into the test cache (release v2.40.3, whose compose-go kra uses).
func composeV2(t *testing.T) string {
	t.Helper()
	dir, err := testimages.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "bin", "docker-compose-v2.40.3", "docker-compose")
	if _, err := os.Stat(p); err != nil {
		t.Skipf("AWAITING docker compose v2, which the compose tests build (%v)", err)
	}
	return p
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
