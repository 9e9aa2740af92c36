package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/macro-cloud/macro/internal/testenv"
	"github.com/macro-cloud/macro/internal/testimages"
)

// composeCloud is tenant alice of a macro server, reached as a tenant
// reaches it: docker and both composes over mutual TLS with her client
// certificate, kra with her token.
type composeCloud struct {
	tc     *tenantCloud
	certs  string
	token  string
	caFile string
}

func newComposeCloud(t *testing.T) *composeCloud {
	tc := newTenantCloud(t)
	tc.mustAdmin("tenant", "create", "alice")
	token := strings.TrimSpace(tc.mustAdmin("token", "create", "--tenant", "alice"))
	certs, status, msg := tc.certs(token)
	if certs == "" {
		t.Fatalf("certs of alice: %d %s", status, msg)
	}
	c := &composeCloud{tc: tc, certs: certs, token: token, caFile: filepath.Join(certs, "ca.pem")}
	c.must(t, "load", "-i", testimages.Busybox(t))
	return c
}

func (c *composeCloud) docker(t *testing.T, args ...string) testenv.Result {
	t.Helper()
	return testenv.RunDocker(t, testenv.DockerCmd{
		Host: "tcp://" + c.tc.addr,
		Env:  []string{"DOCKER_TLS_VERIFY=1", "DOCKER_CERT_PATH=" + c.certs},
		Args: args, Timeout: 2 * time.Minute,
	})
}

func (c *composeCloud) must(t *testing.T, args ...string) string {
	t.Helper()
	r := c.docker(t, args...)
	if r.ExitCode != 0 {
		t.Fatalf("docker %s: exit %d\n%s", strings.Join(args, " "), r.ExitCode, r.Combined())
	}
	return strings.TrimSpace(r.Stdout)
}

func (c *composeCloud) composeEnv() []string {
	return []string{"DOCKER_TLS_VERIFY=1", "DOCKER_CERT_PATH=" + c.certs}
}

// compose runs compose v1 or v2 in dir against alice's API port.
func (c *composeCloud) compose(t *testing.T, v1 bool, dir string, args ...string) testenv.Result {
	t.Helper()
	return testenv.Compose(t, testenv.ComposeCmd{V1: v1, Host: "tcp://" + c.tc.addr, Dir: dir, Env: c.composeEnv(), Args: args})
}

