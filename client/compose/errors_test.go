package compose

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
)

// loadYAML loads a compose file given as text, from a directory named
// "demo".
func loadYAML(t *testing.T, yaml string, env ...string) (*types.Project, error) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "demo")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return Load(context.Background(), LoadOptions{WorkDir: dir, OSEnv: []string{}, Env: env})
}

// TestLoadErrors: what kra cannot honour is refused by name, and the
// loader's own errors come through.
func TestLoadErrors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"build", "services:\n  web:\n    build: .\n", "service web: build is not supported, push the image with kra push and name it in image:"},
		{"privileged", "services:\n  web:\n    image: x\n    privileged: true\n", "service web: privileged is not supported"},
		{"nested", "services:\n  web:\n    image: x\n    deploy:\n      update_config:\n        parallelism: 2\n", "service web: deploy.update_config is not supported"},
		{"healthcheck is whole", "services:\n  web:\n    image: x\n    healthcheck:\n      test: [CMD, 'true']\n      start_interval: 1s\n      start_period: 2s\n", ""},
		{"global", "services:\n  web:\n    image: x\n    deploy:\n      mode: global\n", "service web: deploy.mode global is not supported (only replicated)"},
		{"host network", "services:\n  web:\n    image: x\n    network_mode: host\n", "service web: network_mode host is not supported (only none, or networks:)"},
		{"network key", "services:\n  web:\n    image: x\n    networks:\n      n:\n        mac_address: 02:42:ac:11:00:02\nnetworks:\n  n: {}\n", "service web: networks.mac_address is not supported"},
		{"top-level network", "services:\n  web:\n    image: x\nnetworks:\n  default:\n    driver_opts: {a: b}\n    ipam:\n      driver: dhcp\n", ""},
		{"top-level configs", "services:\n  web:\n    image: x\n    configs: [c]\nconfigs:\n  c:\n    content: hi\n", "service web: configs is not supported\ntop-level configs are not supported"},
		{"npipe", "services:\n  web:\n    image: x\n    volumes:\n      - type: npipe\n        source: a\n        target: /b\n", "service web: volumes: type npipe (/b) is not supported"},
		{"restart", "services:\n  web:\n    image: x\n    restart: on-failure:many\n", "service web: restart on-failure:many: invalid maximum retry count"},
		{"extensions pass", "x-common: &c\n  image: x\nservices:\n  web:\n    <<: *c\n    x-note: hello\n", ""},
		{"interpolation", "services:\n  web:\n    image: x:${TAG:?need a tag}\n", "need a tag"},
		{"unknown dependency", "services:\n  web:\n    image: x\n    depends_on: [db]\n", `service "web" depends on undefined service "db"`},
		{"no services", "services: {}\n", "no service to deploy"},
		{"replicas with a name", "services:\n  web:\n    image: x\n    container_name: web\n    deploy: {replicas: 2}\n", "container name must be unique"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadYAML(t, tc.yaml)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Load: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Load: %v, want %q", err, tc.want)
			}
		})
	}
}

// TestUpErrors: dependencies that fail, images that cannot be had, an
// external network that is not there.
func TestUpErrors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"job fails", "services:\n  job:\n    image: busybox:latest\n    network_mode: none\n    labels: {fake.exit: '3'}\n  app:\n    image: busybox:latest\n    network_mode: none\n    depends_on:\n      job: {condition: service_completed_successfully}\n",
			`service "job" didn't complete successfully: exit 3`},
		{"no healthcheck", "services:\n  db:\n    image: busybox:latest\n    network_mode: none\n  app:\n    image: busybox:latest\n    network_mode: none\n    depends_on:\n      db: {condition: service_healthy}\n",
			"dependency failed to start: container demo-db-1 has no healthcheck configured"},
		{"exits instead of healthy", "services:\n  db:\n    image: busybox:latest\n    network_mode: none\n    labels: {fake.exit: '1'}\n    healthcheck: {test: [CMD, 'true']}\n  app:\n    image: busybox:latest\n    network_mode: none\n    depends_on:\n      db: {condition: service_healthy}\n",
			"dependency failed to start: container demo-db-1 exited (1)"},
		{"pull denied", "services:\n  web:\n    image: private/thing:1\n    network_mode: none\n", "service web: pulling private/thing:1: pull access denied for private/thing:1"},
		{"never pull", "services:\n  web:\n    image: private/thing:1\n    pull_policy: never\n    network_mode: none\n", "service web: no image private/thing:1, and pull_policy is never"},
		{"external network", "services:\n  web:\n    image: busybox:latest\nnetworks:\n  default:\n    external: true\n    name: elsewhere\n", "network elsewhere declared as external, but could not be found"},
		{"external volume", "services:\n  web:\n    image: busybox:latest\n    network_mode: none\n    volumes:\n      - vol:/v\nvolumes:\n  vol:\n    external: true\n", `external volume "vol" not found`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := loadYAML(t, tc.yaml)
			if err != nil {
				t.Fatal(err)
			}
			_, c := newFakeEngine(t)
			var out bytes.Buffer
			err = newDeployer(c, &out).Up(context.Background(), p)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Up: %v, want %q\n%s", err, tc.want, out.String())
			}
		})
	}
}

