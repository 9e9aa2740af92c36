package access

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/xml"
	"fmt"

	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/macro-cloud/macro/auth"
	"github.com/macro-cloud/macro/store"
	"github.com/macro-cloud/macro/types"
)

// fakeStore holds volumes and keys in maps.
type fakeStore struct {
	volumes map[string]types.Volume // tenant "/" name
	keys    map[string]types.VolumeKey
}

func (f *fakeStore) Volume(_ context.Context, tenant, name string) (types.Volume, error) {
	v, ok := f.volumes[tenant+"/"+name]
	if !ok {
		return v, store.ErrNotFound
	}
	return v, nil
}

func (f *fakeStore) Volumes(_ context.Context, tenant string) ([]types.Volume, error) {
	var out []types.Volume
	for _, v := range f.volumes {
		if v.Tenant == tenant {
			out = append(out, v)
		}
	}
	return out, nil
}

func (f *fakeStore) VolumeKey(_ context.Context, id string) (types.VolumeKey, error) {
	k, ok := f.keys[id]
	if !ok {
		return k, store.ErrNotFound
	}
	return k, nil
}

// fakeTokens knows tokens as "token-<tenant>".
type fakeTokens struct{}

func (fakeTokens) Authenticate(r *http.Request) (auth.Identity, error) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		if _, pass, ok2 := r.BasicAuth(); ok2 {
			tok, ok = pass, true
		}
	}
	if !ok {
		return auth.Identity{}, auth.ErrNoCredentials
	}
	tenant, ok := strings.CutPrefix(tok, "token-")
	if !ok {
		return auth.Identity{}, auth.ErrBadToken
	}
	return auth.Identity{Tenant: tenant, Method: auth.MethodToken}, nil
}

func (fakeTokens) TenantActive(_ context.Context, name string) bool { return name != "gone" }

// dirVolumes keeps each volume in base/<tenant>/<name>.
type dirVolumes struct{ base string }

func (d dirVolumes) VolumeRoot(_ context.Context, tenant, name string) (string, error) {
	dir := filepath.Join(d.base, tenant, name)
	return dir, os.MkdirAll(dir, 0o755)
}

type testEnv struct {
	srv     *Server
	st      *fakeStore
	vols    dirVolumes
	keys    *Keys
	now     time.Time
	secrets map[string]string // key ID -> secret
}

func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	now := time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC)
	e := &testEnv{
		st:      &fakeStore{volumes: map[string]types.Volume{}, keys: map[string]types.VolumeKey{}},
		vols:    dirVolumes{base: t.TempDir()},
		keys:    NewKeys(bytes.Repeat([]byte{7}, 32)),
		now:     now,
		secrets: map[string]string{},
	}
	for _, v := range []types.Volume{
		{Name: "data", Tenant: "alice", Created: now}, {Name: "logs", Tenant: "alice", Created: now},
		{Name: "data", Tenant: "bob", Created: now}, {Name: "old", Tenant: "gone", Created: now},
	} {
		e.st.volumes[v.Tenant+"/"+v.Name] = v
	}
	e.srv = New(Config{Volumes: e.vols, Store: e.st, Tokens: fakeTokens{}, Keys: e.keys, UploadDir: t.TempDir(), Now: func() time.Time { return now }})
	return e
}

// key makes a key of tenant's volume ("" for all).
func (e *testEnv) key(t *testing.T, tenant, volume string, readOnly bool) string {
	t.Helper()
	v := types.Volume{Tenant: tenant}
	if volume != "" {
		v = e.st.volumes[tenant+"/"+volume]
	}
	secret, k, err := e.keys.New(v, readOnly, "", e.now)
	if err != nil {
		t.Fatal(err)
	}
	if !IsKeyID(k.ID) || len(secret) != secretLen || hashSecret(secret) != k.Hash {
		t.Fatalf("new key: %+v %q", k, secret)
	}
	e.st.keys[k.ID] = k
	e.secrets[k.ID] = secret
	return k.ID
}