func (c *composeCloud) mustCompose(t *testing.T, v1 bool, dir string, args ...string) string {
	t.Helper()
	r := c.compose(t, v1, dir, args...)
	if r.ExitCode != 0 {
		t.Fatalf("compose (v1=%v) %s: exit %d\nstdout:\n%s\nstderr:\n%s", v1, strings.Join(args, " "), r.ExitCode, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

// startCompose starts a compose command in the background; the test kills
// it if it still runs at the end.
func (c *composeCloud) startCompose(t *testing.T, v1 bool, dir string, args ...string) *bgDocker {
	t.Helper()
	cmd := testenv.ComposeCommand(context.Background(), t, testenv.ComposeCmd{V1: v1, Host: "tcp://" + c.tc.addr, Dir: dir, Env: c.composeEnv(), Args: args})
	b := &bgDocker{cmd: cmd, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = &b.out, &b.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { b.err = cmd.Wait(); close(b.done) }()
	t.Cleanup(func() {
		select {
		case <-b.done:
		default:
			cmd.Process.Kill()
			<-b.done
		}
	})
	return b
}

// kra runs kra as alice.
func (c *composeCloud) kra(t *testing.T, args ...string) string {
	t.Helper()
	home := t.TempDir()
	env := []string{"HOME=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, "config"),
		"KR_HOST=https://" + c.tc.addr, "KR_ACCESS_TOKEN=" + c.token, "KR_CA=" + c.caFile}
	cmd := exec.Command(testenv.Kra(t), args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "TZ=UTC"}, env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kra %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// fixture copies e2e/testdata/compose/NAME into a fresh directory.
func fixture(t *testing.T, name string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), name)
	if err := os.CopyFS(dst, os.DirFS(filepath.Join("testdata", "compose", name))); err != nil {
		t.Fatal(err)
	}
	return dst
}

// projectContainers are `docker ps -a` of a project: name → status.
func (c *composeCloud) projectContainers(t *testing.T, project string) map[string]string {
	t.Helper()
	out := c.must(t, "ps", "-a", "--filter", "label=com.docker.compose.project="+project, "--format", "{{.Names}}\t{{.Status}}")
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if name, status, ok := strings.Cut(line, "\t"); ok {
			m[name] = status
		}
	}
	return m
}

// countPrefix counts the containers whose name starts with prefix and
// whose status starts with state ("Up", "Exited").
func countPrefix(m map[string]string, prefix, state string) int {
	n := 0
	for name, st := range m {
		if strings.HasPrefix(name, prefix) && strings.HasPrefix(st, state) {
			n++
		}
	}
	return n
}

func (c *composeCloud) inspectJSON(t *testing.T, name string) map[string]any {
	t.Helper()
	var out []map[string]any
	if err := json.Unmarshal([]byte(c.must(t, "inspect", name)), &out); err != nil || len(out) != 1 {
		t.Fatalf("inspect %s: %v", name, err)
	}
	return out[0]
}

// cname is a compose container name: project-service-N in v2,
// project_service_N in v1.
func cname(v1 bool, project, service string, n int) string {
	return cprefix(v1, project, service) + strconv.Itoa(n)
}

func cprefix(v1 bool, project, service string) string {
	if v1 {
		return project + "_" + service + "_"
	}
	return project + "-" + service + "-"
}

func versions() []struct {
	name string
	v1   bool
} {
	return []struct {
		name string
		v1   bool
	}{{"v2", false}, {"v1", true}}
}

// TestCompose drives a project with one of each supported compose feature
// through compose v2 and v1 as tenant alice: up -d, ps, logs (-f), exec,
// run --rm, top, restart, stop/start, --scale, profiles, config, pull,
// down -v; the containers' labels, limits, mounts and health as inspect
// shows them; the project as a namespace in kra ns ls.
func TestCompose(t *testing.T) {
	c := newComposeCloud(t)
	for _, v := range versions() {
		t.Run(v.name, func(t *testing.T) {
			v1 := v.v1
			project := "app" + v.name
			dir := fixture(t, "app")
			files := []string{"-p", project}
			if !v1 {
				files = append(files, "-f", "compose.yaml", "-f", "compose.v2.yaml")
			}
			cmp := func(args ...string) string { t.Helper(); return c.mustCompose(t, v1, dir, append(files, args...)...) }
			t.Cleanup(func() { c.compose(t, v1, dir, append(files, "down", "-v", "--timeout", "1")...) })

			// config: .env interpolation and defaults, profiles left out.
			cfg := cmp("config")
			for _, want := range []string{"hello-from-dotenv", "seeded-hello-from-dotenv", "LEVEL: low"} {
				if !strings.Contains(cfg, want) {
					t.Errorf("config does not show %q:\n%s", want, cfg)
				}
			}

			// up -d: setup must complete before web starts, web must be
			// healthy before the workers start (depends_on conditions).
			cmp("up", "-d")
			web := cname(v1, project, "web", 1)
			ps := c.projectContainers(t, project)
			if !strings.HasPrefix(ps[cname(v1, project, "setup", 1)], "Exited (0)") ||
				!strings.HasPrefix(ps[web], "Up") || !strings.Contains(ps[web], "(healthy)") ||
				countPrefix(ps, cprefix(v1, project, "worker"), "Up") != 2 {
				t.Fatalf("after up -d: %v", ps)
			}
			if _, ok := ps[cname(v1, project, "debug", 1)]; ok {
				t.Errorf("the debug profile's service started without --profile: %v", ps)
			}
			if out := cmp("ps"); !strings.Contains(out, web) || !strings.Contains(out, "healthy") {
				t.Errorf("compose ps:\n%s", out)
			}

			// What compose asked for, as inspect shows it.
			in := c.inspectJSON(t, web)
			labels := in["Config"].(map[string]any)["Labels"].(map[string]any)
			for k, want := range map[string]string{
				"com.docker.compose.project": project, "com.docker.compose.service": "web",
				"com.docker.compose.container-number": "1", "com.docker.compose.oneoff": "False",
				"kr.ingress.8080": "https://web.example.test", "tier": "front",
			} {
				if labels[k] != want {
					t.Errorf("label %s = %v, want %q", k, labels[k], want)
				}
			}
			if h, _ := labels["com.docker.compose.config-hash"].(string); len(h) != 64 {
				t.Errorf("config-hash label: %q", h)
			}
			hc := in["HostConfig"].(map[string]any)
			if hc["Memory"] != float64(64<<20) || hc["NanoCpus"] != float64(5e8) || hc["ReadonlyRootfs"] != true ||
				hc["Init"] != true || hc["RestartPolicy"].(map[string]any)["Name"] != "unless-stopped" {
				t.Errorf("web's HostConfig: Memory %v NanoCpus %v ReadonlyRootfs %v Init %v RestartPolicy %v",
					hc["Memory"], hc["NanoCpus"], hc["ReadonlyRootfs"], hc["Init"], hc["RestartPolicy"])
			}
			if !v1 && hc["PidsLimit"] != float64(50) {
				t.Errorf("web's PidsLimit: %v", hc["PidsLimit"])
			}
			if hcheck := in["Config"].(map[string]any)["Healthcheck"].(map[string]any); !v1 && hcheck["StartInterval"] != float64(time.Second) {
				t.Errorf("web's healthcheck: %v", hcheck)
			}
			if tmpfs, _ := hc["Tmpfs"].(map[string]any); tmpfs == nil || tmpfs["/run/scratch"] == nil {
				t.Errorf("web's Tmpfs: %v", hc["Tmpfs"])
			}
			conf := in["Config"].(map[string]any)
			if conf["StopTimeout"] != float64(3) || conf["WorkingDir"] != "/www" {
				t.Errorf("web's StopTimeout %v WorkingDir %v", conf["StopTimeout"], conf["WorkingDir"])
			}
			if h := in["State"].(map[string]any)["Health"]; h == nil || h.(map[string]any)["Status"] != "healthy" {
				t.Errorf("web's State.Health: %v", h)
			}
			mounts, _ := json.Marshal(in["Mounts"])
			if !strings.Contains(string(mounts), `"Name":"`+project+`_site"`) || !strings.Contains(string(mounts), `"RW":false`) {
				t.Errorf("web's Mounts: %s", mounts)
			}

			// exec: the named volume setup filled, its sub-path (v2),
			// the read-only rootfs and the writable tmpfs.
			if out := cmp("exec", "-T", "web", "cat", "/www/index.html"); strings.TrimSpace(out) != "seeded-hello-from-dotenv" {
				t.Errorf("exec cat index.html: %q", out)
			}
			if !v1 {
				if out := cmp("exec", "-T", "web", "cat", "/cache/sub.txt"); strings.TrimSpace(out) != "in-subpath" {
					t.Errorf("exec cat the volume sub-path: %q", out)
				}
			}
			if r := c.compose(t, v1, dir, append(files, "exec", "-T", "web", "touch", "/rootfs-file")...); r.ExitCode == 0 || !strings.Contains(r.Combined(), "Read-only file system") {
				t.Errorf("read_only: touch in the rootfs: exit %d %s", r.ExitCode, r.Combined())
			}
			if out := cmp("exec", "-T", "web", "sh", "-c", "echo ok > /run/scratch/f && cat /run/scratch/f && grep -c ' /run/scratch tmpfs ' /proc/mounts"); strings.Fields(out)[0] != "ok" || strings.Fields(out)[1] != "1" {
				t.Errorf("tmpfs /run/scratch: %q", out)
			}

			// logs: env_file, .env and the user, from both replicas.
			logs := cmp("logs", "worker")
			if strings.Count(logs, "worker-says hello-from-dotenv from-env-file 1000") != 2 {
				t.Errorf("worker logs:\n%s", logs)
			}
			// logs -f follows what a worker prints later.
			follow := c.startCompose(t, v1, dir, append(files, "logs", "-f", "worker")...)
			eventually(t, "logs -f shows the first lines", func() bool { return strings.Contains(follow.out.String(), "worker-says") })
			cmp("exec", "-T", "worker", "sh", "-c", "echo printed-later > /proc/1/fd/1")
			eventually(t, "logs -f shows a later line", func() bool { return strings.Contains(follow.out.String(), "printed-later") })
			follow.cmd.Process.Signal(syscall.SIGINT)
			follow.wait(t)

			// run --rm: a one-off container that is gone afterwards.
			if out := cmp("run", "--rm", "-T", "--no-deps", "worker", "echo", "one-off-ran"); !strings.Contains(out, "one-off-ran") {
				t.Errorf("run --rm printed %q", out)
			}
			eventually(t, "the one-off container is removed", func() bool {
				return c.must(t, "ps", "-aq", "--filter", "label=com.docker.compose.oneoff=True", "--filter", "label=com.docker.compose.project="+project) == ""
			})

			// top, restart, stop and start.
			if out := cmp("top", "web"); !strings.Contains(out, "httpd -f -p 8080") {
				t.Errorf("top web:\n%s", out)
			}
			cmp("pause", "web")
			if ps := c.projectContainers(t, project); !strings.Contains(ps[web], "(Paused)") {
				t.Errorf("after pause web: %v", ps)
			}
			cmp("unpause", "web")
			if !v1 {
				// cp reads the volume mounted at /www, not the rootfs under it.
				local := filepath.Join(t.TempDir(), "index.html")
				cmp("cp", "web:/www/index.html", local)
				if got, err := os.ReadFile(local); err != nil || strings.TrimSpace(string(got)) != "seeded-hello-from-dotenv" {
					t.Errorf("compose cp from the volume: %q %v", got, err)
				}
			}
			started := in["State"].(map[string]any)["StartedAt"]
			cmp("restart", "web")
			st := c.inspectJSON(t, web)["State"].(map[string]any)
			if st["Running"] != true || st["StartedAt"] == started {
				t.Errorf("after restart: running %v, started %v (was %v)", st["Running"], st["StartedAt"], started)
			}
			cmp("stop", "worker")
			if ps := c.projectContainers(t, project); countPrefix(ps, cprefix(v1, project, "worker"), "Exited") != 2 {
				t.Errorf("after stop worker: %v", ps)
			}
			cmp("start", "worker")
			if ps := c.projectContainers(t, project); countPrefix(ps, cprefix(v1, project, "worker"), "Up") != 2 {
				t.Errorf("after start worker: %v", ps)
			}

			// --scale and a profile; an unchanged service is not recreated.
			webID := c.must(t, "inspect", "--format", "{{.Id}}", web)
			cmp("up", "-d", "--scale", "worker=3")
			if id := c.must(t, "inspect", "--format", "{{.Id}}", web); id != webID {
				t.Errorf("up -d recreated the unchanged web service (%s, was %s)", id, webID)
			}
			if ps := c.projectContainers(t, project); countPrefix(ps, cprefix(v1, project, "worker"), "Up") != 3 {
				t.Errorf("after --scale worker=3: %v", ps)
			}
			cmp("--profile", "debug", "up", "-d", "debug")
			if ps := c.projectContainers(t, project); !strings.HasPrefix(ps[cname(v1, project, "debug", 1)], "Up") {
				t.Errorf("after --profile debug up debug: %v", ps)
			}

			// The project is a namespace; its network and volumes exist.
			if out := c.kra(t, "ns", "ls"); !strings.Contains(out, project) {
				t.Errorf("kra ns ls does not list %s:\n%s", project, out)
			}
			if out := c.must(t, "network", "ls", "--format", "{{.Name}} {{.Driver}}"); !strings.Contains(out, project+"_default bridge") {
				t.Errorf("network ls:\n%s", out)
			}
			if out := c.must(t, "network", "inspect", "--format", "{{len .Containers}}", project+"_default"); out == "0" {
				t.Errorf("network inspect %s_default: no containers", project)
			}
			if out := c.must(t, "volume", "ls", "--format", "{{.Name}}"); !strings.Contains(out, project+"_site") || !strings.Contains(out, project+"_cache") {
				t.Errorf("volume ls:\n%s", out)
			}

			// pull: there is no registry to pull busybox from here.
			if r := c.compose(t, v1, dir, append(files, "pull", "web")...); r.ExitCode == 0 || !strings.Contains(r.Combined(), "docker.io") {
				t.Errorf("pull without a registry: exit %d\n%s", r.ExitCode, r.Combined())
			}

			// down -v leaves nothing of the project.
			cmp("--profile", "debug", "down", "-v", "--timeout", "1")
			if ps := c.projectContainers(t, project); len(ps) != 0 {
				t.Errorf("containers after down -v: %v", ps)
			}
			if out := c.must(t, "volume", "ls", "--format", "{{.Name}}"); strings.Contains(out, project+"_") {
				t.Errorf("volumes after down -v:\n%s", out)
			}
			if out := c.must(t, "network", "ls", "--format", "{{.Name}}"); strings.Contains(out, project+"_default") {
				t.Errorf("networks after down -v:\n%s", out)
			}
			if out := c.kra(t, "ns", "ls"); strings.Contains(out, project) {
				t.Errorf("kra ns ls still lists %s after down:\n%s", project, out)
			}
		})
	}
}

// TestComposeAttached runs `up` in the foreground: the services' logs,
// --abort-on-container-exit with the exit code of the service that ended,
// and Ctrl-C, which stops the project.
func TestComposeAttached(t *testing.T) {
	c := newComposeCloud(t)
	for _, v := range versions() {
		t.Run(v.name, func(t *testing.T) {
			v1 := v.v1
			project := "att" + v.name
			dir := fixture(t, "attached")
			t.Cleanup(func() { c.compose(t, v1, dir, "-p", project, "down", "--timeout", "1") })

			r := c.compose(t, v1, dir, "-p", project, "up", "--abort-on-container-exit", "--exit-code-from", "talker")
			if r.ExitCode != 3 || !strings.Contains(r.Stdout, "attached-hello") || !strings.Contains(r.Stdout, "attached-bye") || !strings.Contains(r.Stdout, "waiter-up") {
				t.Errorf("up --abort-on-container-exit: exit %d (want 3)\nstdout:\n%s\nstderr:\n%s", r.ExitCode, r.Stdout, r.Stderr)
			}
			if ps := c.projectContainers(t, project); !strings.HasPrefix(ps[cname(v1, project, "waiter", 1)], "Exited") {
				t.Errorf("after the abort, waiter: %v", ps)
			}

			// Ctrl-C stops what up started.
			up := c.startCompose(t, v1, dir, "-p", project, "up", "waiter")
			eventually(t, "up shows waiter's log", func() bool { return strings.Count(up.out.String(), "waiter-up") >= 1 })
			eventually(t, "waiter runs", func() bool {
				return strings.HasPrefix(c.projectContainers(t, project)[cname(v1, project, "waiter", 1)], "Up")
			})
			up.cmd.Process.Signal(syscall.SIGINT)
			up.wait(t)
			if ps := c.projectContainers(t, project); !strings.HasPrefix(ps[cname(v1, project, "waiter", 1)], "Exited") {
				t.Errorf("after Ctrl-C, waiter: %v\n%s", ps, up.out.String())
			}
			if logs := c.must(t, "logs", cname(v1, project, "waiter", 1)); !strings.Contains(logs, "waiter-got-term") {
				t.Errorf("waiter was not stopped with its signal: logs %q", logs)
			}
		})
	}
}

// TestComposeUnsupported: keys macro cannot honour fail the up by name,
// and down cleans up what the failed up left.
func TestComposeUnsupported(t *testing.T) {
	c := newComposeCloud(t)
	for _, v := range versions() {
		t.Run(v.name, func(t *testing.T) {
			project := "bad" + v.name
			dir := fixture(t, "unsupported")
			r := c.compose(t, v.v1, dir, "-p", project, "up", "-d")
			for _, want := range []string{"published ports", "cap_add", "extra_hosts"} {
				if r.ExitCode == 0 || !strings.Contains(r.Combined(), want) {
					t.Errorf("up -d with unsupported keys: exit %d, want an error naming %q:\n%s", r.ExitCode, want, r.Combined())
				}
			}
			c.mustCompose(t, v.v1, dir, "-p", project, "down", "-v")
			if ps := c.projectContainers(t, project); len(ps) != 0 {
				t.Errorf("containers after down: %v", ps)
			}
			if out := c.must(t, "network", "ls", "--format", "{{.Name}}"); strings.Contains(out, project) {
				t.Errorf("networks after down:\n%s", out)
			}
		})
	}
}

// TestComposeBindMount: a tenant's local file mount is refused with a
// message that names it, and down cleans up.
func TestComposeBindMount(t *testing.T) {
	c := newComposeCloud(t)
	for _, v := range versions() {
		t.Run(v.name, func(t *testing.T) {
			project := "bind" + v.name
			dir := fixture(t, "bind")
			r := c.compose(t, v.v1, dir, "-p", project, "up", "-d")
			if r.ExitCode == 0 || !strings.Contains(r.Combined(), "bind mounts of host paths are not available to tenants ("+filepath.Join(dir, "conf")+":/etc/app)") {
				t.Errorf("up -d with ./conf:/etc/app: exit %d\n%s", r.ExitCode, r.Combined())
			}
			c.mustCompose(t, v.v1, dir, "-p", project, "down", "-v")
			if ps := c.projectContainers(t, project); len(ps) != 0 {
				t.Errorf("containers after down: %v", ps)
			}
		})
	}
}

// TestComposeKraudNetwork: an ipip network with an IPAM subnet and a
// service's ipv4_address and aliases, as Kraud's compose files have them,
// are stored and shown; the kr.* labels are kept.
func TestComposeKraudNetwork(t *testing.T) {
	c := newComposeCloud(t)
	for _, v := range versions() {
		t.Run(v.name, func(t *testing.T) {
			project := "kr" + v.name
			dir := fixture(t, "kraud")
			t.Cleanup(func() { c.compose(t, v.v1, dir, "-p", project, "down", "--timeout", "1") })
			c.mustCompose(t, v.v1, dir, "-p", project, "up", "-d")
			net := project + "_backend"
			if out := c.must(t, "network", "inspect", "--format", "{{.Driver}} {{range .IPAM.Config}}{{.Subnet}}{{end}} {{.Labels}}", net); !strings.HasPrefix(out, "ipip 10.10.0.0/24 map[") || !strings.Contains(out, "com.docker.compose.network:backend") {
				t.Errorf("network inspect %s: %q", net, out)
			}
			db := cname(v.v1, project, "db", 1)
			out := c.must(t, "inspect", "--format", "{{with index .NetworkSettings.Networks \""+net+"\"}}{{.IPAMConfig.IPv4Address}} {{.Aliases}}{{end}} {{index .Config.Labels \"kr.ingress.8080\"}} {{index .Config.Labels \"kr.network.policy\"}}", db)
			if !strings.HasPrefix(out, "10.10.0.10 [") || !strings.Contains(out, "database") || !strings.HasSuffix(out, "] https://db.example.test/admin open") {
				t.Errorf("inspect %s: %q", db, out)
			}
			// The overlay address is the pod's own (net/router).
			if out := c.must(t, "exec", db, "ip", "-o", "addr", "show", "eth0"); !strings.Contains(out, "10.10.0.10/24") {
				t.Errorf("%s's eth0 has no 10.10.0.10/24:\n%s", db, out)
			}
			c.mustCompose(t, v.v1, dir, "-p", project, "down")
			if out := c.must(t, "network", "ls", "--format", "{{.Name}}"); strings.Contains(out, net) {
				t.Errorf("networks after down:\n%s", out)
			}
		})
	}
}

// TestComposeServiceNames: a service reaches another by its service name,
// its container name and a network alias. This needs the node's pod
// network and DNS (net/); without them the server reports no pod address
// and the test says so.
func TestComposeServiceNames(t *testing.T) {
	c := newComposeCloud(t)
	for _, v := range versions() {
		t.Run(v.name, func(t *testing.T) {
			v1 := v.v1
			project := "net" + v.name
			dir := fixture(t, "net")
			t.Cleanup(func() { c.compose(t, v1, dir, "-p", project, "down", "--timeout", "1") })
			c.mustCompose(t, v1, dir, "-p", project, "up", "-d")
			client := cname(v1, project, "client", 1)
			addr := c.must(t, "inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", client)
			if addr == "" || addr == "invalid IP" {
				t.Skip("needs pod networking (net/): the server reports no address for " + client)
			}
			for _, name := range []string{"web", "www", cname(v1, project, "web", 1)} {
				r := c.docker(t, "exec", client, "wget", "-qO-", "http://"+name+":8080/")
				if r.ExitCode != 0 || strings.TrimSpace(r.Stdout) != "hello-over-the-network" {
					t.Errorf("wget http://%s:8080/ from %s: exit %d %s", name, client, r.ExitCode, r.Combined())
				}
			}
			// From the tenant's other namespaces: <service>.<namespace>.
			r := c.docker(t, "run", "--rm", "busybox", "wget", "-qO-", "http://web."+project+":8080/")
			if r.ExitCode != 0 || strings.TrimSpace(r.Stdout) != "hello-over-the-network" {
				t.Errorf("wget http://web.%s:8080/ from namespace default: exit %d %s", project, r.ExitCode, r.Combined())
			}
		})
	}
}
