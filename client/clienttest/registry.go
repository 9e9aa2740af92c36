package clienttest

import (
	"io"
	"log"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/registry"
)

// registry serves /v2/: an in-memory OCI registry (go-containerregistry's)
// per tenant, reached with the tenant's token as a bearer token, as macro's
// registry is by kra push.
func (s *Server) registry(w http.ResponseWriter, r *http.Request) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	tenant := s.Tokens[token]
	if !ok || tenant == "" {
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("WWW-Authenticate", `Bearer realm="`+s.URL+`/v2/token",service="clienttest"`)
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
		return
	}
	if s.registries == nil {
		s.registries = map[string]http.Handler{}
	}
	h := s.registries[tenant]
	if h == nil {
		h = registry.New(registry.Logger(log.New(io.Discard, "", 0)))
		s.registries[tenant] = h
	}
	busy := s.registryBusy
	s.mu.Unlock()
	if busy && strings.Contains(r.URL.Path, "/blobs/uploads/") {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		io.WriteString(w, `{"errors":[{"code":"TOOMANYREQUESTS","message":"too many uploads in progress: retry later"}]}`)
		return
	}
	h.ServeHTTP(w, r)
}

// SetRegistryBusy makes the registry refuse uploads with 429, as macro's
// does when the room for uploads in progress is taken.
func (s *Server) SetRegistryBusy(busy bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.registryBusy = busy
}
