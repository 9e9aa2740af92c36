package registry

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/macro-cloud/macro/image"
)

// TestRoutesDispatched keeps Routes honest, both ways: every listed route
// reaches a handler of its own (not the 405 of a wrong method nor the 404
// of an unknown path), and every other method on the same paths is refused
// with 405. A route added to route() without being listed, or listed
// without being served, fails here.
func TestRoutesDispatched(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir := t.TempDir()
	st, err := image.Open(filepath.Join(dir, "images"), log)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := New(Config{Store: st, Authenticate: authenticate, KeyFile: filepath.Join(dir, "registry.key"), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg)
	defer srv.Close()

	do := func(method, path string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		req.SetBasicAuth("u", "tok-alice")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var body struct{ Errors []struct{ Code string } }
		json.Unmarshal(b, &body)
		code := ""
		if len(body.Errors) > 0 {
			code = body.Errors[0].Code
		}
		return resp, code
	}
	// fill gives a pattern's parameters values; {uuid} is a new upload.
	fill := func(pattern string) string {
		p := strings.NewReplacer("{name}", "alice/app", "{reference}", "latest",
			"{digest}", "sha256:"+strings.Repeat("0", 64)).Replace(pattern)
		if strings.Contains(p, "{uuid}") {
			resp, _ := do("POST", "/v2/alice/app/blobs/uploads/")
			if resp.StatusCode != http.StatusAccepted || resp.Header.Get("Docker-Upload-UUID") == "" {
				t.Fatalf("starting an upload: %s", resp.Status)
			}
			p = strings.ReplaceAll(p, "{uuid}", resp.Header.Get("Docker-Upload-UUID"))
		}
		return p
	}

	listed := map[string][]string{} // path pattern -> methods
	for _, route := range Routes() {
		method, pattern, ok := strings.Cut(route, " ")
		if !ok || !strings.HasPrefix(pattern, "/v2/") {
			t.Fatalf("route %q: want METHOD /v2/...", route)
		}
		listed[pattern] = append(listed[pattern], method)
		path := fill(pattern)
		resp, code := do(method, path)
		if method == http.MethodHead && resp.StatusCode == http.StatusNotFound {
			// No body to tell which 404: GET shares the handler.
			_, code = do(http.MethodGet, path)
		}
		if resp.StatusCode == http.StatusMethodNotAllowed || code == "UNSUPPORTED" ||
			(resp.StatusCode == http.StatusNotFound && (code == "" || code == "NOT_FOUND")) {
			t.Errorf("%s (%s %s) is listed in Routes but not dispatched: %s %s", route, method, path, resp.Status, code)
		}
	}
	for pattern, methods := range listed {
		for _, method := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"} {
			if slices.Contains(methods, method) {
				continue
			}
			path := fill(pattern)
			if resp, code := do(method, path); resp.StatusCode != http.StatusMethodNotAllowed {
				t.Errorf("%s %s answers %s %s: it is not in Routes (list it there, or refuse it with 405)", method, path, resp.Status, code)
			}
		}
	}
}