// TestPull: a missing image is pulled, with progress.
func TestPull(t *testing.T) {
	p, err := loadYAML(t, "services:\n  web:\n    image: example.com/app:2\n    network_mode: none\n")
	if err != nil {
		t.Fatal(err)
	}
	f, c := newFakeEngine(t)
	f.pulls["example.com/app:2"] = "sha256:a22"
	var out bytes.Buffer
	if err := newDeployer(c, &out).Up(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "Image example.com/app:2  Pulled") || f.find("demo-web-1").req.Labels[ImageLabel] != "sha256:a22" {
		t.Errorf("progress:\n%s", out.String())
	}
}

// TestWithoutNetworksAPI: against a server that has no /networks and
// /volumes yet (404), a project that needs none deploys, and down works.
func TestWithoutNetworksAPI(t *testing.T) {
	p, err := loadYAML(t, "services:\n  web:\n    image: busybox:latest\n    network_mode: none\n")
	if err != nil {
		t.Fatal(err)
	}
	f, c := newFakeEngine(t)
	f.noNetworks = true
	var out bytes.Buffer
	d := newDeployer(c, &out)
	if err := d.Up(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if err := d.Down(context.Background(), "demo", DownOptions{Volumes: true}); err != nil {
		t.Fatal(err)
	}
	if len(f.containers) != 0 {
		t.Errorf("left: %v", f.containers)
	}
	// A project with a network says what the server answered.
	p, err = loadYAML(t, "services:\n  web:\n    image: busybox:latest\n")
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Up(context.Background(), p); err == nil || err.Error() != "network demo_default: page not found" {
		t.Errorf("Up with a network on a server without networks: %v", err)
	}
}

// TestAttachAndStop: the output of every container, line by line with
// compose's prefixes; Stop stops them all.
func TestAttachAndStop(t *testing.T) {
	dir := fixture(t, "shop")
	f, c := newFakeEngine(t)
	var progress bytes.Buffer
	d := newDeployer(c, &progress)
	p := load(t, dir)
	if err := d.Up(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := d.Attach(context.Background(), p, &out); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{
		"db-1   | hello from shop-db-1":  true,
		"db-1   | partial":               true,
		"web-1  | hello from shop-web-1": true,
		"web-1  | partial":               true,
		"web-2  | hello from shop-web-2": true,
		"web-2  | partial":               true,
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	for _, l := range lines {
		if !want[l] {
			t.Errorf("unexpected line %q", l)
		}
		delete(want, l)
	}
	if len(want) > 0 {
		t.Errorf("missing lines %v in:\n%s", want, out.String())
	}
	progress.Reset()
	if err := d.Stop(context.Background(), p, nil); err != nil {
		t.Fatal(err)
	}
	got := progress.String()
	if !strings.HasSuffix(got, " Container shop-db-1  Stopped\n") || strings.Count(got, "Stopped") != 3 {
		t.Errorf("Stop (db last, after what depends on it):\n%s", got)
	}
	for _, c := range f.containers {
		if c.state == "running" {
			t.Errorf("%s still runs", c.name)
		}
	}

	// Kill: the running ones get SIGKILL, the stopped ones are no error.
	f.mu.Lock()
	f.find("shop-web-2").state = "running"
	f.mu.Unlock()
	progress.Reset()
	if err := d.Kill(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if got := progress.String(); got != " Container shop-web-2  Killed\n" {
		t.Errorf("Kill: %q", got)
	}
	if c := f.find("shop-web-2"); c.state != "exited" || c.exit != 137 {
		t.Errorf("shop-web-2 after Kill: %s %d", c.state, c.exit)
	}
}
