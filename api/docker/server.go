// Package docker emulates the Docker Engine API on top of macro's state
// store: a container is a pod, images come from the image store, and every
// answer, error included, has the shape the docker CLI and docker-py expect.
// It is an emulation, not a proxy: there is no dockerd behind it.
package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/macro-cloud/macro/auth"
	"github.com/macro-cloud/macro/store"
	"github.com/macro-cloud/macro/types"
)

// APIVersion is the newest Engine API version served; MinAPIVersion the
// oldest a client may negotiate down to.
const (
	APIVersion    = "1.50"
	MinAPIVersion = "1.24"
)

// Server serves the Docker Engine API.
type Server struct {
	log     *slog.Logger
	store   *store.Store
	images  Images
	nodes   Nodes
	events  *Events
	execs   execRegistry
	info    Info
	started time.Time
	// tenantFromContext: see Config.TenantFromContext.
	tenantFromContext bool
	localLogin        func(ctx context.Context, tenant, password string) (bool, error)
	fetchImage        func(ctx context.Context, tenant, ref string) error
	cluster           ClusterImages

	// routes are the patterns handle registered, in order, once each
	// (see Routes).
	routesMu sync.Mutex
	routes   []string
}

// Info describes the cloud for `docker info` and `docker version`.
type Info struct {
	Name           string
	Version        string
	GitCommit      string
	DataDir        string
	DefaultRuntime string
	Runtimes       []string
	KernelVersion  string
	OS             string
	Arch           string
	CPUs           int
	MemoryBytes    int64
}

// Config wires a Server to its backends.
type Config struct {
	Log    *slog.Logger
	Store  *store.Store
	Images Images
	Nodes  Nodes
	Info   Info
	// TenantFromContext makes the caller's tenant the one that the
	// authentication in front of the handler put into the request's
	// context (auth.WithTenant, auth.Middleware), tenant default when it
	// put none. Without it, every request is tenant default: the
	// single-tenant machine.
	TenantFromContext bool
	// LocalLogin checks the credentials of a `docker login` to this
	// cloud's own registry: true when password is a valid access token
	// of tenant, an error when it cannot tell. Without it, such a login
	// is refused.
	LocalLogin func(ctx context.Context, tenant, password string) (bool, error)
	// FetchImage brings an image of tenant that this server lacks from
	// another server of the cluster, by name or ID; nil: none is asked.
	FetchImage func(ctx context.Context, tenant, ref string) error
	// Cluster is the cluster's image index (clusterimages.go); nil: this
	// server's store is all there is.
	Cluster ClusterImages
}

// New returns a Server. Call Run to feed its event stream.
func New(cfg Config) *Server {
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	return &Server{
		log:     log.With("subsystem", "docker-api"),
		store:   cfg.Store,
		images:  cfg.Images,
		nodes:   cfg.Nodes,
		events:  newEvents(),
		info:    cfg.Info,
		started: time.Now(),

		tenantFromContext: cfg.TenantFromContext,
		localLogin:        cfg.LocalLogin,
		fetchImage:        cfg.FetchImage,
		cluster:           cfg.Cluster,
	}
}

var versionPrefix = regexp.MustCompile(`^/v([0-9]+\.[0-9]+)(/.*)$`)

// Handler returns the HTTP handler of the whole API.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	s.routeSystem(mux)
	s.routeContainers(mux)
	s.routeExec(mux)
	s.routeImages(mux)
	s.routeNetworks(mux)
	s.routeVolumes(mux)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Api-Version", APIVersion)
		w.Header().Set("Server", "macro/"+s.info.Version)
		w.Header().Set("Ostype", "linux")
		if m := versionPrefix.FindStringSubmatch(r.URL.Path); m != nil {
			if versionLess(m[1], MinAPIVersion) {
				writeError(w, errorf(http.StatusBadRequest, "client version %s is too old. Minimum supported API version is %s, please upgrade your client to a newer version", m[1], MinAPIVersion))
				return
			}
			if versionLess(APIVersion, m[1]) {
				writeError(w, errorf(http.StatusBadRequest, "client version %s is too new. Maximum supported API version is %s", m[1], APIVersion))
				return
			}
			r = r.WithContext(context.WithValue(r.Context(), versionKey{}, m[1]))
			r.URL.Path = m[2]
			r.URL.RawPath = ""
		}
		if !s.tenantFromContext {
			r = r.WithContext(auth.WithTenant(r.Context(), types.DefaultTenant))
		}
		mux.ServeHTTP(w, r)
	})
}

