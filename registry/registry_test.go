package registry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/macro-cloud/macro/image"
	"github.com/macro-cloud/macro/internal/testenv"
	"github.com/macro-cloud/macro/internal/testimages"
)

// tokens are the tenants' access tokens of the tests.
var tokens = map[string]string{"tok-alice": "alice", "tok-bob": "bob"}

// authenticate is what the auth package provides: a tenant's token as a
// bearer token or as the password of basic auth.
func authenticate(r *http.Request) (string, bool) {
	if _, pw, ok := r.BasicAuth(); ok {
		t, ok := tokens[pw]
		return t, ok
	}
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		t, ok := tokens[tok]
		return t, ok
	}
	return "", false
}

type env struct {
	srv       *httptest.Server
	host      string
	reg       *Registry
	store     *image.Store
	tokenHits atomic.Int32
	uploads   atomic.Int32 // blob uploads started (not mounts)
}

func newEnv(t *testing.T, mod func(*Config)) *env {
	t.Helper()
	testenv.RequireRoot(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir := t.TempDir()
	st, err := image.Open(filepath.Join(dir, "images"), log)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Store: st, Authenticate: authenticate, KeyFile: filepath.Join(dir, "registry.key"), Log: log}
	if mod != nil {
		mod(&cfg)
	}
	reg, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{reg: reg, store: st}
	mux := http.NewServeMux()
	mux.Handle("/v2/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/token" {
			e.tokenHits.Add(1)
		}
		if r.Method == "POST" && strings.HasSuffix(r.URL.Path, "/blobs/uploads/") && r.URL.Query().Get("mount") == "" {
			e.uploads.Add(1)
		}
		reg.ServeHTTP(w, r)
	}))
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	e.host = strings.TrimPrefix(e.srv.URL, "http://")
	return e
}