func (e *testEnv) file(t *testing.T, tenant, volume, name, data string) {
	t.Helper()
	p := filepath.Join(e.vols.base, tenant, volume, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestWebDAV(t *testing.T) {
	e := newTestEnv(t)
	rw := e.key(t, "alice", "data", false)
	ro := e.key(t, "alice", "data", true)
	gone := e.key(t, "gone", "old", false)
	e.file(t, "alice", "data", "hello.txt", "hello")
	e.file(t, "bob", "data", "secret.txt", "bob's")
	os.Symlink("/", filepath.Join(e.vols.base, "alice", "data", "root"))
	os.Symlink("../../bob/data/secret.txt", filepath.Join(e.vols.base, "alice", "data", "bobs"))
	os.Symlink("hello.txt", filepath.Join(e.vols.base, "alice", "data", "link"))
	h := e.srv.WebDAV()

	type cred func(*http.Request)
	bearer := func(tok string) cred { return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) } }
	basic := func(id string) cred { return func(r *http.Request) { r.SetBasicAuth(id, e.secrets[id]) } }
	none := func(*http.Request) {}
	for _, tc := range []struct {
		name, method, path, body string
		cred                     cred
		status                   int
		want                     string
	}{
		{"no credentials", "GET", "/dav/data/hello.txt", "", none, 401, ""},
		{"token", "GET", "/dav/data/hello.txt", "", bearer("token-alice"), 200, "hello"},
		{"key", "GET", "/dav/data/hello.txt", "", basic(rw), 200, "hello"},
		{"wrong secret", "GET", "/dav/data/hello.txt", "", func(r *http.Request) { r.SetBasicAuth(rw, strings.Repeat("0", 40)) }, 401, ""},
		{"unknown key", "GET", "/dav/data/hello.txt", "", func(r *http.Request) { r.SetBasicAuth("MK000000000000000000", "x") }, 401, ""},
		{"key of a tenant being removed", "GET", "/dav/old/", "", basic(gone), 401, ""},
		{"another tenant's volume", "GET", "/dav/data/secret.txt", "", bearer("token-alice"), 404, ""},
		{"bob's own", "GET", "/dav/data/secret.txt", "", bearer("token-bob"), 200, "bob's"},
		{"no such volume", "PROPFIND", "/dav/nope/", "", bearer("token-alice"), 404, ""},
		{"another volume than the key's", "PROPFIND", "/dav/logs/", "", basic(rw), 404, ""},
		{"GET the volume list", "GET", "/dav/", "", bearer("token-alice"), 405, ""},
		{"the volume list", "PROPFIND", "/dav/", "", bearer("token-alice"), 207, "<D:href>/dav/logs/</D:href>"},
		{"the volume list of a key", "PROPFIND", "/dav/", "", basic(rw), 207, "<D:href>/dav/data/</D:href>"},
		{"write to the volume list", "MKCOL", "/dav/new/", "", bearer("token-alice"), 404, ""},
		{"symlink to /", "GET", "/dav/data/root/etc/passwd", "", basic(rw), 404, ""},
		{"symlink to another tenant", "GET", "/dav/data/bobs", "", basic(rw), 404, ""},
		{"symlink inside", "GET", "/dav/data/link", "", basic(rw), 200, "hello"},
		{"dot-dot", "GET", "/dav/data/../../bob/data/secret.txt", "", basic(rw), 404, ""},
		{"PUT", "PUT", "/dav/data/new.txt", "new", basic(rw), 201, ""},
		{"PUT through a symlink out", "PUT", "/dav/data/root/tmp/x", "x", basic(rw), 409, ""},
		{"read-only GET", "GET", "/dav/data/new.txt", "", basic(ro), 200, "new"},
		{"read-only PROPFIND", "PROPFIND", "/dav/data/", "", basic(ro), 207, "new.txt"},
		{"read-only PUT", "PUT", "/dav/data/ro.txt", "x", basic(ro), 403, ""},
		{"read-only DELETE", "DELETE", "/dav/data/new.txt", "", basic(ro), 403, ""},
		{"read-only MKCOL", "MKCOL", "/dav/data/dir", "", basic(ro), 403, ""},
		{"MKCOL", "MKCOL", "/dav/data/dir", "", basic(rw), 201, ""},
		{"DELETE", "DELETE", "/dav/data/new.txt", "", basic(rw), 204, ""},
		{"DELETE the root", "DELETE", "/dav/data/", "", basic(rw), 405, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body))
			if tc.method == "PROPFIND" {
				r.Header.Set("Depth", "1")
			}
			tc.cred(r)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.status || !strings.Contains(w.Body.String(), tc.want) {
				t.Fatalf("%s %s: %d %q, want %d %q", tc.method, tc.path, w.Code, w.Body.String(), tc.status, tc.want)
			}
			if w.Code == 401 && w.Header().Get("WWW-Authenticate") == "" {
				t.Error("401 without a challenge")
			}
		})
	}
	for _, c := range []struct {
		cred     cred
		not      string
		tenantOf string
	}{{bearer("token-bob"), "/dav/logs/", "bob"}, {basic(rw), "/dav/logs/", "alice's key of data"}} {
		r := httptest.NewRequest("PROPFIND", "/dav/", nil)
		c.cred(r)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != 207 || strings.Contains(w.Body.String(), c.not) {
			t.Errorf("the volume list of %s: %d %s", c.tenantOf, w.Code, w.Body)
		}
	}
	if b, err := os.ReadFile(filepath.Join(e.vols.base, "bob", "data", "secret.txt")); err != nil || string(b) != "bob's" {
		t.Errorf("bob's file: %q %v", b, err)
	}
}

