// Package api serves macro's native API under /apis/macro/v1 (docs/API.md):
// the tenant side on the TLS API port (whoami, client certificates,
// namespaces), authenticated by auth.Authenticator, and the admin side
// (tenants, access tokens) on the admin unix socket only, where the file
// mode is the credential. Bodies and answers are JSON; errors are
// {"message": ...} with the status that says what happened.
package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"slices"
	"time"

	"github.com/macro-cloud/macro/auth"
	"github.com/macro-cloud/macro/store"
)

// Prefix is the path of the native API.
const Prefix = "/apis/macro/v1"

// Config wires a Server to its backends.
type Config struct {
	Store *store.Store
	Auth  *auth.Authenticator
	CA    *auth.CA
	// Images removes a tenant's images when the tenant is removed.
	Images TenantImages
	// Cluster names the cluster in /whoami and /certs: kra names its
	// docker context <cluster>.<tenant>.
	Cluster string
	// Domain is the cluster's domain, as `macro server --domain` gives it
	// (the ingress's `*`).
	Domain string
	// VPC says that pods run in VPCs (GET /vpc, /overlays answer);
	// false when they run without.
	VPC bool
	// Resolver looks up the TXT records that prove custom domains
	// (net.DefaultResolver).
	Resolver *net.Resolver
	// VolumeKeys mints volume access keys (access.Keys); nil refuses
	// to make them.
	VolumeKeys VolumeKeyMaker
	Log        *slog.Logger
	// Now is the clock (time.Now).
	Now func() time.Time
}

// Server serves the native API.
type Server struct {
	store    *store.Store
	auth     *auth.Authenticator
	ca       *auth.CA
	images   TenantImages
	cluster  string
	domain   string
	resolver *net.Resolver
	// httpCheck reaches custom domains for their HTTP check.
	httpCheck httpCheck
	log       *slog.Logger
	now       func() time.Time
	volumes   Volumes
	// volumeFiles reach the files of volumes (export and import).
	volumeFiles VolumeFiles
	volumeNodes VolumeNodes
	volumeKeys  VolumeKeyMaker
	vpc         bool
}

// New returns a Server.
func New(cfg Config) *Server {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	return &Server{store: cfg.Store, auth: cfg.Auth, ca: cfg.CA, images: cfg.Images, cluster: cfg.Cluster, domain: cfg.Domain, resolver: cfg.Resolver, vpc: cfg.VPC, log: cfg.Log.With("subsystem", "api"), now: cfg.Now, volumeKeys: cfg.VolumeKeys}
}

// Handler serves the tenant side of the API (mount it at /apis/ of the API
// port). Every endpoint but GET /ca needs a token or a client certificate.
func (s *Server) Handler() http.Handler { return s.tenantMux() }

// Routes returns the patterns of the tenant side's endpoints, full paths
// ("GET /apis/macro/v1/namespaces/{name}"). The isolation sweep of the
// end-to-end tests (e2e/isolation_test.go) calls each of them as another
// tenant and without credentials: a new endpoint joins it by being
// registered in tenantMux.
func (s *Server) Routes() []string { return slices.Clone(s.tenantMux().routes) }

func (s *Server) tenantMux() *mux {
	m := newMux(s.log)
	m.handle("GET /ca", s.getCA)
	m.handle("GET /whoami", s.authed(s.whoami))
	m.handle("POST /certs", s.authed(s.createCerts))
	m.handle("GET /namespaces", s.authed(s.listNamespaces))
	m.handle("POST /namespaces", s.authed(s.createNamespace))
	m.handle("GET /namespaces/{name}", s.authed(s.getNamespace))
	m.handle("DELETE /namespaces/{name}", s.authed(s.deleteNamespace))
	m.handle("GET /ingresses", s.authed(s.listIngresses))
	m.handle("GET /vpc", s.authed(s.getVPC))
	m.handle("GET /overlays", s.authed(s.listOverlays))
	m.handle("GET /overlays/{ref...}", s.authed(s.getOverlay))
	m.handle("GET /domains", s.authed(s.listDomains))
	m.handle("POST /domains", s.authed(s.createDomain))
	m.handle("GET /domains/{name}", s.authed(s.getDomain))
	m.handle("DELETE /domains/{name}", s.authed(s.deleteDomain))
	m.handle("POST /domains/{name}/verify", s.authed(s.verifyDomain))
	m.handle("POST /cluster/join", s.joinCluster)
	m.handle("GET /nodes", s.authed(s.listNodes))
	s.routeVolumes(m)
	s.routeVolumeData(m)
	m.handle("GET /volumekeys", s.authed(s.listVolumeKeys))
	m.handle("POST /volumekeys", s.authed(s.createVolumeKey))
	m.handle("DELETE /volumekeys/{id}", s.authed(s.deleteVolumeKey))
	return m
}

// AdminHandler serves the admin side of the API; serve it on the admin
// unix socket only.
func (s *Server) AdminHandler() http.Handler { return s.adminMux() }

// AdminRoutes returns the patterns of the admin side's endpoints, full
// paths, as Routes does for the tenant side. None of them may answer on
// the API port.
func (s *Server) AdminRoutes() []string { return slices.Clone(s.adminMux().routes) }