func (e *env) ref(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(e.host+"/"+s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func as(token string) remote.Option {
	return remote.WithAuth(&authn.Basic{Username: "anyone", Password: token})
}

// do sends a request with basic auth as token ("" for none).
func (e *env) do(t *testing.T, method, path, token string, body []byte, hdr ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.SetBasicAuth("u", token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// errCode is the first OCI error code of a response.
func errCode(t *testing.T, resp *http.Response) string {
	t.Helper()
	var body struct {
		Errors []struct{ Code string }
	}
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &body); err != nil || len(body.Errors) == 0 {
		t.Fatalf("status %d, body %q: not an error", resp.StatusCode, b)
	}
	return body.Errors[0].Code
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func TestPingAndAuth(t *testing.T) {
	e := newEnv(t, nil)
	resp := e.do(t, "GET", "/v2/", "", nil)
	if resp.StatusCode != 401 || resp.Header.Get("Docker-Distribution-API-Version") != "registry/2.0" {
		t.Fatalf("anonymous ping: %d %v", resp.StatusCode, resp.Header)
	}
	if got, want := resp.Header.Get("WWW-Authenticate"), `Bearer realm="`+e.srv.URL+`/v2/token",service="macro"`; got != want {
		t.Fatalf("challenge %q, want %q", got, want)
	}
	if resp := e.do(t, "GET", "/v2/", "tok-alice", nil); resp.StatusCode != 200 || resp.Header.Get("Docker-Distribution-API-Version") != "registry/2.0" {
		t.Fatalf("ping with basic auth: %d", resp.StatusCode)
	}
	if resp := e.do(t, "GET", "/v2/", "wrong", nil); resp.StatusCode != 401 {
		t.Fatalf("ping with a wrong token: %d", resp.StatusCode)
	}
	// Every path needs credentials, known or not.
	for _, p := range []string{"/v2/_catalog", "/v2/foo/tags/list", "/v2/foo/manifests/1", "/v2/foo/blobs/sha256:" + strings.Repeat("0", 64), "/v2/nosuch"} {
		if resp := e.do(t, "GET", p, "", nil); resp.StatusCode != 401 || errCode(t, resp) != "UNAUTHORIZED" {
			t.Errorf("anonymous GET %s: %d", p, resp.StatusCode)
		}
	}

	// The token flow: basic auth buys a bearer token for the tenant.
	if resp := e.do(t, "GET", "/v2/token?service=macro&scope=repository:foo:push,pull", "", nil); resp.StatusCode != 401 {
		t.Fatalf("anonymous token: %d", resp.StatusCode)
	}
	if resp := e.do(t, "GET", "/v2/token?service=macro", "wrong", nil); resp.StatusCode != 401 {
		t.Fatalf("token with a wrong password: %d", resp.StatusCode)
	}
	resp = e.do(t, "GET", "/v2/token?service=macro&scope=repository:foo:push,pull", "tok-alice", nil)
	var tok struct {
		Token     string `json:"token"`
		ExpiresIn int    `json:"expires_in"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || resp.StatusCode != 200 || tok.Token == "" || tok.ExpiresIn != 600 {
		t.Fatalf("token: %d %+v %v", resp.StatusCode, tok, err)
	}
	if resp := e.do(t, "GET", "/v2/", "", nil, "Authorization", "Bearer "+tok.Token); resp.StatusCode != 200 {
		t.Fatalf("ping with the bearer token: %d", resp.StatusCode)
	}
	// Tampered, expired, or signed with another key: refused.
	if resp := e.do(t, "GET", "/v2/", "", nil, "Authorization", "Bearer "+tok.Token+"x"); resp.StatusCode != 401 {
		t.Fatalf("tampered token: %d", resp.StatusCode)
	}
	if resp := e.do(t, "GET", "/v2/", "", nil, "Authorization", "Bearer "+e.reg.tokens.sign("alice", time.Now().Add(-time.Second))); resp.StatusCode != 401 {
		t.Fatalf("expired token: %d", resp.StatusCode)
	}
	other, _ := newTokenSigner("")
	if resp := e.do(t, "GET", "/v2/", "", nil, "Authorization", "Bearer "+other.sign("alice", time.Now().Add(time.Hour))); resp.StatusCode != 401 {
		t.Fatalf("token of another key: %d", resp.StatusCode)
	}
	// The key is kept in the data dir, private.
	if fi, err := os.Stat(e.reg.cfg.KeyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	again, err := newTokenSigner(e.reg.cfg.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if tenant, ok := again.verify(tok.Token, time.Now()); !ok || tenant != "alice" {
		t.Fatalf("token after a restart: %q %v", tenant, ok)
	}
}

// crane's library pushes with basic credentials (through the token flow),
// the image becomes the tenant's, and only the tenant can read it back.
func TestCranePushPull(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	img := testimages.BusyboxImage(t)
	if err := remote.Write(e.ref(t, "foo/bar:1"), img, as("tok-alice")); err != nil {
		t.Fatal(err)
	}
	if e.tokenHits.Load() == 0 {
		t.Error("crane did not use the token endpoint")
	}
	id, _ := img.ConfigName()
	want, _ := img.Digest()

	// A normal image of alice's, named as pushed, layers extracted.
	got, err := e.store.Tenant("alice").Lookup(ctx, "foo/bar:1")
	if err != nil || got.ID != id.String() {
		t.Fatalf("alice's foo/bar:1 = %+v %v", got.ID, err)
	}
	if !slices.Contains(got.RepoDigests, "foo/bar@"+want.String()) {
		t.Errorf("repo digests %v", got.RepoDigests)
	}
	for _, l := range got.Layers {
		if _, err := os.Stat(e.store.LayerPath(l)); err != nil {
			t.Errorf("layer %s not extracted: %v", l, err)
		}
	}
	// Through this registry's host too, as docker run HOST:PORT/foo/bar:1 names it.
	if _, err := e.store.Tenant("alice").WithRegistryHost(e.host).Lookup(ctx, e.host+"/foo/bar:1"); err != nil {
		t.Errorf("lookup through the registry host: %v", err)
	}
	if _, err := e.store.Tenant("bob").Lookup(ctx, "foo/bar:1"); !errors.Is(err, image.ErrNotFound) {
		t.Errorf("bob sees alice's image: %v", err)
	}
	if _, err := e.store.Tenant("bob").Lookup(ctx, id.String()); !errors.Is(err, image.ErrNotFound) {
		t.Errorf("bob sees alice's image by ID: %v", err)
	}

	// Alice reads it back, byte for byte.
	back, err := remote.Image(e.ref(t, "foo/bar:1"), as("tok-alice"))
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := back.Digest(); d != want {
		t.Errorf("digest back %s, want %s", d, want)
	}
	layers, _ := back.Layers()
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			t.Fatalf("layer: %v", err)
		}
		rc.Close()
	}
	tags, err := remote.List(e.ref(t, "foo/bar:1").Context(), as("tok-alice"))
	if err != nil || !slices.Equal(tags, []string{"1"}) {
		t.Errorf("tags %v %v", tags, err)
	}
	// Bob gets 404s: no manifest, no blob, no repository.
	_, err = remote.Image(e.ref(t, "foo/bar:1"), as("tok-bob"))
	if !isCode(err, transport.ManifestUnknownErrorCode) {
		t.Errorf("bob's read: %v", err)
	}
	if _, err := remote.List(e.ref(t, "foo/bar:1").Context(), as("tok-bob")); !isCode(err, transport.NameUnknownErrorCode) {
		t.Errorf("bob's tag list: %v", err)
	}
	ld, _ := layers[0].Digest()
	for _, p := range []string{"/v2/foo/bar/blobs/" + ld.String(), "/v2/foo/bar/blobs/" + id.String(), "/v2/foo/bar/manifests/" + want.String()} {
		if resp := e.do(t, "HEAD", p, "tok-bob", nil); resp.StatusCode != 404 {
			t.Errorf("bob's HEAD %s: %d", p, resp.StatusCode)
		}
	}
	var cat struct{ Repositories []string }
	json.NewDecoder(e.do(t, "GET", "/v2/_catalog", "tok-bob", nil).Body).Decode(&cat)
	if len(cat.Repositories) != 0 {
		t.Errorf("bob's catalog %v", cat.Repositories)
	}
	json.NewDecoder(e.do(t, "GET", "/v2/_catalog", "tok-alice", nil).Body).Decode(&cat)
	if !slices.Equal(cat.Repositories, []string{"foo/bar"}) {
		t.Errorf("alice's catalog %v", cat.Repositories)
	}

	// Bob pushes the same image: his own, stored once; alice's delete
	// leaves his whole.
	if err := remote.Write(e.ref(t, "mine:latest"), img, as("tok-bob")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Tenant("alice").Remove(ctx, "foo/bar:1", false, false); err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Image(e.ref(t, "mine"), as("tok-bob")); err != nil {
		t.Fatalf("bob's image after alice's rmi: %v", err)
	}
	if _, err := remote.Image(e.ref(t, "foo/bar:1"), as("tok-alice")); !isCode(err, transport.ManifestUnknownErrorCode) {
		t.Errorf("alice's removed image: %v", err)
	}
}

// An image the tenant loaded (with no manifest of its own) can be pulled.
func TestPullLoadedImage(t *testing.T) {
	e := newEnv(t, nil)
	f, err := os.Open(testimages.Busybox(t))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := e.store.Tenant("alice").Load(context.Background(), f, nil); err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(e.ref(t, "busybox:latest"), as("tok-alice"))
	if err != nil {
		t.Fatal(err)
	}
	if err := validate(img); err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Image(e.ref(t, "busybox:latest"), as("tok-bob")); !isCode(err, transport.ManifestUnknownErrorCode) {
		t.Errorf("bob pulls alice's loaded image: %v", err)
	}
}

// validate reads all of an image and checks its digests.
func validate(img v1.Image) error {
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return err
		}
		if d, _ := l.Digest(); digestOf(b) != d.String() {
			return fmt.Errorf("layer %s has digest %s", d, digestOf(b))
		}
	}
	_, err = img.RawConfigFile()
	return err
}

func isCode(err error, code transport.ErrorCode) bool {
	var te *transport.Error
	if !errors.As(err, &te) {
		return false
	}
	for _, d := range te.Errors {
		if d.Code == code {
			return true
		}
	}
	return false
}

// A chunked upload with Content-Range, resumed after a status query; a
// chunk at the wrong offset is refused; another tenant cannot touch it.
func TestChunkedUpload(t *testing.T) {
	e := newEnv(t, nil)
	blob := bytes.Repeat([]byte("0123456789abcdef"), 4096)
	digest := digestOf(blob)
	resp := e.do(t, "POST", "/v2/foo/blobs/uploads/", "tok-alice", nil)
	loc := resp.Header.Get("Location")
	if resp.StatusCode != 202 || loc == "" || resp.Header.Get("Docker-Upload-UUID") == "" || resp.Header.Get("Range") != "0-0" {
		t.Fatalf("start: %d %v", resp.StatusCode, resp.Header)
	}
	half := len(blob) / 2
	resp = e.do(t, "PATCH", loc, "tok-alice", blob[:half], "Content-Range", fmt.Sprintf("0-%d", half-1), "Content-Type", "application/octet-stream")
	if resp.StatusCode != 202 || resp.Header.Get("Range") != fmt.Sprintf("0-%d", half-1) {
		t.Fatalf("first chunk: %d %v", resp.StatusCode, resp.Header)
	}
	// Bob knows the UUID: it is not his.
	for _, m := range []string{"GET", "PATCH", "PUT", "DELETE"} {
		if resp := e.do(t, m, loc+"?digest="+digest, "tok-bob", blob[half:]); resp.StatusCode != 404 || errCode(t, resp) != "BLOB_UPLOAD_UNKNOWN" {
			t.Errorf("bob's %s of alice's upload: %d", m, resp.StatusCode)
		}
	}
	// A chunk that does not start where the upload is.
	resp = e.do(t, "PATCH", loc, "tok-alice", blob[half+1:], "Content-Range", fmt.Sprintf("%d-%d", half+1, len(blob)-1))
	if resp.StatusCode != 416 {
		t.Fatalf("chunk at the wrong offset: %d", resp.StatusCode)
	}
	// Resume: ask where it is, send the rest with the final PUT.
	resp = e.do(t, "GET", loc, "tok-alice", nil)
	if resp.StatusCode != 204 || resp.Header.Get("Range") != fmt.Sprintf("0-%d", half-1) {
		t.Fatalf("status: %d %v", resp.StatusCode, resp.Header)
	}
	resp = e.do(t, "PUT", loc+"?digest="+digest, "tok-alice", blob[half:], "Content-Range", fmt.Sprintf("%d-%d", half, len(blob)-1))
	if resp.StatusCode != 201 || resp.Header.Get("Docker-Content-Digest") != digest || resp.Header.Get("Location") != "/v2/foo/blobs/"+digest {
		t.Fatalf("finish: %d %v", resp.StatusCode, resp.Header)
	}
	resp = e.do(t, "HEAD", "/v2/foo/blobs/"+digest, "tok-alice", nil)
	if resp.StatusCode != 200 || resp.ContentLength != int64(len(blob)) {
		t.Fatalf("HEAD: %d %d", resp.StatusCode, resp.ContentLength)
	}
	resp = e.do(t, "GET", "/v2/foo/blobs/"+digest, "tok-alice", nil, "Range", "bytes=10-19")
	if b, _ := io.ReadAll(resp.Body); resp.StatusCode != 206 || string(b) != string(blob[10:20]) {
		t.Fatalf("range GET: %d %q", resp.StatusCode, b)
	}
	if resp := e.do(t, "HEAD", "/v2/foo/blobs/"+digest, "tok-bob", nil); resp.StatusCode != 404 {
		t.Fatalf("bob's HEAD of alice's blob: %d", resp.StatusCode)
	}
	if resp := e.do(t, "GET", loc, "tok-alice", nil); resp.StatusCode != 404 {
		t.Fatalf("a finished upload: %d", resp.StatusCode)
	}

	// Monolithic: POST with the digest and the blob.
	small := []byte("a small blob")
	resp = e.do(t, "POST", "/v2/foo/blobs/uploads/?digest="+digestOf(small), "tok-alice", small)
	if resp.StatusCode != 201 {
		t.Fatalf("monolithic POST: %d", resp.StatusCode)
	}
	// A digest that does not match: refused, nothing stored.
	resp = e.do(t, "POST", "/v2/foo/blobs/uploads/?digest="+digestOf([]byte("other")), "tok-alice", []byte("not other"))
	if resp.StatusCode != 400 || errCode(t, resp) != "DIGEST_INVALID" {
		t.Fatalf("monolithic POST with a wrong digest: %d", resp.StatusCode)
	}
	loc = e.do(t, "POST", "/v2/foo/blobs/uploads/", "tok-alice", nil).Header.Get("Location")
	resp = e.do(t, "PUT", loc+"?digest="+digestOf([]byte("other")), "tok-alice", []byte("not other"))
	if resp.StatusCode != 400 || errCode(t, resp) != "DIGEST_INVALID" {
		t.Fatalf("PUT with a wrong digest: %d", resp.StatusCode)
	}
	if resp := e.do(t, "HEAD", "/v2/foo/blobs/"+digestOf([]byte("not other")), "tok-alice", nil); resp.StatusCode != 404 {
		t.Fatalf("the mismatched blob is stored: %d", resp.StatusCode)
	}
	if e.reg.total != 0 || len(e.reg.uploads) != 0 {
		t.Fatalf("uploads left: %d bytes, %d uploads", e.reg.total, len(e.reg.uploads))
	}
}

// Uploads are bounded, and removed when abandoned.
func TestUploadBoundsAndExpiry(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxUploadSize = 1000; c.MaxUploadsSize = 1500 })
	loc := e.do(t, "POST", "/v2/foo/blobs/uploads/", "tok-alice", nil).Header.Get("Location")
	if resp := e.do(t, "PATCH", loc, "tok-alice", make([]byte, 1001)); resp.StatusCode != 413 || errCode(t, resp) != "SIZE_INVALID" {
		t.Fatalf("chunk over the upload bound: %d", resp.StatusCode)
	}
	// The refused chunk does not count; the upload goes on.
	if resp := e.do(t, "PATCH", loc, "tok-alice", make([]byte, 900), "Content-Range", "0-899"); resp.StatusCode != 202 {
		t.Fatalf("chunk within bounds: %d", resp.StatusCode)
	}
	loc2 := e.do(t, "POST", "/v2/foo/blobs/uploads/", "tok-bob", nil).Header.Get("Location")
	if resp := e.do(t, "PATCH", loc2, "tok-bob", make([]byte, 700)); resp.StatusCode != 429 || errCode(t, resp) != "TOOMANYREQUESTS" {
		t.Fatalf("chunk over the total bound: %d", resp.StatusCode)
	}
	// Abandoned: gone after the TTL, its file too.
	e.reg.mu.Lock()
	var files []string
	for _, u := range e.reg.uploads {
		files = append(files, u.path)
	}
	e.reg.mu.Unlock()
	e.reg.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	e.reg.expireUploads()
	if resp := e.do(t, "GET", loc, "tok-alice", nil); resp.StatusCode != 404 {
		t.Fatalf("abandoned upload: %d", resp.StatusCode)
	}
	for _, f := range files {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("upload file %s left: %v", f, err)
		}
	}
	if e.reg.total != 0 {
		t.Errorf("%d bytes still counted", e.reg.total)
	}
}

// Cross-repository mounts work within the tenant, never across tenants.
func TestMountWithinTenant(t *testing.T) {
	e := newEnv(t, nil)
	blob := []byte("layer bytes")
	d := digestOf(blob)
	if resp := e.do(t, "POST", "/v2/a/blobs/uploads/?digest="+d, "tok-alice", blob); resp.StatusCode != 201 {
		t.Fatalf("upload: %d", resp.StatusCode)
	}
	resp := e.do(t, "POST", "/v2/b/blobs/uploads/?mount="+d+"&from=a", "tok-alice", nil)
	if resp.StatusCode != 201 || resp.Header.Get("Location") != "/v2/b/blobs/"+d {
		t.Fatalf("alice's mount: %d %v", resp.StatusCode, resp.Header)
	}
	resp = e.do(t, "POST", "/v2/b/blobs/uploads/?mount="+d+"&from=a", "tok-bob", nil)
	if resp.StatusCode != 202 || resp.Header.Get("Docker-Upload-UUID") == "" {
		t.Fatalf("bob's mount of alice's blob: %d (want an upload)", resp.StatusCode)
	}
	// Bob uploads the same bytes: his now, stored once.
	if resp := e.do(t, "PUT", resp.Header.Get("Location")+"?digest="+d, "tok-bob", blob); resp.StatusCode != 201 {
		t.Fatalf("bob's upload: %d", resp.StatusCode)
	}
	if resp := e.do(t, "HEAD", "/v2/x/blobs/"+d, "tok-bob", nil); resp.StatusCode != 200 {
		t.Fatalf("bob's blob: %d", resp.StatusCode)
	}

	// crane pushing an image to another repository of the tenant
	// uploads none of its blobs again (they exist in the namespace).
	img := testimages.BusyboxImage(t)
	if err := remote.Write(e.ref(t, "one:1"), img, as("tok-alice")); err != nil {
		t.Fatal(err)
	}
	before := e.uploads.Load()
	src, _ := remote.Image(e.ref(t, "one:1"), as("tok-alice"))
	if err := remote.Write(e.ref(t, "two:1"), src, as("tok-alice")); err != nil {
		t.Fatal(err)
	}
	if n := e.uploads.Load() - before; n != 0 {
		t.Errorf("crane uploaded %d blobs again", n)
	}
	if _, err := e.store.Tenant("alice").Lookup(context.Background(), "two:1"); err != nil {
		t.Fatal(err)
	}
}

// Manifests are checked: digest, shape, blobs; a failed push leaves
// nothing visible.
func TestManifestChecks(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	put := func(t *testing.T, token, ref, mediaType string, body []byte) *http.Response {
		return e.do(t, "PUT", "/v2/app/manifests/"+ref, token, body, "Content-Type", mediaType)
	}
	upload := func(b []byte) string {
		if resp := e.do(t, "POST", "/v2/app/blobs/uploads/?digest="+digestOf(b), "tok-alice", b); resp.StatusCode != 201 {
			t.Fatalf("upload: %d", resp.StatusCode)
		}
		return digestOf(b)
	}
	// An image whose config claims a layer the blob is not.
	layer, _ := random.Layer(512, types.DockerLayer)
	img, _ := mutate.AppendLayers(empty.Image, layer)
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = e.store.Platform().OS, e.store.Platform().Architecture
	img, _ = mutate.ConfigFile(img, cf)
	good, _ := img.RawManifest()
	rawCfg, _ := img.RawConfigFile()
	lrc, _ := layer.Compressed()
	lb, _ := io.ReadAll(lrc)
	upload(lb)
	upload(rawCfg)

	cf.RootFS.DiffIDs[0] = v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("1", 64)}
	badImg, _ := mutate.ConfigFile(img, cf)
	badCfg, _ := badImg.RawConfigFile()
	upload(badCfg)
	bad, _ := badImg.RawManifest()

	mt := string(types.DockerManifestSchema2)
	for _, tt := range []struct {
		name, token, ref, mediaType string
		body                        []byte
		code                        string
	}{
		{"digest mismatch", "tok-alice", digestOf([]byte("x")), mt, good, "DIGEST_INVALID"},
		{"not JSON", "tok-alice", "1", mt, []byte("{"), "MANIFEST_INVALID"},
		{"schema 1", "tok-alice", "1", "application/vnd.docker.distribution.manifest.v1+json", []byte(`{"schemaVersion":1}`), "MANIFEST_INVALID"},
		{"media type contradicts", "tok-alice", "1", string(types.OCIImageIndex), good, "MANIFEST_INVALID"},
		{"unknown blob", "tok-alice", "1", mt, bytes.Replace(good, []byte(digestOf(lb)), []byte(digestOf([]byte("nope"))), 1), "MANIFEST_BLOB_UNKNOWN"},
		{"another tenant's blobs", "tok-bob", "1", mt, good, "MANIFEST_BLOB_UNKNOWN"},
		{"layer not its diffID", "tok-alice", "1", mt, bad, "MANIFEST_INVALID"},
		{"invalid tag", "tok-alice", "-x", mt, good, "MANIFEST_INVALID"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp := put(t, tt.token, tt.ref, tt.mediaType, tt.body)
			if resp.StatusCode != 400 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if code := errCode(t, resp); code != tt.code {
				t.Fatalf("code %s, want %s", code, tt.code)
			}
		})
	}
	// Nothing of the failed pushes is visible.
	for _, tenant := range []string{"alice", "bob"} {
		if imgs, _ := e.store.Tenant(tenant).List(ctx); len(imgs) != 0 {
			t.Fatalf("%s has images after failed pushes: %+v", tenant, imgs)
		}
	}
	if resp := e.do(t, "GET", "/v2/app/tags/list", "tok-alice", nil); resp.StatusCode != 404 || errCode(t, resp) != "NAME_UNKNOWN" {
		t.Fatalf("tags after failed pushes: %d", resp.StatusCode)
	}
	if resp := e.do(t, "GET", "/v2/app/manifests/1", "tok-alice", nil); resp.StatusCode != 404 || errCode(t, resp) != "MANIFEST_UNKNOWN" {
		t.Fatalf("manifest after failed pushes: %d", resp.StatusCode)
	}
	// The good one by its digest, then by tag.
	if resp := put(t, "tok-alice", digestOf(good), mt, good); resp.StatusCode != 201 || resp.Header.Get("Docker-Content-Digest") != digestOf(good) {
		t.Fatalf("PUT by digest: %d", resp.StatusCode)
	}
	if imgs, _ := e.store.Tenant("alice").List(ctx); len(imgs) != 0 {
		t.Fatalf("an untagged push made an image: %+v", imgs)
	}
	if resp := put(t, "tok-alice", "1", mt, good); resp.StatusCode != 201 {
		t.Fatalf("PUT by tag: %d", resp.StatusCode)
	}
	if _, err := e.store.Tenant("alice").Lookup(ctx, "app:1"); err != nil {
		t.Fatal(err)
	}
}

// An index: the node's platform becomes an image, the rest is kept and
// served back.
func TestPushIndex(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	plat := e.store.Platform()
	mk := func(os, arch string) v1.Image {
		l, _ := random.Layer(256, types.DockerLayer)
		img, _ := mutate.AppendLayers(empty.Image, l)
		cf, _ := img.ConfigFile()
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture = os, arch
		img, _ = mutate.ConfigFile(img, cf)
		return img
	}
	here, there := mk(plat.OS, plat.Architecture), mk("linux", "s390x")
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: here, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: plat.OS, Architecture: plat.Architecture}}},
		mutate.IndexAddendum{Add: there, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "s390x"}}},
	)
	if err := remote.WriteIndex(e.ref(t, "multi:1"), idx, as("tok-alice")); err != nil {
		t.Fatal(err)
	}
	id, _ := here.ConfigName()
	got, err := e.store.Tenant("alice").Lookup(ctx, "multi:1")
	if err != nil || got.ID != id.String() {
		t.Fatalf("multi:1 = %v %v", got.ID, err)
	}
	want, _ := idx.Digest()
	back, err := remote.Index(e.ref(t, "multi:1"), as("tok-alice"))
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := back.Digest(); d != want {
		t.Fatalf("index back %s, want %s", d, want)
	}
	s390, err := remote.Image(e.ref(t, "multi:1"), as("tok-alice"), remote.WithPlatform(v1.Platform{OS: "linux", Architecture: "s390x"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := validate(s390); err != nil {
		t.Fatal(err)
	}
	// Only an image that runs here is a Docker image; a tag of another
	// platform alone is kept for the registry.
	if err := remote.Write(e.ref(t, "other:1"), there, as("tok-alice")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Tenant("alice").Lookup(ctx, "other:1"); !errors.Is(err, image.ErrNotFound) {
		t.Errorf("an s390x image became runnable: %v", err)
	}
	if _, err := remote.Image(e.ref(t, "other:1"), as("tok-alice")); err != nil {
		t.Errorf("other:1 back: %v", err)
	}
	if imgs, _ := e.store.Tenant("alice").List(ctx); len(imgs) != 1 {
		t.Errorf("alice's images %d, want 1", len(imgs))
	}
	// Pushed content nothing refers to goes after the grace period; what
	// tags refer to stays.
	if _, err := e.store.CollectGarbage(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Image(e.ref(t, "multi:1"), as("tok-alice"), remote.WithPlatform(v1.Platform{OS: "linux", Architecture: "s390x"})); err != nil {
		t.Fatalf("after garbage collection: %v", err)
	}
}

// skopeo (Debian's) copies a docker-archive and an OCI layout to the
// registry with --dest-creds; the image runs in that tenant only.
func TestSkopeoCopy(t *testing.T) {
	if _, err := exec.LookPath("skopeo"); err != nil {
		t.Skip("skopeo is not installed")
	}
	e := newEnv(t, nil)
	ctx := context.Background()
	for _, tt := range []struct{ src, dest string }{
		{"docker-archive:" + testimages.Busybox(t), "sk/busybox:1"},
		{"oci-archive:" + testimages.BusyboxOCI(t), "sk/oci:1"},
	} {
		out, err := exec.Command("skopeo", "copy", "--dest-creds", "me:tok-alice", "--dest-tls-verify=false",
			tt.src, "docker://"+e.host+"/"+tt.dest).CombinedOutput()
		if err != nil {
			t.Fatalf("skopeo copy %s: %v\n%s", tt.src, err, out)
		}
		if _, err := e.store.Tenant("alice").Lookup(ctx, tt.dest); err != nil {
			t.Fatalf("%s after skopeo: %v", tt.dest, err)
		}
		if _, err := e.store.Tenant("bob").Lookup(ctx, tt.dest); !errors.Is(err, image.ErrNotFound) {
			t.Fatalf("bob sees %s: %v", tt.dest, err)
		}
	}
	// Again: the blobs are there, skopeo uploads none.
	before := e.uploads.Load()
	out, err := exec.Command("skopeo", "copy", "--dest-creds", "me:tok-alice", "--dest-tls-verify=false",
		"docker-archive:"+testimages.Busybox(t), "docker://"+e.host+"/sk/busybox:2").CombinedOutput()
	if err != nil || e.uploads.Load() != before {
		t.Fatalf("second skopeo copy: %v, %d uploads\n%s", err, e.uploads.Load()-before, out)
	}
	// And back out of the registry, as bob too (denied).
	dir := t.TempDir()
	if out, err := exec.Command("skopeo", "copy", "--src-creds", "me:tok-alice", "--src-tls-verify=false",
		"docker://"+e.host+"/sk/busybox:1", "oci:"+dir+":x").CombinedOutput(); err != nil {
		t.Fatalf("skopeo copy from the registry: %v\n%s", err, out)
	}
	if out, err := exec.Command("skopeo", "copy", "--src-creds", "me:tok-bob", "--src-tls-verify=false",
		"docker://"+e.host+"/sk/busybox:1", "oci:"+dir+":y").CombinedOutput(); err == nil {
		t.Fatalf("bob copied alice's image:\n%s", out)
	}
	// Without credentials: unauthorized.
	if out, err := exec.Command("skopeo", "inspect", "--tls-verify=false", "--no-creds",
		"docker://"+e.host+"/sk/busybox:1").CombinedOutput(); err == nil || !strings.Contains(strings.ToLower(string(out)), "unauthorized") {
		t.Fatalf("anonymous inspect: %v\n%s", err, out)
	}
}

// One tenant's uploads in progress are bounded in number and in bytes,
// and leave room for the others.
func TestUploadBoundsPerTenant(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.MaxUploadSize, c.MaxUploadsSize, c.MaxTenantUploadsSize, c.MaxTenantUploads = 1000, 5000, 1000, 2
	})
	start := func(token string) *http.Response { return e.do(t, "POST", "/v2/foo/blobs/uploads/", token, nil) }
	a1, a2 := start("tok-alice"), start("tok-alice")
	if a1.StatusCode != 202 || a2.StatusCode != 202 {
		t.Fatalf("two uploads: %d %d", a1.StatusCode, a2.StatusCode)
	}
	if resp := start("tok-alice"); resp.StatusCode != 429 || errCode(t, resp) != "TOOMANYREQUESTS" {
		t.Fatalf("a third upload: %d", resp.StatusCode)
	}
	b1 := start("tok-bob")
	if b1.StatusCode != 202 {
		t.Fatalf("bob's upload while alice has hers: %d", b1.StatusCode)
	}
	// Bytes: alice's 800 and 300 are over her 1000; bob's 800 fits.
	if resp := e.do(t, "PATCH", a1.Header.Get("Location"), "tok-alice", make([]byte, 800)); resp.StatusCode != 202 {
		t.Fatalf("alice's 800 bytes: %d", resp.StatusCode)
	}
	if resp := e.do(t, "PATCH", a2.Header.Get("Location"), "tok-alice", make([]byte, 300)); resp.StatusCode != 429 || errCode(t, resp) != "TOOMANYREQUESTS" {
		t.Fatalf("alice's 300 more bytes: %d", resp.StatusCode)
	}
	if resp := e.do(t, "PATCH", b1.Header.Get("Location"), "tok-bob", make([]byte, 800)); resp.StatusCode != 202 {
		t.Fatalf("bob's 800 bytes: %d", resp.StatusCode)
	}
	// A cancelled upload gives its room back.
	if resp := e.do(t, "DELETE", a1.Header.Get("Location"), "tok-alice", nil); resp.StatusCode != 204 {
		t.Fatalf("cancel: %d", resp.StatusCode)
	}
	a3 := start("tok-alice")
	if a3.StatusCode != 202 {
		t.Fatalf("an upload after a cancel: %d", a3.StatusCode)
	}
	blob := make([]byte, 900)
	if resp := e.do(t, "PUT", a3.Header.Get("Location")+"?digest="+digestOf(blob), "tok-alice", blob); resp.StatusCode != 201 {
		t.Fatalf("900 bytes after the cancel: %d", resp.StatusCode)
	}
	for _, loc := range []string{a2.Header.Get("Location")} {
		e.do(t, "DELETE", loc, "tok-alice", nil)
	}
	e.do(t, "DELETE", b1.Header.Get("Location"), "tok-bob", nil)
	e.reg.mu.Lock()
	defer e.reg.mu.Unlock()
	if e.reg.total != 0 || len(e.reg.tenants) != 0 || len(e.reg.count) != 0 || len(e.reg.uploads) != 0 {
		t.Fatalf("left: %d bytes, %v, %v, %d uploads", e.reg.total, e.reg.tenants, e.reg.count, len(e.reg.uploads))
	}
}

// A pull by tag of an image this server's store lacks asks Fetch (the
// cluster's other servers) for it, in the caller's tenant, and then
// serves it; what Fetch cannot find stays unknown.
func TestPullFetchedImage(t *testing.T) {
	var calls []string
	var e *env
	e = newEnv(t, func(c *Config) {
		c.Fetch = func(ctx context.Context, tenant, ref string) error {
			calls = append(calls, tenant+" "+ref)
			if tenant != "alice" || ref != "busybox:latest" {
				return errors.New("no server has it")
			}
			f, err := os.Open(testimages.Busybox(t))
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = e.store.Tenant(tenant).Load(ctx, f, nil)
			return err
		}
	})
	img, err := remote.Image(e.ref(t, "busybox:latest"), as("tok-alice"))
	if err != nil {
		t.Fatal(err)
	}
	if err := validate(img); err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Image(e.ref(t, "busybox:latest"), as("tok-bob")); !isCode(err, transport.ManifestUnknownErrorCode) {
		t.Errorf("bob pulls what only alice has: %v", err)
	}
	if want := []string{"alice busybox:latest", "bob busybox:latest"}; fmt.Sprint(calls) != fmt.Sprint(want) {
		t.Errorf("fetches %q, want %q", calls, want)
	}
}