// s3Call makes one signed S3 request as key id.
func (e *testEnv) s3Call(t *testing.T, id, method, target string, body []byte, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, target, bytes.NewReader(body))
	r.Host = "s3.example"
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	if id != "" {
		signV4(r, id, e.secrets[id], sha256Hex(body), e.now)
	}
	w := httptest.NewRecorder()
	e.srv.S3().ServeHTTP(w, r)
	return w
}

func s3Code(w *httptest.ResponseRecorder) string {
	var x xmlError
	xml.Unmarshal(w.Body.Bytes(), &x)
	return x.Code
}

func TestS3Objects(t *testing.T) {
	e := newTestEnv(t)
	rw := e.key(t, "alice", "data", false)
	ro := e.key(t, "alice", "data", true)
	bob := e.key(t, "bob", "data", false)
	all := e.key(t, "alice", "", false)

	// PUT, GET, Range, HEAD.
	if w := e.s3Call(t, rw, "PUT", "/data/dir/a.txt", []byte("0123456789"), "X-Amz-Meta-Mtime", "1700000000.5"); w.Code != 200 || w.Header().Get("ETag") != `"781e5e245d69b566979b86e28d23f2c7"` {
		t.Fatalf("PUT: %d %v %s", w.Code, w.Header(), w.Body)
	}
	fi, err := os.Stat(filepath.Join(e.vols.base, "alice", "data", "dir", "a.txt"))
	if err != nil || !fi.ModTime().Equal(time.Unix(1700000000, 5e8)) {
		t.Fatalf("the file: %v %v", fi, err)
	}
	if w := e.s3Call(t, rw, "GET", "/data/dir/a.txt", nil); w.Code != 200 || w.Body.String() != "0123456789" || w.Header().Get("ETag") != `"781e5e245d69b566979b86e28d23f2c7"` {
		t.Fatalf("GET: %d %v %q", w.Code, w.Header(), w.Body)
	}
	if w := e.s3Call(t, ro, "GET", "/data/dir/a.txt", nil, "Range", "bytes=2-4"); w.Code != 206 || w.Body.String() != "234" {
		t.Fatalf("Range: %d %q", w.Code, w.Body)
	}
	if w := e.s3Call(t, rw, "HEAD", "/data/dir/a.txt", nil); w.Code != 200 || w.Header().Get("Content-Length") != "10" {
		t.Fatalf("HEAD: %d %v", w.Code, w.Header())
	}
	// A file a pod changed: the ETag is no MD5 any more.
	e.file(t, "alice", "data", "dir/a.txt", "changed")
	if w := e.s3Call(t, rw, "HEAD", "/data/dir/a.txt", nil); !strings.HasSuffix(w.Header().Get("ETag"), `-1"`) {
		t.Fatalf("ETag of a changed file: %v", w.Header())
	}

	for _, tc := range []struct {
		name, id, method, target string
		body                     string
		status                   int
		code                     string
	}{
		{"no such key", rw, "GET", "/data/nope", "", 404, "NoSuchKey"},
		{"a directory is no object", rw, "GET", "/data/dir", "", 404, "NoSuchKey"},
		{"another tenant's volume of the same name", bob, "GET", "/data/dir/a.txt", "", 404, "NoSuchKey"}, // bob's own, empty
		{"another volume than the key's", rw, "GET", "/logs/", "", 404, "NoSuchBucket"},
		{"no such bucket", all, "GET", "/nope/", "", 404, "NoSuchBucket"},
		{"read-only PUT", ro, "PUT", "/data/x", "x", 403, "AccessDenied"},
		{"read-only DELETE", ro, "DELETE", "/data/dir/a.txt", "", 403, "AccessDenied"},
		{"dot-dot key", rw, "PUT", "/data/a/../../x", "x", 400, "InvalidArgument"},
		{"empty segment", rw, "PUT", "/data/a//x", "x", 400, "InvalidArgument"},
		{"temp name", rw, "PUT", "/data/" + tempPrefix + "x", "x", 400, "InvalidArgument"},
		{"long key", rw, "PUT", "/data/" + strings.Repeat("a", 1100), "x", 400, "KeyTooLongError"},
		{"a file in the way", rw, "PUT", "/data/dir/a.txt/b", "x", 409, "InvalidRequest"},
		{"unsupported subresource", rw, "GET", "/data/?versioning", "", 501, "NotImplemented"},
		{"delete the bucket", rw, "DELETE", "/data/", "", 405, "MethodNotAllowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := e.s3Call(t, tc.id, tc.method, tc.target, []byte(tc.body))
			if w.Code != tc.status || tc.code != "" && s3Code(w) != tc.code {
				t.Fatalf("%d %s, want %d %s", w.Code, w.Body, tc.status, tc.code)
			}
		})
	}

	// Signatures.
	r := httptest.NewRequest("GET", "/data/dir/a.txt", nil)
	w := httptest.NewRecorder()
	e.srv.S3().ServeHTTP(w, r)
	if w.Code != 403 || s3Code(w) != "AccessDenied" {
		t.Fatalf("unsigned: %d %s", w.Code, w.Body)
	}
	r = httptest.NewRequest("GET", "/data/dir/a.txt", nil)
	signV4(r, rw, "wrong", emptySHA256, e.now)
	w = httptest.NewRecorder()
	e.srv.S3().ServeHTTP(w, r)
	if w.Code != 403 || s3Code(w) != "SignatureDoesNotMatch" {
		t.Fatalf("wrong secret: %d %s", w.Code, w.Body)
	}
	r = httptest.NewRequest("GET", "/data/dir/a.txt", nil)
	signV4(r, rw, e.secrets[rw], emptySHA256, e.now.Add(-time.Hour))
	w = httptest.NewRecorder()
	e.srv.S3().ServeHTTP(w, r)
	if w.Code != 403 || s3Code(w) != "RequestTimeTooSkewed" {
		t.Fatalf("an hour old: %d %s", w.Code, w.Body)
	}
	r = httptest.NewRequest("GET", "/data/dir/a.txt", nil)
	signV4(r, "kr_0123456789abcdef", "x", emptySHA256, e.now)
	w = httptest.NewRecorder()
	e.srv.S3().ServeHTTP(w, r)
	if w.Code != 403 || s3Code(w) != "InvalidAccessKeyId" {
		t.Fatalf("a token ID: %d %s", w.Code, w.Body)
	}
	// A body that is not what was signed leaves nothing behind.
	r = httptest.NewRequest("PUT", "/data/tampered", strings.NewReader("evil"))
	signV4(r, rw, e.secrets[rw], sha256Hex([]byte("good")), e.now)
	w = httptest.NewRecorder()
	e.srv.S3().ServeHTTP(w, r)
	if w.Code != 400 || s3Code(w) != "XAmzContentSHA256Mismatch" {
		t.Fatalf("tampered body: %d %s", w.Code, w.Body)
	}
	if names, _ := os.ReadDir(filepath.Join(e.vols.base, "alice", "data")); len(names) != 1 {
		t.Fatalf("files after a refused PUT: %v", names)
	}

	// An aws-chunked body with a checksum trailer, as newer SDKs stream.
	r = httptest.NewRequest("PUT", "/data/streamed", strings.NewReader(trailerBody([]string{"hello ", "world"}, "x-amz-checksum-crc32:DUoRhQ==\r\n")))
	r.Header.Set("Content-Encoding", "aws-chunked")
	r.Header.Set("X-Amz-Decoded-Content-Length", "11")
	signV4(r, rw, e.secrets[rw], streamingTrailer, e.now)
	w = httptest.NewRecorder()
	e.srv.S3().ServeHTTP(w, r)
	if b, err := os.ReadFile(filepath.Join(e.vols.base, "alice", "data", "streamed")); w.Code != 200 || err != nil || string(b) != "hello world" {
		t.Fatalf("aws-chunked PUT: %d %s; file %q %v", w.Code, w.Body, b, err)
	}
	r = httptest.NewRequest("PUT", "/data/streamed2", strings.NewReader(trailerBody([]string{"hello ", "world"}, "x-amz-checksum-crc32:AAAAAA==\r\n")))
	signV4(r, rw, e.secrets[rw], streamingTrailer, e.now)
	w = httptest.NewRecorder()
	e.srv.S3().ServeHTTP(w, r)
	if _, err := os.Stat(filepath.Join(e.vols.base, "alice", "data", "streamed2")); w.Code != 400 || err == nil {
		t.Fatalf("aws-chunked PUT with a wrong checksum: %d %s", w.Code, w.Body)
	}

	// Copy, onto itself with a new time, delete.
	if w := e.s3Call(t, rw, "PUT", "/data/copy.txt", nil, "X-Amz-Copy-Source", "/data/dir/a.txt"); w.Code != 200 || !strings.Contains(w.Body.String(), "CopyObjectResult") {
		t.Fatalf("copy: %d %s", w.Code, w.Body)
	}
	if w := e.s3Call(t, rw, "PUT", "/data/copy.txt", nil, "X-Amz-Copy-Source", "data/copy.txt", "X-Amz-Metadata-Directive", "REPLACE", "X-Amz-Meta-Mtime", "1600000000"); w.Code != 200 {
		t.Fatalf("set mtime: %d %s", w.Code, w.Body)
	}
	if fi, err := os.Stat(filepath.Join(e.vols.base, "alice", "data", "copy.txt")); err != nil || fi.ModTime().Unix() != 1600000000 {
		t.Fatalf("copied: %v %v", fi, err)
	}
	if w := e.s3Call(t, rw, "PUT", "/data/x", nil, "X-Amz-Copy-Source", "/logs/a"); w.Code != 404 || s3Code(w) != "NoSuchBucket" {
		t.Fatalf("copy from a volume the key does not reach: %d %s", w.Code, w.Body)
	}
	if w := e.s3Call(t, bob, "PUT", "/data/stolen", nil, "X-Amz-Copy-Source", "/data/dir/a.txt"); w.Code != 404 {
		t.Fatalf("bob copies from alice: %d %s", w.Code, w.Body)
	}
	del := `<Delete><Object><Key>copy.txt</Key></Object><Object><Key>nope</Key></Object><Object><Key>../x</Key></Object></Delete>`
	w = e.s3Call(t, rw, "POST", "/data/?delete", []byte(del))
	var dr deleteResult
	if err := xml.Unmarshal(w.Body.Bytes(), &dr); w.Code != 200 || err != nil || len(dr.Deleted) != 2 || len(dr.Errors) != 1 {
		t.Fatalf("DeleteObjects: %d %s", w.Code, w.Body)
	}
	if w := e.s3Call(t, rw, "DELETE", "/data/dir/a.txt", nil); w.Code != 204 {
		t.Fatalf("DELETE: %d", w.Code)
	}

	// Buckets.
	w = e.s3Call(t, all, "GET", "/", nil)
	if w.Code != 200 || !strings.Contains(w.Body.String(), "<Name>data</Name>") || !strings.Contains(w.Body.String(), "<Name>logs</Name>") {
		t.Fatalf("ListBuckets with a key of all volumes: %s", w.Body)
	}
	w = e.s3Call(t, rw, "GET", "/", nil)
	if strings.Contains(w.Body.String(), "logs") || !strings.Contains(w.Body.String(), "<Name>data</Name>") {
		t.Fatalf("ListBuckets with a key of one volume: %s", w.Body)
	}
	if w := e.s3Call(t, rw, "HEAD", "/data", nil); w.Code != 200 {
		t.Fatalf("HeadBucket: %d", w.Code)
	}
	if w := e.s3Call(t, rw, "PUT", "/data", nil); w.Code != 200 {
		t.Fatalf("CreateBucket of the key's volume: %d", w.Code)
	}
	// A volume made again under the same name is not the key's.
	v := e.st.volumes["alice/data"]
	v.Created = v.Created.Add(time.Hour)
	e.st.volumes["alice/data"] = v
	if w := e.s3Call(t, rw, "HEAD", "/data", nil); w.Code != 404 {
		t.Fatalf("a volume made again: %d", w.Code)
	}
}

