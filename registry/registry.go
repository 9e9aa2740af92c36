// Package registry serves the OCI distribution API (/v2/) over the node's
// image store, one namespace per tenant: `kra push`, `docker push`, crane
// and skopeo push there, and what they push runs with `docker run` in the
// same tenant and nowhere else.
//
// Names. A repository is a name in the tenant's own namespace, the one
// `docker images` shows: pushing HOST:PORT/foo/bar:1 makes the tenant's
// image foo/bar:1, HOST:PORT/foo:1 (or HOST:PORT/library/foo:1) makes
// foo:1, and both `docker run foo:1` and `docker run HOST:PORT/foo:1` run
// it (the Docker API on the same port strips its own host). The other way
// round, every tagged image of the tenant, pulled or loaded, can be pulled
// from the registry under that name. See image/push.go.
//
// Authentication. Every request but the token endpoint needs credentials:
// the tenant's token as a bearer token, basic auth with the token as
// password (any user name), or a short-lived bearer token from /v2/token.
// Without them the answer is 401 with
// `WWW-Authenticate: Bearer realm="<scheme>://<host>/v2/token",service="macro"`,
// the docker token flow: clients (docker, crane, skopeo) then GET
// /v2/token with basic auth and retry with the token it returns, an
// HMAC-signed (tenant, expiry, scopes) whose key lives in the data dir,
// good for the repositories and actions it was asked for (scope.go). Another
// tenant's repositories, blobs, manifests and uploads answer 404 as if they
// did not exist.
//
// Uploads (POST, PATCH, PUT of /v2/<name>/blobs/uploads/) are written to
// the image store's tmp directory, bounded per upload, per tenant (bytes
// and number) and in total, resumable by their UUID (GET tells where one
// is) until they are idle for Config.UploadTTL or the server restarts, and
// verified against their digest before they become blobs.
package registry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/macro-cloud/macro/image"
)

// Config configures a Registry.
type Config struct {
	Store *image.Store
	// Authenticate tells the tenant of a request's credentials (a bearer
	// token, or basic auth with the token as password); ok is false when
	// there are none or they are not valid.
	Authenticate func(*http.Request) (tenant string, ok bool)
	// TenantActive, when set, is asked on every use of one of the
	// registry's own bearer tokens: a token of a removed tenant stops
	// working at once rather than when it expires.
	TenantActive func(ctx context.Context, tenant string) bool
	// KeyFile holds the HMAC key of the registry's bearer tokens; it is
	// created (0600) when missing. Empty: a key for the life of the
	// process.
	KeyFile string
	// TokenTTL is the lifetime of a bearer token of /v2/token (10 min).
	TokenTTL time.Duration
	// Fetch, when set, copies an image of tenant that this server's store
	// lacks from another server of the cluster, by its familiar name
	// ("foo/bar:1"): a pull by tag through any server finds it.
	Fetch func(ctx context.Context, tenant, ref string) error
	// MaxUploadSize bounds one blob upload (10 GiB); MaxUploadsSize all
	// uploads in progress together (32 GiB); MaxTenantUploadsSize those of
	// one tenant (16 GiB), and MaxTenantUploads their number (64), so that
	// one tenant cannot take every upload's room or fill the disk with
	// empty uploads.
	MaxUploadSize        int64
	MaxUploadsSize       int64
	MaxTenantUploadsSize int64
	MaxTenantUploads     int
	// UploadTTL is how long an idle upload can be resumed (1 h).
	UploadTTL time.Duration
	Log       *slog.Logger
}

// Registry is the /v2/ handler.
type Registry struct {
	cfg    Config
	store  *image.Store
	log    *slog.Logger
	tokens *tokenSigner
	now    func() time.Time

	mu      sync.Mutex
	uploads map[string]*upload
	total   int64            // bytes of all uploads in progress
	tenants map[string]int64 // bytes of each tenant's uploads in progress
	count   map[string]int   // each tenant's uploads in progress
}

