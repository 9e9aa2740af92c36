package registry

// Scopes of the registry's bearer tokens, as the docker token protocol
// asks for them: GET /v2/token?scope=repository:NAME:pull,push (the
// parameter may repeat, and one may hold several scopes separated by
// spaces), registry:catalog:* for the catalog. A token asked for with
// scopes allows only those, within the tenant's namespace (a CI job's
// token for app/web cannot push to app/db); one asked for with none
// allows all the tenant's namespace, as the tenant's access token does.
// A request outside its token's scopes is refused with 401 and a
// challenge naming the scope it needs (error="insufficient_scope"), on
// which docker, crane and skopeo ask for a token that has it.

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/macro-cloud/macro/image"
)

// tokenAccess is what a scoped token allows.
type tokenAccess struct {
	Repo    string   `json:"r,omitempty"` // a repository, or "" with Catalog
	Actions []string `json:"a,omitempty"` // "pull", "push"
	Catalog bool     `json:"c,omitempty"`
}

// parseScopes reads the scopes asked for; what is not understood is not
// granted.
func parseScopes(params []string) []tokenAccess {
	var out []tokenAccess
	for _, p := range params {
		for _, s := range strings.Fields(p) {
			typ, rest, ok := strings.Cut(s, ":")
			if !ok {
				continue
			}
			// The name may hold a port's colon in other registries; ours
			// are plain paths, so the actions follow the last colon.
			i := strings.LastIndex(rest, ":")
			if i < 0 {
				continue
			}
			name, actions := rest[:i], strings.Split(rest[i+1:], ",")
			switch typ {
			case "registry":
				if name == "catalog" && slices.Contains(actions, "*") {
					out = append(out, tokenAccess{Catalog: true})
				}
			case "repository":
				if !image.ValidRepository(name) {
					continue
				}
				var granted []string
				for _, a := range actions {
					switch a {
					case "pull", "push":
						granted = append(granted, a)
					case "*":
						granted = append(granted, "pull", "push")
					}
				}
				slices.Sort(granted)
				granted = slices.Compact(granted)
				if len(granted) > 0 {
					out = append(out, tokenAccess{Repo: name, Actions: granted})
				}
			}
		}
	}
	return out
}

// grant is the access of a request's credentials: all of the tenant's
// namespace, or the scopes of its token.
type grant struct {
	scoped bool
	access []tokenAccess
}

func (g grant) allows(repo, action string) bool {
	if !g.scoped {
		return true
	}
	for _, a := range g.access {
		if a.Repo == repo && slices.Contains(a.Actions, action) {
			return true
		}
	}
	return false
}

func (g grant) catalog() bool {
	if !g.scoped {
		return true
	}
	for _, a := range g.access {
		if a.Catalog {
			return true
		}
	}
	return false
}

// need is the repository and action a request needs ("" when it needs
// none, as the ping does).
func need(r *http.Request, p string) (repo, action string) {
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok || rest == "" || rest == "_catalog" {
		return "", ""
	}
	action = "pull"
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		action = "push"
	}
	for _, sep := range []string{"/tags/list", "/manifests/", "/blobs/uploads", "/blobs/"} {
		if i := strings.LastIndex(rest, sep); i > 0 {
			if sep == "/blobs/uploads" {
				action = "push" // an upload's status (GET) is part of pushing
			}
			return rest[:i], action
		}
	}
	return "", ""
}

// checkScope refuses (true) a request its grant does not allow. A mount
// from a repository the grant cannot pull from is no mount: the client
// uploads the blob.
func (g *Registry) checkScope(w http.ResponseWriter, r *http.Request, gr grant, p string) bool {
	if !gr.scoped {
		return false
	}
	if p == "/v2/_catalog" && !gr.catalog() {
		g.insufficientScope(w, r, "registry:catalog:*")
		return true
	}
	repo, action := need(r, p)
	if repo == "" {
		return false
	}
	if !gr.allows(repo, action) {
		scope := "repository:" + repo + ":pull"
		if action == "push" {
			scope += ",push"
		}
		g.insufficientScope(w, r, scope)
		return true
	}
	q := r.URL.Query()
	if from := q.Get("from"); q.Get("mount") != "" && !gr.allows(from, "pull") {
		q.Del("mount")
		q.Del("from")
		r.URL.RawQuery = q.Encode()
	}
	return false
}

// insufficientScope is the 401 of a request outside its token's scopes.
func (g *Registry) insufficientScope(w http.ResponseWriter, r *http.Request, scope string) {
	w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm=%q,service=%q,scope=%q,error="insufficient_scope"`, realm(r), tokenService, scope))
	writeError(w, &regError{http.StatusUnauthorized, "UNAUTHORIZED", "the token does not grant " + scope, nil})
}