func TestS3List(t *testing.T) {
	e := newTestEnv(t)
	id := e.key(t, "alice", "data", false)
	files := []string{"a-b", "a/b", "a/c/d", "a0", "b/x", "b/y", "c", "ü/é"}
	for _, f := range files {
		e.file(t, "alice", "data", f, f)
	}
	os.Mkdir(filepath.Join(e.vols.base, "alice", "data", "empty"), 0o755)
	os.Symlink("/etc", filepath.Join(e.vols.base, "alice", "data", "etc"))
	os.Symlink("c", filepath.Join(e.vols.base, "alice", "data", "c-link"))
	list := func(q string) listBucketResult {
		t.Helper()
		w := e.s3Call(t, id, "GET", "/data?"+q, nil)
		var res listBucketResult
		if err := xml.Unmarshal(w.Body.Bytes(), &res); w.Code != 200 || err != nil {
			t.Fatalf("list %s: %d %s", q, w.Code, w.Body)
		}
		return res
	}
	names := func(res listBucketResult) string {
		var out []string
		for _, c := range res.Contents {
			out = append(out, c.Key)
		}
		for _, p := range res.CommonPrefixes {
			out = append(out, p.Prefix+"*")
		}
		return strings.Join(out, " ")
	}
	for _, tc := range []struct{ q, want string }{
		{"list-type=2", "a-b a/b a/c/d a0 b/x b/y c c-link ü/é"},
		{"list-type=2&delimiter=/", "a-b a0 c c-link a/* b/* empty/* ü/*"},
		{"list-type=2&prefix=a/", "a/b a/c/d"},
		{"list-type=2&prefix=a/&delimiter=/", "a/b a/c/*"},
		{"list-type=2&prefix=a", "a-b a/b a/c/d a0"},
		{"list-type=2&prefix=a/c/d", "a/c/d"},
		{"list-type=2&prefix=etc/", ""},
		{"list-type=2&prefix=nope/x", ""},
		{"list-type=2&start-after=b/x", "b/y c c-link ü/é"},
		{"marker=b/x", "b/y c c-link ü/é"},
		{"list-type=2&encoding-type=url&prefix=%C3%BC/", "%C3%BC/%C3%A9"},
	} {
		if got := names(list(tc.q)); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.q, got, tc.want)
		}
	}
	// Pages of two with a continuation token, delimiter included.
	var got []string
	q := "list-type=2&delimiter=/&max-keys=2"
	for i := 0; ; i++ {
		res := list(q)
		got = append(got, names(res))
		if !res.IsTruncated {
			break
		}
		if i > 10 || res.NextContinuationToken == "" {
			t.Fatalf("no end: %+v", res)
		}
		q = "list-type=2&delimiter=/&max-keys=2&continuation-token=" + res.NextContinuationToken
	}
	// Entries come in key order, common prefixes among the keys.
	if strings.Join(got, "|") != "a-b a/*|a0 b/*|c c-link|empty/* ü/*" {
		t.Errorf("pages: %q", got)
	}
	for _, bad := range []string{"list-type=3", "max-keys=-1", "max-keys=x", "encoding-type=base64", "list-type=2&continuation-token=!!"} {
		if w := e.s3Call(t, id, "GET", "/data?"+bad, nil); w.Code != 400 {
			t.Errorf("%s: %d", bad, w.Code)
		}
	}
}

