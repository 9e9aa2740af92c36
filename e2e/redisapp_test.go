package e2e

import (
	"strings"
	"testing"

	"github.com/macro-cloud/macro/internal/testimages"
)

// TestRedisApp brings a real two-tier app up and down through compose v2,
// compose v1 and kra up: redis with a healthcheck, and a web service that
// waits for it (depends_on service_healthy) and reads a key from it by its
// service name.
func TestRedisApp(t *testing.T) {
	redis := testimages.Redis(t) // skips when `make images` has not built it
	c := newComposeCloud(t)
	c.must(t, "load", "-i", redis)
	type tool struct {
		name string
		up   func(dir, project string)
		down func(dir, project string)
		web  func(project string) string
		db   func(project string) string
	}
	tools := []tool{}
	for _, v := range versions() {
		v1 := v.v1
		tools = append(tools, tool{
			name: "compose " + v.name,
			up:   func(dir, p string) { c.mustCompose(t, v1, dir, "-p", p, "up", "-d") },
			down: func(dir, p string) { c.mustCompose(t, v1, dir, "-p", p, "down", "-v", "--timeout", "1") },
			web:  func(p string) string { return cname(v1, p, "web", 1) },
			db:   func(p string) string { return cname(v1, p, "redis", 1) },
		})
	}
	tools = append(tools, tool{
		name: "kra up",
		up:   func(dir, p string) { c.kra(t, "up", "-d", "-f", dir+"/compose.yaml", "-n", p) },
		down: func(dir, p string) { c.kra(t, "down", "-v", "-n", p) },
		web:  func(p string) string { return cname(false, p, "web", 1) },
		db:   func(p string) string { return cname(false, p, "redis", 1) },
	})
	for i, tl := range tools {
		t.Run(strings.ReplaceAll(tl.name, " ", "_"), func(t *testing.T) {
			project := "shop" + string(rune('a'+i))
			dir := fixture(t, "redisapp")
			t.Cleanup(func() { c.docker(t, "rm", "-f", tl.web(project), tl.db(project)) })
			tl.up(dir, project)
			web, db := tl.web(project), tl.db(project)
			// depends_on service_healthy: web started after redis was healthy.
			if h := c.must(t, "inspect", "-f", "{{.State.Health.Status}}", db); h != "healthy" {
				t.Errorf("redis health after up: %s", h)
			}
			c.must(t, "exec", db, "redis-cli", "SET", "greeting", "hello from redis via "+tl.name)
			got := ""
			eventually(t, "web reads the greeting from redis by name", func() bool {
				got = strings.TrimSpace(c.docker(t, "exec", web, "wget", "-qO-", "http://127.0.0.1:8080/cgi-bin/greeting").Stdout)
				return got == "hello from redis via "+tl.name
			})
			eventually(t, "web healthy", func() bool {
				return c.must(t, "inspect", "-f", "{{.State.Health.Status}}", web) == "healthy"
			})
			tl.down(dir, project)
			if out := c.must(t, "ps", "-a", "--filter", "label=com.docker.compose.project="+project, "-q"); out != "" {
				t.Errorf("containers left after down: %s", out)
			}
		})
	}
}