func (s *Server) adminMux() *mux {
	m := newMux(s.log)
	m.handle("GET /ca", s.getCA)
	m.handle("GET /tenants", s.listTenants)
	m.handle("POST /tenants", s.createTenant)
	m.handle("GET /tenants/{name}", s.getTenant)
	m.handle("DELETE /tenants/{name}", s.deleteTenant)
	m.handle("PUT /tenants/{name}/quota", s.setQuota)
	m.handle("PUT /tenants/{name}/egress", s.setEgress)
	m.handle("PUT /tenants/{name}/suspend", s.setSuspend)
	m.handle("GET /tenants/{name}/usage", s.getUsage)
	m.handle("GET /tenants/{name}/tokens", s.listTokens)
	m.handle("POST /tenants/{name}/tokens", s.createTokenHandler)
	m.handle("DELETE /tenants/{name}/tokens/{id}", s.deleteToken)
	m.handle("GET /join-tokens", s.listJoinTokens)
	m.handle("POST /join-tokens", s.createJoinToken)
	m.handle("DELETE /join-tokens/{id}", s.deleteJoinToken)
	m.handle("GET /members", s.listMembers)
	m.handle("DELETE /members/{name}", s.removeMember)
	m.handle("GET /nodes", s.listAdminNodes)
	m.handle("DELETE /nodes/{name}", s.deleteNode)
	m.handle("POST /nodes/{name}/rotate-key", s.rotateNodeKey)
	return m
}

// handlerFunc is an HTTP handler that returns its error instead of writing
// it.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// mux is a ServeMux of handlerFuncs under Prefix that answers unknown
// paths (404) and wrong methods (405) in JSON too.
type mux struct {
	*http.ServeMux
	log    *slog.Logger
	paths  map[string]bool
	routes []string // the patterns of handle, full paths
}

func newMux(log *slog.Logger) *mux {
	m := &mux{ServeMux: http.NewServeMux(), log: log, paths: map[string]bool{}}
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, errorf(http.StatusNotFound, "page not found: %s %s", r.Method, r.URL.Path))
	})
	return m
}

func (m *mux) handle(pattern string, fn handlerFunc) {
	method, path, _ := cutSpace(pattern)
	m.routes = append(m.routes, method+" "+Prefix+path)
	m.HandleFunc(method+" "+Prefix+path, func(w http.ResponseWriter, r *http.Request) {
		if err := fn(w, r); err != nil {
			var ae *apiError
			var authErr *auth.Error
			var se statusError
			if !errors.As(err, &authErr) && (!errors.As(err, &ae) || ae.status >= 500) && (!errors.As(err, &se) || se.HTTPStatus() >= 500) {
				m.log.Warn("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
			}
			writeError(w, err)
		}
	})
	if !m.paths[path] {
		m.paths[path] = true
		m.HandleFunc(Prefix+path, func(w http.ResponseWriter, r *http.Request) {
			writeError(w, errorf(http.StatusMethodNotAllowed, "method %s not allowed on %s", r.Method, r.URL.Path))
		})
	}
}

func cutSpace(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == ' ' {
			return s[:i], s[i+1:], true
		}
	}
	return "", s, false
}

// authed authenticates the caller (token or client certificate) and puts
// the Identity into the request's context.
func (s *Server) authed(fn handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		id, err := s.auth.Authenticate(r)
		if err != nil {
			return err
		}
		return fn(w, r.WithContext(auth.WithIdentity(r.Context(), id)))
	}
}

// caller is the identity authed put into the context.
func caller(r *http.Request) auth.Identity {
	id, _ := auth.IdentityFrom(r.Context())
	return id
}

// apiError is an error with the HTTP status to answer it with.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func errorf(status int, format string, args ...any) error {
	return &apiError{status: status, msg: fmt.Sprintf(format, args...)}
}

// writeError answers with err's status and message; errors of the store
// that mean "not found" or "exists" become 404 and 409.
func writeError(w http.ResponseWriter, err error) {
	var ae *apiError
	var se statusError
	switch {
	case errors.As(err, &ae):
		writeJSON(w, ae.status, map[string]string{"message": ae.msg})
	case errors.As(err, &se):
		writeJSON(w, se.HTTPStatus(), map[string]string{"message": err.Error()})
	case errors.Is(err, store.ErrNotFound):
		writeJSON(w, http.StatusNotFound, map[string]string{"message": err.Error()})
	case errors.Is(err, store.ErrExists):
		writeJSON(w, http.StatusConflict, map[string]string{"message": err.Error()})
	default:
		auth.WriteError(w, err) // *auth.Error with its status, else 500
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// maxBody bounds a request body.
const maxBody = 64 << 10

// decodeBody reads a JSON body into v; an empty body leaves v as it is.
// Unknown fields are refused, so that a typo does not pass unnoticed.
func decodeBody(r *http.Request, v any) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return errorf(http.StatusBadRequest, "reading the body: %v", err)
	}
	if len(b) > maxBody {
		return errorf(http.StatusRequestEntityTooLarge, "body larger than %d bytes", maxBody)
	}
	if len(b) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errorf(http.StatusBadRequest, "invalid JSON body: %v", err)
	}
	if dec.More() {
		return errorf(http.StatusBadRequest, "invalid JSON body: more than one value")
	}
	return nil
}

// Names of tenants are DNS labels; namespaces are compose project names.
var (
	tenantNameRE    = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	namespaceNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
)

// ValidTenantName checks a tenant's name.
func ValidTenantName(name string) error {
	if !tenantNameRE.MatchString(name) {
		return errorf(http.StatusBadRequest, "invalid tenant name %q: use 1 to 63 lowercase letters, digits and '-', starting and ending with a letter or digit", name)
	}
	return nil
}

// ValidNamespaceName checks a namespace's name (a compose project name).
func ValidNamespaceName(name string) error {
	if !namespaceNameRE.MatchString(name) {
		return errorf(http.StatusBadRequest, "invalid namespace name %q: use 1 to 63 lowercase letters, digits, '-' and '_', starting with a letter or digit", name)
	}
	return nil
}
