package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/macro-cloud/macro/api"
	"github.com/macro-cloud/macro/auth"
	"github.com/macro-cloud/macro/store"
)

// adminServer serves the real admin API over DIR/admin.sock on a real
// embedded etcd, and returns DIR.
func adminServer(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := store.Open(ctx, store.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ca, _, err := auth.LoadOrCreateCA(filepath.Join(dir, "ca"), "test")
	if err != nil {
		t.Fatal(err)
	}
	native := api.New(api.Config{Store: st, Auth: auth.New(auth.Config{Store: st}), CA: ca})
	l, err := net.Listen("unix", filepath.Join(dir, adminSocketName))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: native.AdminHandler()}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return dir
}

func TestAdminCommands(t *testing.T) {
	dir := adminServer(t)
	c := newAdminClient(dir)
	ctx := context.Background()
	run := func(tenant string, words ...string) (string, string, error) {
		var out, errOut bytes.Buffer
		err := runAdmin(ctx, c, words, adminOpts{tenant: tenant}, &out, &errOut)
		return out.String(), errOut.String(), err
	}
	if out, _, err := run("", "tenant", "create", "alice"); err != nil || out != "tenant \"alice\" created\n" {
		t.Fatalf("tenant create: %q %v", out, err)
	}
	if _, _, err := run("", "tenant", "create", "alice"); err == nil || err.Error() != `tenant "alice" already exists` {
		t.Fatalf("tenant create twice: %v", err)
	}
	out, _, err := run("", "tenant", "ls")
	if err != nil || !strings.HasPrefix(out, "NAME ") || !strings.Contains(out, "\nalice ") {
		t.Fatalf("tenant ls: %q %v", out, err)
	}
	if out, _, err := run("", "tenant", "set-egress", "alice", "off"); err != nil || out != "tenant \"alice\": egress off\n" {
		t.Fatalf("set-egress: %q %v", out, err)
	}
	if out, _, err := run("", "tenant", "ls"); err != nil || !strings.Contains(out, "\nalice (no egress) ") {
		t.Fatalf("tenant ls after set-egress off: %q %v", out, err)
	}
	if out, _, err := run("", "tenant", "set-egress", "alice", "on"); err != nil || out != "tenant \"alice\": egress on\n" {
		t.Fatalf("set-egress on: %q %v", out, err)
	}
	if out, _, err := run("", "tenant", "set-suspend", "alice", "90m"); err != nil || out != "tenant \"alice\": pods suspend after 1h30m idle by default\n" {
		t.Fatalf("set-suspend: %q %v", out, err)
	}
	if out, _, err := run("", "tenant", "ls"); err != nil || !strings.Contains(out, " 1h30m\n") {
		t.Fatalf("tenant ls after set-suspend: %q %v", out, err)
	}
	if out, _, err := run("", "tenant", "set-suspend", "alice", "off"); err != nil || out != "tenant \"alice\": no default suspend rule\n" {
		t.Fatalf("set-suspend off: %q %v", out, err)
	}
	out, errOut, err := run("alice", "token", "create")
	token := strings.TrimSpace(out)
	if err != nil || !auth.IsToken(token) || !strings.Contains(errOut, "shown this once") {
		t.Fatalf("token create: %q %q %v", out, errOut, err)
	}
	id, _, _ := auth.ParseToken(token)
	if out, _, err := run("alice", "token", "ls"); err != nil || !strings.Contains(out, id) || !strings.Contains(out, "never") {
		t.Fatalf("token ls: %q %v", out, err)
	}
	if out, _, err := run("alice", "token", "revoke", id); err != nil || !strings.Contains(out, "revoked") {
		t.Fatalf("token revoke: %q %v", out, err)
	}
	for _, c := range []struct {
		tenant string
		words  []string
		usage  bool
		want   string
	}{
		{"", nil, true, "no command"},
		{"", []string{"token", "ls"}, true, "token ls: --tenant NAME is required"},
		{"", []string{"tenant", "frob", "x"}, true, `unknown command "tenant frob x"`},
		{"alice", []string{"token", "revoke", id}, false, `tenant "alice" has no token "` + id + `"`},
		{"bob", []string{"token", "ls"}, false, `tenant "bob" not found`},
		{"", []string{"tenant", "set-egress", "alice", "maybe"}, true, `tenant set-egress: say on or off, not "maybe"`},
		{"", []string{"tenant", "set-egress", "bob", "on"}, false, `tenant "bob" not found`},
		{"", []string{"tenant", "set-suspend", "alice", "5ms"}, true, `tenant set-suspend: suspend rule "5ms": want a duration of 1s or more, such as 10m, or off`},
		{"", []string{"tenant", "set-suspend", "bob", "10m"}, false, `tenant "bob" not found`},
	} {
		_, _, err := run(c.tenant, c.words...)
		var ue usageError
		if err == nil || err.Error() != c.want || c.usage != errors.As(err, &ue) {
			t.Errorf("%v: %v, want %q (usage %v)", c.words, err, c.want, c.usage)
		}
	}
}