func TestS3Multipart(t *testing.T) {
	e := newTestEnv(t)
	id := e.key(t, "alice", "data", false)
	w := e.s3Call(t, id, "POST", "/data/big/file.bin?uploads", nil)
	var init initiateMultipartUploadResult
	if err := xml.Unmarshal(w.Body.Bytes(), &init); w.Code != 200 || err != nil || init.UploadID == "" {
		t.Fatalf("create: %d %s", w.Code, w.Body)
	}
	parts := [][]byte{bytes.Repeat([]byte("a"), 5<<20), bytes.Repeat([]byte("b"), 1000), []byte("c")}
	var etags []string
	for i, p := range parts {
		w := e.s3Call(t, id, "PUT", fmt.Sprintf("/data/big/file.bin?partNumber=%d&uploadId=%s", i+1, init.UploadID), p)
		if w.Code != 200 {
			t.Fatalf("part %d: %d %s", i+1, w.Code, w.Body)
		}
		etags = append(etags, w.Header().Get("ETag"))
	}
	if w := e.s3Call(t, id, "PUT", "/data/other?partNumber=1&uploadId="+init.UploadID, []byte("x")); w.Code != 404 || s3Code(w) != "NoSuchUpload" {
		t.Fatalf("a part of another key: %d %s", w.Code, w.Body)
	}
	if w := e.s3Call(t, id, "PUT", "/data/big/file.bin?partNumber=0&uploadId="+init.UploadID, []byte("x")); w.Code != 400 {
		t.Fatalf("part 0: %d %s", w.Code, w.Body)
	}
	complete := func(body string) *httptest.ResponseRecorder {
		return e.s3Call(t, id, "POST", "/data/big/file.bin?uploadId="+init.UploadID, []byte(body))
	}
	if w := complete(fmt.Sprintf(`<CompleteMultipartUpload><Part><PartNumber>2</PartNumber><ETag>%s</ETag></Part><Part><PartNumber>1</PartNumber><ETag>%s</ETag></Part></CompleteMultipartUpload>`, etags[1], etags[0])); s3Code(w) != "InvalidPartOrder" {
		t.Fatalf("out of order: %d %s", w.Code, w.Body)
	}
	if w := complete(`<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>"00"</ETag></Part></CompleteMultipartUpload>`); s3Code(w) != "InvalidPart" {
		t.Fatalf("wrong ETag: %d %s", w.Code, w.Body)
	}
	if w := complete(`<CompleteMultipartUpload><Part>`); s3Code(w) != "MalformedXML" {
		t.Fatalf("bad XML: %d %s", w.Code, w.Body)
	}
	var b strings.Builder
	b.WriteString("<CompleteMultipartUpload>")
	for i, tag := range etags {
		fmt.Fprintf(&b, "<Part><PartNumber>%d</PartNumber><ETag>%s</ETag></Part>", i+1, tag)
	}
	b.WriteString("</CompleteMultipartUpload>")
	w = complete(b.String())
	if w.Code != 200 {
		t.Fatalf("complete: %d %s", w.Code, w.Body)
	}
	got, err := os.ReadFile(filepath.Join(e.vols.base, "alice", "data", "big", "file.bin"))
	whole := bytes.Join(parts, nil)
	if err != nil || !bytes.Equal(got, whole) {
		t.Fatalf("the object: %d bytes, %v", len(got), err)
	}
	sum := md5.Sum(whole)
	if !strings.Contains(w.Body.String(), hex.EncodeToString(sum[:])) {
		t.Errorf("complete's ETag: %s", w.Body)
	}
	if w := complete(b.String()); s3Code(w) != "NoSuchUpload" {
		t.Fatalf("complete twice: %d %s", w.Code, w.Body)
	}
	// Abort.
	w = e.s3Call(t, id, "POST", "/data/x?uploads", nil)
	xml.Unmarshal(w.Body.Bytes(), &init)
	if w := e.s3Call(t, id, "DELETE", "/data/x?uploadId="+init.UploadID, nil); w.Code != 204 {
		t.Fatalf("abort: %d %s", w.Code, w.Body)
	}
	if w := e.s3Call(t, id, "DELETE", "/data/x?uploadId="+init.UploadID, nil); w.Code != 404 {
		t.Fatalf("abort twice: %d %s", w.Code, w.Body)
	}
	if entries, _ := os.ReadDir(filepath.Join(e.srv.uploadDir, "alice", "data")); len(entries) != 0 {
		t.Errorf("uploads left: %v", entries)
	}
	// An upload abandoned for more than a week goes with the next one.
	e.now = time.Now()
	e.srv.now = time.Now
	e.s3Call(t, id, "POST", "/data/x?uploads", nil)
	dir := filepath.Join(e.srv.uploadDir, "alice", "data")
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("uploads: %v", entries)
	}
	abandoned := entries[0].Name()
	old := time.Now().Add(-8 * 24 * time.Hour)
	os.Chtimes(filepath.Join(dir, abandoned), old, old)
	if w := e.s3Call(t, id, "POST", "/data/y?uploads", nil); w.Code != 200 {
		t.Fatalf("create: %d %s", w.Code, w.Body)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 || entries[0].Name() == abandoned {
		t.Errorf("uploads after the sweep: %v (abandoned %s)", entries, abandoned)
	}
}