// New makes a registry over cfg.Store.
func New(cfg Config) (*Registry, error) {
	if cfg.Store == nil || cfg.Authenticate == nil {
		return nil, errors.New("registry: a store and an authenticator are required")
	}
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = 10 * time.Minute
	}
	if cfg.MaxUploadSize <= 0 {
		cfg.MaxUploadSize = 10 << 30
	}
	if cfg.MaxUploadsSize <= 0 {
		cfg.MaxUploadsSize = 32 << 30
	}
	if cfg.MaxTenantUploadsSize <= 0 {
		cfg.MaxTenantUploadsSize = 16 << 30
	}
	if cfg.MaxTenantUploads <= 0 {
		cfg.MaxTenantUploads = 64
	}
	if cfg.UploadTTL <= 0 {
		cfg.UploadTTL = time.Hour
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	signer, err := newTokenSigner(cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	return &Registry{
		cfg:     cfg,
		store:   cfg.Store,
		log:     cfg.Log.With("subsystem", "registry"),
		tokens:  signer,
		now:     time.Now,
		uploads: map[string]*upload{},
		tenants: map[string]int64{},
		count:   map[string]int{},
	}, nil
}

// Run removes abandoned uploads and collects unreferenced pushed content
// until ctx ends.
func (g *Registry) Run(ctx context.Context) {
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	lastGC := g.now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		g.expireUploads()
		if g.now().Sub(lastGC) >= time.Hour {
			lastGC = g.now()
			if n, err := g.store.CollectGarbage(ctx); err != nil {
				g.log.Warn("garbage collection", "err", err)
			} else if n > 0 {
				g.log.Info("garbage collection", "blobs", n)
			}
		}
	}
}

// ServeHTTP serves /v2/...
func (g *Registry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	p := r.URL.Path
	if p == "/v2/token" {
		g.token(w, r)
		return
	}
	tenant, gr, ok := g.authenticate(r)
	if !ok {
		g.challenge(w, r)
		return
	}
	if g.checkScope(w, r, gr, p) {
		return
	}
	if err := g.route(w, r, tenant, p); err != nil {
		writeError(w, err)
	}
}

// Routes lists every request the registry serves, as method and path
// pattern ("GET /v2/{name}/manifests/{reference}"; {name} may hold
// slashes, {uuid} is an upload's). ServeHTTP and route dispatch by hand;
// this list documents them, and TestRoutesDispatched checks both ways that
// it is what they dispatch (each listed route reaches its handler, every
// other method on the same path is refused), so that it cannot drift.
// The isolation sweep of the end-to-end tests (e2e/isolation_test.go)
// calls each of them as another tenant and without credentials.
func Routes() []string {
	return []string{
		"GET /v2/token",
		"GET /v2/",
		"HEAD /v2/",
		"GET /v2/_catalog",
		"GET /v2/{name}/tags/list",
		"HEAD /v2/{name}/tags/list",
		"GET /v2/{name}/manifests/{reference}",
		"HEAD /v2/{name}/manifests/{reference}",
		"PUT /v2/{name}/manifests/{reference}",
		"GET /v2/{name}/blobs/{digest}",
		"HEAD /v2/{name}/blobs/{digest}",
		"POST /v2/{name}/blobs/uploads/",
		"GET /v2/{name}/blobs/uploads/{uuid}",
		"PATCH /v2/{name}/blobs/uploads/{uuid}",
		"PUT /v2/{name}/blobs/uploads/{uuid}",
		"DELETE /v2/{name}/blobs/uploads/{uuid}",
	}
}

