package client_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/macro-cloud/macro/client"
	"github.com/macro-cloud/macro/image"
	"github.com/macro-cloud/macro/internal/testenv"
	"github.com/macro-cloud/macro/registry"
)

// pushEnv is macro's registry over an image store, behind TLS, with a
// hook in front of it.
type pushEnv struct {
	store *image.Store
	url   string
	roots *x509.CertPool
	hook  func(w http.ResponseWriter, r *http.Request) bool // true: handled
}

func newPushEnv(t *testing.T) *pushEnv {
	testenv.RequireRoot(t) // the image store extracts layers as root
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := image.Open(filepath.Join(t.TempDir(), "images"), log)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.New(registry.Config{Store: st, Log: log, Authenticate: func(r *http.Request) (string, bool) {
		switch r.Header.Get("Authorization") {
		case "Bearer alice-token":
			return "alice", true
		case "Bearer bob-token":
			return "bob", true
		}
		return "", false
	}})
	if err != nil {
		t.Fatal(err)
	}
	e := &pushEnv{store: st}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if e.hook != nil && e.hook(w, r) {
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	e.url = srv.URL
	e.roots = x509.NewCertPool()
	e.roots.AddCert(srv.Certificate())
	return e
}

func (e *pushEnv) client(t *testing.T, token string) *client.Client {
	c, err := client.New(e.url, client.Options{Token: token, RootCAs: e.roots})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// randomImage has layers of incompressible bytes, as plain tars (what
// docker save gives) that Push gzips.
func randomImage(t *testing.T, sizes ...int) (client.PushImage, v1.Image) {
	img := empty.Image
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	img, _ = mutate.ConfigFile(img, cf)
	var layers []client.PushLayer
	for i, n := range sizes {
		data := make([]byte, n)
		rand.Read(data)
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		tw.WriteHeader(&tar.Header{Name: "f" + string(rune('a'+i)), Mode: 0o644, Size: int64(n), Typeflag: tar.TypeReg})
		tw.Write(data)
		tw.Close()
		raw := b.Bytes()
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil })
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			t.Fatal(err)
		}
		diffID, _ := l.DiffID()
		layers = append(layers, client.PushLayer{DiffID: diffID, Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil }})
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	return client.PushImage{Config: cfg, Layers: layers}, img
}