func TestKeys(t *testing.T) {
	dir := t.TempDir()
	k1, err := LoadOrCreateKeys(filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	k2, err := LoadOrCreateKeys(filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if k1.Secret("MK1") != k2.Secret("MK1") || k1.Secret("MK1") == k1.Secret("MK2") {
		t.Fatal("secrets are not derived from the key file")
	}
	if fi, _ := os.Stat(filepath.Join(dir, KeyFile)); fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v", fi.Mode())
	}
	os.WriteFile(filepath.Join(dir, "short"), []byte("x"), 0o600)
	if _, err := LoadOrCreateKeys(filepath.Join(dir, "short")); err == nil {
		t.Error("a short key file accepted")
	}
	for s, want := range map[string]bool{"MK0123456789ABCDEF01": true, "MK0123456789abcdef01": false, "MK01": false, "AK0123456789ABCDEF01": false} {
		if IsKeyID(s) != want {
			t.Errorf("IsKeyID(%q) != %v", s, want)
		}
	}
	// A key made with another server key is refused.
	e := newTestEnv(t)
	id := e.key(t, "alice", "data", false)
	e.srv.keys = NewKeys(bytes.Repeat([]byte{8}, 32))
	if _, err := e.srv.keyGrant(context.Background(), id, e.secrets[id]); err != errBadKey {
		t.Fatalf("a key of another server key: %v", err)
	}
}

func FuzzKeyPath(f *testing.F) {
	for _, s := range []string{"a", "a/b/c", "a/", "../x", "a//b", "/a", ".", "a/./b", "ü/é", "a\x00b", tempPrefix + "x", strings.Repeat("a", 300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		p, dir, err := keyPath(key)
		if err != nil {
			return
		}
		clean := filepath.Clean(p)
		if clean != p || filepath.IsAbs(p) || p == "." || p == ".." || strings.HasPrefix(p, "../") || strings.Contains(p, "\x00") {
			t.Fatalf("keyPath(%q) = %q: not a clean path inside the volume", key, p)
		}
		if dir != strings.HasSuffix(key, "/") || strings.TrimSuffix(key, "/") != p {
			t.Fatalf("keyPath(%q) = %q %v", key, p, dir)
		}
	})
}

func FuzzListParams(f *testing.F) {
	for _, s := range []string{"list-type=2&prefix=a/&delimiter=/&max-keys=10", "marker=x", "continuation-token=YQ&list-type=2", "max-keys=99999999999999999999", "encoding-type=url"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := parseQuery(raw)
		if err != nil {
			return
		}
		p, err := parseListParams(q)
		if err != nil {
			return
		}
		if p.max < 0 || p.max > 1000 || len(p.after) > maxKeyLen {
			t.Fatalf("%q: %+v", raw, p)
		}
	})
}

func FuzzS3XML(f *testing.F) {
	f.Add(`<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>"a"</ETag></Part></CompleteMultipartUpload>`)
	f.Add(`<Delete><Quiet>true</Quiet><Object><Key>a</Key></Object></Delete>`)
	f.Add(`<Delete><Object><Key>` + strings.Repeat("<", 10) + `</Key>`)
	f.Fuzz(func(t *testing.T, body string) {
		var c completeMultipartUpload
		if err := readXML(strings.NewReader(body), &c); err == nil {
			for _, p := range c.Parts {
				_ = p.PartNumber
			}
		}
		var d deleteRequest
		if err := readXML(strings.NewReader(body), &d); err == nil {
			for _, o := range d.Objects {
				keyPath(o.Key)
			}
		}
	})
}

func FuzzCopySource(f *testing.F) {
	for _, s := range []string{"/b/k", "b/k?versionId=1", "/b/a%2Fb", "%zz", "/b/", "//"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		b, k, err := copySource(v)
		if err == nil && (b == "" || k == "" || strings.Contains(b, "/")) {
			t.Fatalf("copySource(%q) = %q %q", v, b, k)
		}
	})
}