func (g *Registry) route(w http.ResponseWriter, r *http.Request, tenant, p string) error {
	// A bearer token of the registry outlives the request that bought
	// it: its tenant may have been removed since.
	if g.cfg.TenantActive != nil && !g.cfg.TenantActive(r.Context(), tenant) {
		g.challenge(w, r)
		return nil
	}
	if p == "/v2/" || p == "/v2" {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			return errUnsupported
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "2")
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			io.WriteString(w, "{}")
		}
		return nil
	}
	if p == "/v2/_catalog" {
		return g.catalog(w, r, tenant)
	}
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		return errNotFound
	}
	v := g.store.Tenant(tenant)
	if name, ok := strings.CutSuffix(rest, "/tags/list"); ok {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			return errUnsupported
		}
		return g.tagsList(w, r, v, name)
	}
	if i := strings.LastIndex(rest, "/manifests/"); i > 0 {
		return g.manifest(w, r, v, rest[:i], rest[i+len("/manifests/"):])
	}
	if i := strings.LastIndex(rest, "/blobs/uploads"); i > 0 {
		id := strings.TrimPrefix(rest[i+len("/blobs/uploads"):], "/")
		return g.uploadRoute(w, r, v, rest[:i], id)
	}
	if i := strings.LastIndex(rest, "/blobs/"); i > 0 {
		return g.blob(w, r, v, rest[:i], rest[i+len("/blobs/"):])
	}
	return errNotFound
}

// --- errors ---

// regError is an error of the distribution API: a status and an OCI code.
type regError struct {
	status  int
	code    string
	message string
	detail  any
}

func (e *regError) Error() string { return e.code + ": " + e.message }

var (
	errNotFound     = &regError{http.StatusNotFound, "NOT_FOUND", "not found", nil}
	errUnsupported  = &regError{http.StatusMethodNotAllowed, "UNSUPPORTED", "the operation is unsupported", nil}
	errUnauthorized = &regError{http.StatusUnauthorized, "UNAUTHORIZED", "authentication required", nil}
	errUploadGone   = &regError{http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry", nil}
)

func codeError(status int, code, msg string) *regError {
	return &regError{status: status, code: code, message: msg}
}

// asRegError maps the store's errors to the API's.
func asRegError(err error) *regError {
	var re *regError
	if errors.As(err, &re) {
		return re
	}
	for _, m := range []struct {
		target error
		status int
		code   string
	}{
		{image.ErrBlobUnknown, http.StatusNotFound, "BLOB_UNKNOWN"},
		{image.ErrManifestUnknown, http.StatusNotFound, "MANIFEST_UNKNOWN"},
		{image.ErrNameUnknown, http.StatusNotFound, "NAME_UNKNOWN"},
		{image.ErrNameInvalid, http.StatusBadRequest, "NAME_INVALID"},
		{image.ErrDigestInvalid, http.StatusBadRequest, "DIGEST_INVALID"},
		{image.ErrManifestBlobUnknown, http.StatusBadRequest, "MANIFEST_BLOB_UNKNOWN"},
		{image.ErrManifestInvalid, http.StatusBadRequest, "MANIFEST_INVALID"},
		{image.ErrQuotaExceeded, http.StatusForbidden, "DENIED"},
	} {
		if errors.Is(err, m.target) {
			return codeError(m.status, m.code, err.Error())
		}
	}
	return codeError(http.StatusInternalServerError, "UNKNOWN", err.Error())
}

func writeError(w http.ResponseWriter, err error) {
	re := asRegError(err)
	type item struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Detail  any    `json:"detail"`
	}
	b, _ := json.Marshal(struct {
		Errors []item `json:"errors"`
	}{[]item{{re.code, re.message, re.detail}}})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(re.status)
	w.Write(b)
}

// --- catalog, tags ---

// page cuts a sorted list as ?n=&last= ask, and sets the Link header of
// the next page.
func page(w http.ResponseWriter, r *http.Request, all []string) ([]string, error) {
	q := r.URL.Query()
	if last := q.Get("last"); last != "" {
		i := sort.SearchStrings(all, last)
		if i < len(all) && all[i] == last {
			i++
		}
		all = all[i:]
	}
	if ns := q.Get("n"); ns != "" {
		n, err := strconv.Atoi(ns)
		if err != nil || n < 0 {
			return nil, codeError(http.StatusBadRequest, "PAGINATION_NUMBER_INVALID", "invalid number of results requested")
		}
		if n < len(all) {
			all = all[:n]
			if n > 0 {
				next := *r.URL
				nq := next.Query()
				nq.Set("last", all[n-1])
				next.RawQuery = nq.Encode()
				w.Header().Set("Link", fmt.Sprintf("<%s>; rel=\"next\"", next.RequestURI()))
			}
		}
	}
	if all == nil {
		all = []string{}
	}
	return all, nil
}