func TestPushSkipsWhatIsThere(t *testing.T) {
	e := newPushEnv(t)
	img, _ := randomImage(t, 100<<10, 50<<10)
	c := e.client(t, "alice-token")
	var phases sync.Map
	res, err := c.Push(t.Context(), "app/web", "1", img, client.PushOptions{Progress: func(p client.PushProgress) {
		phases.Store(p.Phase, true)
	}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Layers != 2 || res.Pushed != 2 || res.Existing != 0 || res.BytesSent < 150<<10 {
		t.Fatalf("first push: %+v", res)
	}
	for _, ph := range []client.PushPhase{client.PhaseWaiting, client.PhaseCompressing, client.PhaseChecking, client.PhaseUploading, client.PhasePushed} {
		if _, ok := phases.Load(ph); !ok {
			t.Errorf("no %q reported", ph)
		}
	}
	if _, err := e.store.Tenant("alice").Lookup(t.Context(), "app/web:1"); err != nil {
		t.Fatalf("the pushed image: %v", err)
	}
	// Again, in another repository: compressed to the same blobs, which
	// the tenant has.
	res2, err := c.Push(t.Context(), "app/other", "1", img, client.PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res2.Pushed != 0 || res2.Existing != 2 || res2.BytesSent != 0 || res2.Digest != res.Digest {
		t.Fatalf("second push: %+v (first %+v)", res2, res)
	}
	// Bob has none of it.
	res3, err := e.client(t, "bob-token").Push(t.Context(), "app/web", "1", img, client.PushOptions{})
	if err != nil || res3.Pushed != 2 {
		t.Fatalf("bob's push: %+v %v", res3, err)
	}
}

// A connection cut off in the middle of an upload: Push asks where the
// upload is and goes on from there.
func TestPushResumes(t *testing.T) {
	e := newPushEnv(t)
	img, _ := randomImage(t, 600<<10)
	var patches, cut atomic.Int32
	e.hook = func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodPatch {
			return false
		}
		// The third chunk's connection breaks, after some of its bytes.
		if patches.Add(1) == 3 {
			cut.Add(1)
			io.CopyN(io.Discard, r.Body, 1000)
			panic(http.ErrAbortHandler)
		}
		return false
	}
	c := e.client(t, "alice-token")
	res, err := c.Push(t.Context(), "app", "1", img, client.PushOptions{ChunkSize: 128 << 10})
	if err != nil {
		t.Fatal(err)
	}
	if cut.Load() != 1 || res.Pushed != 1 {
		t.Fatalf("%d cuts, %+v", cut.Load(), res)
	}
	// The cut chunk was sent again, nothing before it.
	if res.BytesSent > 600<<10+2*128<<10+4096 {
		t.Errorf("%d bytes sent for a 600 KiB layer", res.BytesSent)
	}
	if _, err := e.store.Tenant("alice").Lookup(t.Context(), "app:1"); err != nil {
		t.Fatalf("the pushed image: %v", err)
	}
}

// What the registry refuses is said, and no image is left.
func TestPushRefused(t *testing.T) {
	e := newPushEnv(t)
	img, _ := randomImage(t, 10<<10)
	_, err := e.client(t, "wrong-token").Push(t.Context(), "app", "1", img, client.PushOptions{})
	if !errors.Is(err, client.ErrUnauthorized) {
		t.Errorf("a wrong token: %v", err)
	}
	// A layer that is not what the config says.
	bad := img
	bad.Layers = append([]client.PushLayer{}, img.Layers...)
	bad.Layers[0].DiffID = v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("1", 64)}
	_, err = e.client(t, "alice-token").Push(t.Context(), "app", "1", bad, client.PushOptions{})
	if err == nil || !strings.Contains(err.Error(), "the image is damaged") {
		t.Errorf("a damaged image: %v", err)
	}
	// A manifest the registry refuses: its config's layers are not its
	// layers.
	other, _ := randomImage(t, 10<<10)
	mixed := client.PushImage{Config: other.Config, Layers: img.Layers}
	_, err = e.client(t, "alice-token").Push(t.Context(), "app", "1", mixed, client.PushOptions{})
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != 400 || !strings.Contains(ce.Message, "MANIFEST_INVALID") {
		t.Errorf("a manifest of another image's layers: %v", err)
	}
	if imgs, _ := e.store.Tenant("alice").List(context.Background()); len(imgs) != 0 {
		t.Errorf("failed pushes left images: %+v", imgs)
	}
	if _, err := e.client(t, "alice-token").Push(t.Context(), "Bad Name", "1", img, client.PushOptions{}); err == nil || !strings.Contains(err.Error(), "invalid repository name") {
		t.Errorf("a bad name: %v", err)
	}
}

// An upload that fails is deleted, not left to hold the tenant's room
// for uploads until it expires.
func TestPushCancelsFailedUpload(t *testing.T) {
	e := newPushEnv(t)
	img, _ := randomImage(t, 10<<10)
	var mu sync.Mutex
	var deleted []string
	e.hook = func(w http.ResponseWriter, r *http.Request) bool {
		switch r.Method {
		case http.MethodPatch:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"errors":[{"code":"BLOB_UPLOAD_INVALID","message":"no"}]}`)
			return true
		case http.MethodDelete:
			mu.Lock()
			deleted = append(deleted, r.URL.Path)
			mu.Unlock()
		}
		return false
	}
	_, err := e.client(t, "alice-token").Push(t.Context(), "app", "1", img, client.PushOptions{})
	if err == nil || !strings.Contains(err.Error(), "BLOB_UPLOAD_INVALID: no") {
		t.Fatalf("push: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(deleted) != 1 {
		t.Fatalf("deleted %q", deleted)
	}
	req, _ := http.NewRequest(http.MethodGet, e.url+deleted[0], nil)
	req.Header.Set("Authorization", "Bearer alice-token")
	resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.roots}}}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("the failed upload after the push: %d", resp.StatusCode)
	}
}