type versionKey struct{}

// requestTenant is the tenant of the caller of r: the one in the request's
// context (see Config.TenantFromContext), tenant default when there is none.
func requestTenant(r *http.Request) string {
	if t, ok := auth.TenantFrom(r.Context()); ok {
		return t
	}
	return types.DefaultTenant
}

// clientVersion is the API version the request was made with.
func clientVersion(r *http.Request) string {
	if v, ok := r.Context().Value(versionKey{}).(string); ok {
		return v
	}
	return APIVersion
}

func versionLess(a, b string) bool {
	var amaj, amin, bmaj, bmin int
	fmt.Sscanf(a, "%d.%d", &amaj, &amin)
	fmt.Sscanf(b, "%d.%d", &bmaj, &bmin)
	return amaj < bmaj || (amaj == bmaj && amin < bmin)
}

// handlerFunc is an HTTP handler that returns its error instead of writing it.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// Routes returns the pattern of every endpoint of the API, as registered
// on the ServeMux ("GET /containers/{id}/json", "/" for the fallback),
// without the optional /vX.Y prefix. The isolation sweep of the end-to-end
// tests (e2e/isolation_test.go) calls each of them as another tenant: a
// new endpoint joins it by being registered with handle.
func (s *Server) Routes() []string {
	s.Handler() // registers every route on a throwaway mux
	s.routesMu.Lock()
	defer s.routesMu.Unlock()
	return slices.Clone(s.routes)
}

// handle registers fn for pattern ("GET /containers/{id}/json") and records
// the pattern for Routes.
func (s *Server) handle(mux *http.ServeMux, pattern string, fn handlerFunc) {
	s.routesMu.Lock()
	if !slices.Contains(s.routes, pattern) {
		s.routes = append(s.routes, pattern)
	}
	s.routesMu.Unlock()
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if err := fn(w, r); err != nil {
			var ae *apiError
			if !errors.As(err, &ae) || ae.status >= 500 {
				s.log.Warn("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
			}
			writeError(w, err)
		}
	})
}

// apiError carries the HTTP status of an error to the edge.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func errorf(status int, format string, args ...any) error {
	return &apiError{status: status, msg: fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) error {
	return errorf(http.StatusNotFound, format, args...)
}

func badRequest(format string, args ...any) error {
	return errorf(http.StatusBadRequest, format, args...)
}

func conflict(format string, args ...any) error {
	return errorf(http.StatusConflict, format, args...)
}

// statusOf maps an error to the status the docker CLI expects.
func statusOf(err error) int {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.status
	}
	var se interface{ HTTPStatus() int }
	if errors.As(err, &se) {
		return se.HTTPStatus()
	}
	if errors.Is(err, context.Canceled) {
		return 499
	}
	return http.StatusInternalServerError
}

// writeError answers with Docker's error shape: {"message": "..."}.
func writeError(w http.ResponseWriter, err error) {
	writeJSON(w, statusOf(err), map[string]string{"message": err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.Encode(v)
}

// decodeBody reads a JSON request body into v, with Docker's message for bad JSON.
func decodeBody(r *http.Request, v any) error {
	if r.Body == nil {
		return badRequest("invalid JSON: empty body")
	}
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 4<<20))
	if err := dec.Decode(v); err != nil {
		if err.Error() == "EOF" {
			return badRequest("invalid JSON: empty body")
		}
		return badRequest("invalid JSON: %v", err)
	}
	return nil
}

// boolValue reads a query flag the way the Docker daemon does: "", "0",
// "false" and "no" are false.
func boolValue(r *http.Request, name string) bool {
	v := strings.ToLower(strings.TrimSpace(r.URL.Query().Get(name)))
	return !(v == "" || v == "0" || v == "no" || v == "false" || v == "none")
}