func (g *Registry) catalog(w http.ResponseWriter, r *http.Request, tenant string) error {
	if r.Method != http.MethodGet {
		return errUnsupported
	}
	repos, err := page(w, r, g.store.Tenant(tenant).Repositories(r.Context()))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"repositories": repos})
	return nil
}

func (g *Registry) tagsList(w http.ResponseWriter, r *http.Request, v *image.TenantView, name string) error {
	tags, err := v.Tags(r.Context(), name)
	if err != nil {
		return err
	}
	if tags, err = page(w, r, tags); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"name": name, "tags": tags})
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}

// --- manifests ---

func (g *Registry) manifest(w http.ResponseWriter, r *http.Request, v *image.TenantView, name, ref string) error {
	if !image.ValidRepository(name) {
		return codeError(http.StatusBadRequest, "NAME_INVALID", "invalid repository name")
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		body, mt, digest, err := v.GetManifest(r.Context(), name, ref)
		if errors.Is(err, image.ErrManifestUnknown) && g.cfg.Fetch != nil && !strings.Contains(ref, ":") {
			if fam, ok := v.Familiar(name + ":" + ref); ok && g.cfg.Fetch(r.Context(), v.Name(), fam) == nil {
				body, mt, digest, err = v.GetManifest(r.Context(), name, ref)
			}
		}
		if err != nil {
			return err
		}
		h := w.Header()
		h.Set("Content-Type", mt)
		h.Set("Content-Length", strconv.Itoa(len(body)))
		h.Set("Docker-Content-Digest", digest)
		h.Set("Etag", `"`+digest+`"`)
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			w.Write(body)
		}
		return nil
	case http.MethodPut:
		body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20+1))
		if err != nil {
			return err
		}
		if len(body) > 4<<20 {
			return codeError(http.StatusRequestEntityTooLarge, "SIZE_INVALID", "manifest too large")
		}
		digest, err := v.PutManifest(r.Context(), name, ref, r.Header.Get("Content-Type"), body)
		if err != nil {
			return err
		}
		w.Header().Set("Location", "/v2/"+name+"/manifests/"+digest)
		w.Header().Set("Docker-Content-Digest", digest)
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusCreated)
		return nil
	}
	return errUnsupported
}

// --- blobs ---

func (g *Registry) blob(w http.ResponseWriter, r *http.Request, v *image.TenantView, name, digest string) error {
	if !image.ValidRepository(name) {
		return codeError(http.StatusBadRequest, "NAME_INVALID", "invalid repository name")
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return errUnsupported
	}
	if !image.ValidDigest(digest) {
		return codeError(http.StatusBadRequest, "DIGEST_INVALID", "invalid digest "+digest)
	}
	f, err := v.OpenBlob(r.Context(), digest)
	if err != nil {
		return err
	}
	defer f.Close()
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Docker-Content-Digest", digest)
	h.Set("Etag", `"`+digest+`"`)
	h.Set("Cache-Control", "max-age=31536000")
	http.ServeContent(w, r, "", time.Time{}, f)
	return nil
}

// --- uploads ---

// upload is a blob upload in progress.
type upload struct {
	id, tenant, repo string
	path             string

	mu      sync.Mutex // one request at a time
	size    int64
	touched time.Time
	done    bool
}

