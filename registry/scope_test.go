package registry

import (
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/macro-cloud/macro/internal/testimages"
)

func TestParseScopes(t *testing.T) {
	for _, tt := range []struct {
		params []string
		want   []tokenAccess
	}{
		{[]string{"repository:app/web:pull,push"}, []tokenAccess{{Repo: "app/web", Actions: []string{"pull", "push"}}}},
		{[]string{"repository:a:pull repository:b:*", "registry:catalog:*"}, []tokenAccess{{Repo: "a", Actions: []string{"pull"}}, {Repo: "b", Actions: []string{"pull", "push"}}, {Catalog: true}}},
		{[]string{"repository:a:delete,push,push"}, []tokenAccess{{Repo: "a", Actions: []string{"push"}}}},
		{[]string{"repository:Bad/Name:pull", "repository:a:", "repository:a", "garbage", "registry:other:*", "registry:catalog:pull"}, nil},
	} {
		if got := parseScopes(tt.params); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("parseScopes(%q) = %+v, want %+v", tt.params, got, tt.want)
		}
	}
}

// FuzzParseScopes: whatever a client asks for, a token grants only pull
// and push on valid repository names of the tenant, or the catalog.
func FuzzParseScopes(f *testing.F) {
	f.Add("repository:app/web:pull,push registry:catalog:*")
	f.Add("repository:a:b:c:*")
	f.Fuzz(func(t *testing.T, s string) {
		for _, a := range parseScopes([]string{s}) {
			if a.Catalog {
				if a.Repo != "" || a.Actions != nil {
					t.Fatalf("catalog access %+v", a)
				}
				continue
			}
			if !validRepo(a.Repo) || len(a.Actions) == 0 {
				t.Fatalf("access %+v", a)
			}
			for _, act := range a.Actions {
				if act != "pull" && act != "push" {
					t.Fatalf("action %q", act)
				}
			}
		}
	})
}

func validRepo(s string) bool {
	return s != "" && !strings.ContainsAny(s, ": \t") && strings.ToLower(s) == s
}

func TestNeed(t *testing.T) {
	for _, tt := range []struct{ method, path, repo, action string }{
		{"GET", "/v2/", "", ""},
		{"GET", "/v2/_catalog", "", ""},
		{"GET", "/v2/a/b/tags/list", "a/b", "pull"},
		{"HEAD", "/v2/a/manifests/1", "a", "pull"},
		{"PUT", "/v2/a/manifests/1", "a", "push"},
		{"GET", "/v2/a/blobs/sha256:00", "a", "pull"},
		{"POST", "/v2/a/blobs/uploads/", "a", "push"},
		{"GET", "/v2/a/blobs/uploads/1234", "a", "push"},
		{"GET", "/v2/blobs/manifests/x", "blobs", "pull"},
	} {
		r, _ := http.NewRequest(tt.method, "http://x"+tt.path, nil)
		if repo, action := need(r, tt.path); repo != tt.repo || action != tt.action {
			t.Errorf("%s %s: %q %q, want %q %q", tt.method, tt.path, repo, action, tt.repo, tt.action)
		}
	}
}