func TestAdminArgs(t *testing.T) {
	dir := adminServer(t)
	// Flags anywhere, as the kra end-to-end test calls it.
	if code := adminMain([]string{"tenant", "create", "carol", "--data-dir", dir}); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if code := adminMain([]string{"--data-dir", dir, "token", "create", "--tenant=carol"}); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if code := adminMain([]string{"--data-dir", dir, "token", "create"}); code != 2 {
		t.Fatalf("usage error: exit %d", code)
	}
	if code := adminMain([]string{"--data-dir", t.TempDir(), "tenant", "ls"}); code != 1 {
		t.Fatalf("no server: exit %d", code)
	}
	if code := adminMain([]string{"--help"}); code != 0 {
		t.Fatalf("--help: exit %d", code)
	}
}

func TestAPIPortRouting(t *testing.T) {
	tag := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(name)) })
	}
	p := &apiPort{native: tag("native"), docker: tag("docker")}
	for _, c := range []struct{ path, want string }{
		{"/apis/macro/v1/whoami", "native"},
		{"/v1.50/containers/json", "docker"},
		{"/_ping", "docker"},
		{"/v2/", "404"},
		{"/v2", "404"},
		{"/v2x", "docker"},
		{"/dav/data/x", "404"},
		{"/dav", "404"},
		{"/davx", "docker"},
	} {
		w := httptest.NewRecorder()
		p.ServeHTTP(w, httptest.NewRequest("GET", c.path, nil))
		got := w.Body.String()
		if w.Code == 404 {
			var m struct{ Message string }
			if json.Unmarshal(w.Body.Bytes(), &m) != nil || m.Message == "" {
				t.Errorf("%s: 404 body %q", c.path, got)
			}
			got = "404"
		}
		if got != c.want {
			t.Errorf("%s: %s, want %s", c.path, got, c.want)
		}
	}
	p.registry = tag("registry")
	w := httptest.NewRecorder()
	p.ServeHTTP(w, httptest.NewRequest("GET", "/v2/", nil))
	if w.Body.String() != "registry" {
		t.Errorf("/v2/ with a registry: %q", w.Body.String())
	}
	p.dav = tag("dav")
	for _, path := range []string{"/dav/", "/dav/data/x", "/dav"} {
		w := httptest.NewRecorder()
		p.ServeHTTP(w, httptest.NewRequest("PROPFIND", path, nil))
		if w.Body.String() != "dav" {
			t.Errorf("%s with WebDAV: %q", path, w.Body.String())
		}
	}
}

func TestKraHost(t *testing.T) {
	for addr, want := range map[string]string{
		":7443":            "",
		"0.0.0.0:7443":     "",
		"localhost:7443":   "",
		"127.0.0.1:7443":   "https://127.0.0.1:7443",
		":8443":            "https://localhost:8443",
		"[::1]:9000":       "https://[::1]:9000",
		"rack1.local:7443": "https://rack1.local:7443",
	} {
		if got := kraHost(addr); got != want {
			t.Errorf("kraHost(%q) = %q, want %q", addr, got, want)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "1024": 1024, "512m": 512 << 20, "512M": 512 << 20, "512MiB": 512 << 20, "512mb": 512 << 20,
		"4g": 4 << 30, "1.5g": 3 << 29, "10G": 10 << 30, "2t": 2 << 40, "64k": 64 << 10, "100b": 100,
	} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d %v, want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "lots", "-1g", "4x", "g", "1e400"} {
		if got, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", bad, got)
		}
	}
}