func newUploadID() string {
	b := make([]byte, 16)
	rand.Read(b)
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func (g *Registry) uploadRoute(w http.ResponseWriter, r *http.Request, v *image.TenantView, name, id string) error {
	if !image.ValidRepository(name) {
		return codeError(http.StatusBadRequest, "NAME_INVALID", "invalid repository name")
	}
	if id == "" {
		if r.Method != http.MethodPost {
			return errUnsupported
		}
		return g.startUpload(w, r, v, name)
	}
	u := g.lookupUpload(v.Name(), id)
	if u == nil {
		return errUploadGone
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.done {
		return errUploadGone
	}
	switch r.Method {
	case http.MethodGet:
		u.touched = g.now()
		g.uploadHeaders(w, u, name)
		w.WriteHeader(http.StatusNoContent)
		return nil
	case http.MethodPatch:
		if err := g.appendChunk(r, u); err != nil {
			return err
		}
		g.uploadHeaders(w, u, name)
		w.WriteHeader(http.StatusAccepted)
		return nil
	case http.MethodPut:
		digest := r.URL.Query().Get("digest")
		if !image.ValidDigest(digest) {
			return codeError(http.StatusBadRequest, "DIGEST_INVALID", "a digest is required to finish an upload")
		}
		if err := g.appendChunk(r, u); err != nil {
			return err
		}
		err := g.finish(r.Context(), v, u, digest)
		if err != nil {
			return err
		}
		blobCreated(w, name, digest)
		return nil
	case http.MethodDelete:
		g.dropUpload(u)
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	return errUnsupported
}

func blobCreated(w http.ResponseWriter, name, digest string) {
	w.Header().Set("Location", "/v2/"+name+"/blobs/"+digest)
	w.Header().Set("Docker-Content-Digest", digest)
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}

func (g *Registry) uploadHeaders(w http.ResponseWriter, u *upload, name string) {
	h := w.Header()
	h.Set("Location", "/v2/"+name+"/blobs/uploads/"+u.id)
	h.Set("Docker-Upload-UUID", u.id)
	end := u.size - 1
	if end < 0 {
		end = 0
	}
	h.Set("Range", fmt.Sprintf("0-%d", end))
	h.Set("Content-Length", "0")
}

func (g *Registry) startUpload(w http.ResponseWriter, r *http.Request, v *image.TenantView, name string) error {
	q := r.URL.Query()
	if mount := q.Get("mount"); mount != "" {
		// Within the tenant, every repository's blobs can be mounted;
		// another tenant's are unknown, and the client uploads them.
		if from := q.Get("from"); from == "" || image.ValidRepository(from) {
			ok, err := v.MountBlob(r.Context(), mount)
			if err != nil {
				return err
			}
			if ok {
				blobCreated(w, name, mount)
				return nil
			}
		}
	}
	g.mu.Lock()
	if g.count[v.Name()] >= g.cfg.MaxTenantUploads {
		g.mu.Unlock()
		return codeError(http.StatusTooManyRequests, "TOOMANYREQUESTS", fmt.Sprintf("%d uploads in progress: finish or cancel some first", g.cfg.MaxTenantUploads))
	}
	g.count[v.Name()]++
	g.mu.Unlock()
	f, err := g.store.TempFile("upload-")
	if err != nil {
		g.mu.Lock()
		g.count[v.Name()]--
		g.mu.Unlock()
		return err
	}
	f.Close()
	u := &upload{id: newUploadID(), tenant: v.Name(), repo: name, path: f.Name(), touched: g.now()}
	g.mu.Lock()
	g.uploads[u.id] = u
	g.mu.Unlock()
	u.mu.Lock()
	defer u.mu.Unlock()
	if digest := q.Get("digest"); digest != "" {
		// A monolithic upload: POST with the blob.
		if !image.ValidDigest(digest) {
			g.dropUploadLocked(u)
			return codeError(http.StatusBadRequest, "DIGEST_INVALID", "invalid digest "+digest)
		}
		if err := g.appendChunk(r, u); err != nil {
			g.dropUploadLocked(u)
			return err
		}
		if err := g.finish(r.Context(), v, u, digest); err != nil {
			return err
		}
		blobCreated(w, name, digest)
		return nil
	}
	g.uploadHeaders(w, u, name)
	w.WriteHeader(http.StatusAccepted)
	return nil
}

func (g *Registry) lookupUpload(tenant, id string) *upload {
	g.mu.Lock()
	defer g.mu.Unlock()
	u := g.uploads[id]
	if u == nil || u.tenant != tenant {
		return nil
	}
	return u
}

// parseContentRange reads "start-end" (or "bytes start-end/total").
func parseContentRange(s string) (start, end int64, ok bool) {
	s = strings.TrimPrefix(strings.TrimSpace(s), "bytes ")
	s, _, _ = strings.Cut(s, "/")
	a, b, found := strings.Cut(s, "-")
	if !found {
		return 0, 0, false
	}
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	return start, end, err1 == nil && err2 == nil && start >= 0 && end >= start
}

// appendChunk appends the request body to the upload, at the offset its
// Content-Range says (which must be where the upload is), within the
// bounds. Callers hold u.mu.
func (g *Registry) appendChunk(r *http.Request, u *upload) error {
	u.touched = g.now()
	want := int64(-1)
	if cr := r.Header.Get("Content-Range"); cr != "" {
		start, end, ok := parseContentRange(cr)
		if !ok || start != u.size {
			re := codeError(http.StatusRequestedRangeNotSatisfiable, "BLOB_UPLOAD_INVALID", fmt.Sprintf("the upload is at %d bytes, the chunk starts at %q", u.size, cr))
			return re
		}
		want = end - start + 1
	}
	f, err := os.OpenFile(u.path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	bw := &boundedWriter{g: g, u: u, w: f}
	n, err := io.Copy(bw, r.Body)
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		// What was written of this chunk does not count: cut it off, so
		// the client can resume where the upload was.
		f.Truncate(u.size - n)
		g.release(u, n)
		u.size -= n
		var re *regError
		if errors.As(err, &re) {
			return re
		}
		return codeError(http.StatusBadRequest, "BLOB_UPLOAD_INVALID", "reading the chunk: "+err.Error())
	}
	if want >= 0 && n != want {
		f.Truncate(u.size - n)
		g.release(u, n)
		u.size -= n
		return codeError(http.StatusBadRequest, "BLOB_UPLOAD_INVALID", fmt.Sprintf("Content-Range says %d bytes, the body has %d", want, n))
	}
	u.touched = g.now()
	return nil
}

// boundedWriter writes a chunk while the upload and all uploads stay
// within their bounds.
type boundedWriter struct {
	g *Registry
	u *upload
	w io.Writer
}

func (b *boundedWriter) Write(p []byte) (int, error) {
	g, n := b.g, int64(len(p))
	if b.u.size+n > g.cfg.MaxUploadSize {
		return 0, codeError(http.StatusRequestEntityTooLarge, "SIZE_INVALID", fmt.Sprintf("a blob upload is limited to %d bytes", g.cfg.MaxUploadSize))
	}
	g.mu.Lock()
	if g.total+n > g.cfg.MaxUploadsSize {
		g.mu.Unlock()
		return 0, codeError(http.StatusTooManyRequests, "TOOMANYREQUESTS", "too many uploads in progress: retry later")
	}
	if g.tenants[b.u.tenant]+n > g.cfg.MaxTenantUploadsSize {
		g.mu.Unlock()
		return 0, codeError(http.StatusTooManyRequests, "TOOMANYREQUESTS", fmt.Sprintf("your uploads in progress are limited to %d bytes together: retry later", g.cfg.MaxTenantUploadsSize))
	}
	g.total += n
	g.tenants[b.u.tenant] += n
	g.mu.Unlock()
	w, err := b.w.Write(p)
	b.u.size += int64(w)
	if int64(w) < n {
		g.release(b.u, n-int64(w))
	}
	return w, err
}

// release gives back n bytes of u's room. Callers do not hold g.mu.
func (g *Registry) release(u *upload, n int64) {
	g.mu.Lock()
	g.releaseLocked(u, n)
	g.mu.Unlock()
}

func (g *Registry) releaseLocked(u *upload, n int64) {
	g.total -= n
	if g.tenants[u.tenant] -= n; g.tenants[u.tenant] <= 0 {
		delete(g.tenants, u.tenant)
	}
}

// finish makes the upload a blob of the tenant if it has the digest; the
// upload is gone either way. Callers hold u.mu.
func (g *Registry) finish(ctx context.Context, v *image.TenantView, u *upload, digest string) error {
	defer g.dropUploadLocked(u)
	return v.PutBlob(ctx, u.path, digest)
}

func (g *Registry) dropUpload(u *upload) {
	g.dropUploadLocked(u)
}

// dropUploadLocked forgets an upload and removes its file. Callers hold
// u.mu (or own u alone).
func (g *Registry) dropUploadLocked(u *upload) {
	if u.done {
		return
	}
	u.done = true
	os.Remove(u.path)
	g.mu.Lock()
	delete(g.uploads, u.id)
	g.releaseLocked(u, u.size)
	if g.count[u.tenant]--; g.count[u.tenant] <= 0 {
		delete(g.count, u.tenant)
	}
	g.mu.Unlock()
}

// expireUploads removes uploads idle longer than UploadTTL.
func (g *Registry) expireUploads() {
	g.mu.Lock()
	var old []*upload
	for _, u := range g.uploads {
		old = append(old, u)
	}
	g.mu.Unlock()
	now := g.now()
	for _, u := range old {
		if !u.mu.TryLock() {
			continue // a request is using it
		}
		if now.Sub(u.touched) > g.cfg.UploadTTL {
			g.log.Info("removing an abandoned upload", "tenant", u.tenant, "repo", u.repo, "bytes", u.size)
			g.dropUploadLocked(u)
		}
		u.mu.Unlock()
	}
}

// --- authentication ---

func (g *Registry) authenticate(r *http.Request) (string, grant, bool) {
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && strings.HasPrefix(tok, tokenPrefix) {
		c, ok := g.tokens.verifyClaims(strings.TrimSpace(tok), g.now())
		return c.Tenant, grant{scoped: c.Scoped, access: c.Access}, ok
	}
	if r.Header.Get("Authorization") == "" {
		return "", grant{}, false
	}
	tenant, ok := g.cfg.Authenticate(r)
	return tenant, grant{}, ok
}

// realm is the token endpoint as the client reached us.
func realm(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return (&url.URL{Scheme: scheme, Host: r.Host, Path: "/v2/token"}).String()
}

func (g *Registry) challenge(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm=%q,service=%q`, realm(r), tokenService))
	writeError(w, errUnauthorized)
}

// token is the docker token endpoint: basic auth with the tenant's token
// as password (any user name) buys a short-lived bearer token for the
// scopes asked for in the tenant's namespace, or for all of it when none
// is asked for (scope.go).
func (g *Registry) token(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		writeError(w, errUnsupported)
		return
	}
	_, _, basic := r.BasicAuth()
	var tenant string
	ok := false
	if basic {
		tenant, ok = g.cfg.Authenticate(r)
	}
	if !ok {
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Basic realm=%q`, tokenService))
		writeError(w, errUnauthorized)
		return
	}
	now := g.now()
	claims := tokenClaims{Tenant: tenant, Expires: now.Add(g.cfg.TokenTTL).Unix()}
	if scopes, ok := r.URL.Query()["scope"]; ok {
		claims.Scoped, claims.Access = true, parseScopes(scopes)
	}
	tok := g.tokens.signClaims(claims)
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{
		"token":        tok,
		"access_token": tok,
		"expires_in":   int(g.cfg.TokenTTL / time.Second),
		"issued_at":    now.UTC().Format(time.RFC3339),
	})
}