// A token asked for with scopes allows those and nothing else of the
// tenant; a request outside them gets the challenge that names its scope.
func TestScopedTokens(t *testing.T) {
	e := newEnv(t, nil)
	token := func(t *testing.T, scopes ...string) string {
		q := url.Values{"service": {"macro"}}
		for _, s := range scopes {
			q.Add("scope", s)
		}
		resp := e.do(t, "GET", "/v2/token?"+q.Encode(), "tok-alice", nil)
		var tok struct{ Token string }
		if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || resp.StatusCode != 200 {
			t.Fatalf("token: %d %v", resp.StatusCode, err)
		}
		return "Bearer " + tok.Token
	}
	blob := []byte("a layer")
	d := digestOf(blob)
	if resp := e.do(t, "POST", "/v2/app/db/blobs/uploads/?digest="+d, "tok-alice", blob); resp.StatusCode != 201 {
		t.Fatalf("upload to app/db: %d", resp.StatusCode)
	}

	web := token(t, "repository:app/web:pull,push")
	do := func(t *testing.T, auth, method, path string, body []byte) *http.Response {
		return e.do(t, method, path, "", body, "Authorization", auth)
	}
	if resp := do(t, web, "GET", "/v2/", nil); resp.StatusCode != 200 {
		t.Errorf("ping with a scoped token: %d", resp.StatusCode)
	}
	small := []byte("web's blob")
	if resp := do(t, web, "POST", "/v2/app/web/blobs/uploads/?digest="+digestOf(small), small); resp.StatusCode != 201 {
		t.Errorf("push to app/web: %d", resp.StatusCode)
	}
	for _, c := range []struct{ method, path, scope string }{
		{"POST", "/v2/app/db/blobs/uploads/", `scope="repository:app/db:pull,push"`},
		{"HEAD", "/v2/app/db/blobs/" + d, `scope="repository:app/db:pull"`},
		{"PUT", "/v2/app/db/manifests/1", `scope="repository:app/db:pull,push"`},
		{"GET", "/v2/_catalog", `scope="registry:catalog:*"`},
	} {
		resp := do(t, web, c.method, c.path, nil)
		ch := resp.Header.Get("WWW-Authenticate")
		if resp.StatusCode != 401 || !strings.Contains(ch, c.scope) || !strings.Contains(ch, `error="insufficient_scope"`) {
			t.Errorf("%s %s with app/web's token: %d %q", c.method, c.path, resp.StatusCode, ch)
		}
	}
	// A mount from a repository the token cannot pull from is an upload.
	resp := do(t, web, "POST", "/v2/app/web/blobs/uploads/?mount="+d+"&from=app/db", nil)
	if resp.StatusCode != 202 {
		t.Errorf("mount from app/db with app/web's token: %d", resp.StatusCode)
	}
	both := token(t, "repository:app/web:push,pull repository:app/db:pull")
	if resp := do(t, both, "POST", "/v2/app/web/blobs/uploads/?mount="+d+"&from=app/db", nil); resp.StatusCode != 201 {
		t.Errorf("mount from app/db with pull on it: %d", resp.StatusCode)
	}
	// Pull only.
	pull := token(t, "repository:app/db:pull")
	if resp := do(t, pull, "HEAD", "/v2/app/db/blobs/"+d, nil); resp.StatusCode != 200 {
		t.Errorf("HEAD with pull: %d", resp.StatusCode)
	}
	if resp := do(t, pull, "POST", "/v2/app/db/blobs/uploads/", nil); resp.StatusCode != 401 {
		t.Errorf("push with pull only: %d", resp.StatusCode)
	}
	// Scopes asked for but none understood: nothing but the ping.
	none := token(t, "repository:Not Valid:pull")
	if resp := do(t, none, "HEAD", "/v2/app/db/blobs/"+d, nil); resp.StatusCode != 401 {
		t.Errorf("a token of no scope: %d", resp.StatusCode)
	}
	// No scope asked for: the whole namespace, as before.
	all := token(t)
	if resp := do(t, all, "GET", "/v2/_catalog", nil); resp.StatusCode != 200 {
		t.Errorf("catalog with an unscoped token: %d", resp.StatusCode)
	}
	// Bob asking for alice's repository gets a token for his own of that
	// name: alice's blob is not there.
	q := url.Values{"service": {"macro"}, "scope": {"repository:app/web:pull,push"}}
	var tok struct{ Token string }
	json.NewDecoder(e.do(t, "GET", "/v2/token?"+q.Encode(), "tok-bob", nil).Body).Decode(&tok)
	if resp := do(t, "Bearer "+tok.Token, "HEAD", "/v2/app/web/blobs/"+digestOf(small), nil); resp.StatusCode != 404 {
		t.Errorf("bob's HEAD of alice's blob with a scoped token: %d", resp.StatusCode)
	}
	if resp := do(t, web, "HEAD", "/v2/app/web/blobs/"+digestOf(small), nil); resp.StatusCode != 200 {
		t.Errorf("alice's own blob: %d", resp.StatusCode)
	}

	// crane's library asks for a token per repository and, on the
	// challenge, for the scope it lacks: two repositories in a row work.
	img := testimages.BusyboxImage(t)
	for _, r := range []string{"app/one:1", "app/two:1"} {
		if err := remote.Write(e.ref(t, r), img, as("tok-alice")); err != nil {
			t.Fatalf("crane push %s: %v", r, err)
		}
	}
	tags, err := remote.List(e.ref(t, "app/two:1").Context(), as("tok-alice"))
	if err != nil || !slices.Equal(tags, []string{"1"}) {
		t.Errorf("tags %v %v", tags, err)
	}
}
