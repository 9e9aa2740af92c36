package image

import (
	"context"
	"errors"
	"fmt"
	goruntime "runtime"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/macro-cloud/macro/internal/testenv"
)

func TestPull(t *testing.T) {
	requireRoot(t)
	reg := testenv.StartRegistry(t)
	ctx := context.Background()
	img := testImage(t, "sh", testLayer(t, baseLayerEntries...), testLayer(t, appLayerEntries...))
	reg.Push(t, img, "busybox:latest")
	digest, _ := img.Digest()
	ref := reg.Ref("busybox:latest")

	s := openStore(t, t.TempDir())
	var events []ProgressEvent
	got, err := s.Tenant("default").Pull(ctx, ref, PullOptions{Progress: func(e ProgressEvent) { events = append(events, e) }})
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != configID(t, img) || !slices.Equal(got.RepoTags, []string{ref}) ||
		!slices.Equal(got.RepoDigests, []string{reg.Addr + "/busybox@" + digest.String()}) {
		t.Fatalf("pulled %+v", got)
	}
	statuses := map[string]int{}
	for _, e := range events {
		statuses[e.Status]++
	}
	if events[0] != (ProgressEvent{ID: "latest", Status: "Pulling from busybox"}) ||
		statuses["Pulling fs layer"] != 2 || statuses["Download complete"] != 2 || statuses["Pull complete"] != 2 || statuses["Extracting"] == 0 ||
		events[len(events)-2].Status != "Digest: "+digest.String() ||
		events[len(events)-1].Status != "Status: Downloaded newer image for "+ref {
		t.Errorf("events: %+v", events)
	}
	for _, e := range events {
		if e.ID != "" && e.ID != "latest" && len(e.ID) != 12 {
			t.Errorf("layer ID %q is not 12 characters", e.ID)
		}
	}

	// Again: nothing to download.
	events = nil
	if _, err := s.Tenant("default").Pull(ctx, ref, PullOptions{Progress: func(e ProgressEvent) { events = append(events, e) }}); err != nil {
		t.Fatal(err)
	}
	if events[1].Status != "Already exists" || events[len(events)-1].Status != "Status: Image is up to date for "+ref {
		t.Errorf("second pull events: %+v", events)
	}

	// By digest: no tag, the digest reference.
	byDigest := reg.Addr + "/busybox@" + digest.String()
	if im, err := s.Tenant("default").Pull(ctx, byDigest, PullOptions{}); err != nil || im.ID != got.ID {
		t.Fatalf("pull by digest: %+v %v", im, err)
	}
	if im, err := s.Lookup(ctx, byDigest); err != nil || im.ID != got.ID {
		t.Fatalf("lookup by digest: %v", err)
	}

	// The pulled image is usable: save works from compressed blobs.
	var sink strings.Builder
	if err := s.Tenant("default").Save(ctx, []string{ref}, &sink); err != nil || sink.Len() == 0 {
		t.Fatalf("save of a pulled image: %v", err)
	}
}

func TestPullErrors(t *testing.T) {
	requireRoot(t)
	reg := testenv.StartRegistry(t)
	ctx := context.Background()
	reg.Push(t, testImage(t, "sh", testLayer(t, baseLayerEntries...)), "busybox:latest")
	s := openStore(t, t.TempDir())
	tests := []struct {
		ref        string
		status     int
		wantPrefix string
	}{
		{reg.Ref("busybox:nosuch"), 404, fmt.Sprintf("manifest for %s not found: manifest unknown: ", reg.Ref("busybox:nosuch"))},
		{reg.Ref("nosuchrepo:latest"), 404, ""},
		{"127.0.0.1:1/busybox:latest", 500, `Get "http`},
		{"Bad/Name", 400, "invalid reference format"},
	}
	for _, tt := range tests {
		var started bool
		_, err := s.Tenant("default").Pull(ctx, tt.ref, PullOptions{Progress: func(ProgressEvent) { started = true }})
		if err == nil {
			t.Errorf("Pull(%s) succeeded", tt.ref)
			continue
		}
		st, ok := err.(interface{ HTTPStatus() int })
		if !ok || st.HTTPStatus() != tt.status || !strings.HasPrefix(err.Error(), tt.wantPrefix) || started {
			t.Errorf("Pull(%s) = %q (status %v, progress %v), want %d %q...", tt.ref, err, st, started, tt.status, tt.wantPrefix)
		}
		if tt.status == 404 && !errors.Is(err, ErrNotFound) {
			t.Errorf("Pull(%s): %v is not ErrNotFound", tt.ref, err)
		}
		t.Logf("%s: %v", tt.ref, err)
	}
	_, err := s.Tenant("default").Pull(ctx, "127.0.0.1:1/busybox", PullOptions{})
	if err == nil || !strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), "\n") {
		t.Errorf("unreachable registry: %q", err)
	}
	assertEmpty(t, s)
}

func TestPullMultiArch(t *testing.T) {
	requireRoot(t)
	reg := testenv.StartRegistry(t)
	amd := testImage(t, "amd64", testLayer(t, tarEntry{name: "arch", body: "amd64"}))
	arm := testImage(t, "arm64", testLayer(t, tarEntry{name: "arch", body: "arm64"}))
	cf, _ := arm.ConfigFile()
	cf = cf.DeepCopy()
	cf.Architecture = "arm64"
	arm, _ = mutate.ConfigFile(arm, cf)
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}},
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
	)
	ref, err := name.ParseReference(reg.Ref("multi:latest"))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatal(err)
	}
	idxDigest, _ := idx.Digest()
	s := openStore(t, t.TempDir())
	ctx := context.Background()
	got, err := s.Tenant("default").Pull(ctx, reg.Ref("multi:latest"), PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := amd
	if goruntime.GOARCH == "arm64" {
		want = arm
	}
	if got.ID != configID(t, want) {
		t.Fatalf("pulled %s (%s), want %s", got.ID, got.Config.Architecture, configID(t, want))
	}
	if !slices.Equal(got.RepoDigests, []string{reg.Addr + "/multi@" + idxDigest.String()}) {
		t.Errorf("RepoDigests %v: the index digest is what the tag names", got.RepoDigests)
	}
	// Another platform on request.
	got, err = s.Tenant("default").Pull(ctx, reg.Ref("multi:latest"), PullOptions{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}})
	if err != nil || got.ID != configID(t, arm) {
		t.Fatalf("arm64 pull: %+v %v", got.ID, err)
	}
	_, err = s.Tenant("default").Pull(ctx, reg.Ref("multi:latest"), PullOptions{Platform: &v1.Platform{OS: "linux", Architecture: "s390x"}})
	if err == nil || err.Error() != "no matching manifest for linux/s390x in the manifest list entries" {
		t.Fatalf("s390x pull: %v", err)
	}
}

func TestPullWithAuthAndLogin(t *testing.T) {
	requireRoot(t)
	reg := testenv.StartRegistryWithAuth(t, "alice", "s3cret")
	img := testImage(t, "sh", testLayer(t, baseLayerEntries...))
	reg.Push(t, img, "private:1")
	s := openStore(t, t.TempDir())
	ctx := context.Background()
	if _, err := s.Tenant("default").Pull(ctx, reg.Ref("private:1"), PullOptions{}); err == nil || !strings.HasPrefix(err.Error(), "pull access denied for "+reg.Addr+"/private") {
		t.Fatalf("anonymous pull: %v", err)
	}
	got, err := s.Tenant("default").Pull(ctx, reg.Ref("private:1"), PullOptions{Auth: &authn.AuthConfig{Username: "alice", Password: "s3cret"}})
	if err != nil || got.ID != configID(t, img) {
		t.Fatalf("pull with auth: %v", err)
	}
	if err := s.Login(ctx, reg.Addr, authn.AuthConfig{Username: "alice", Password: "s3cret"}); err != nil {
		t.Fatalf("login: %v", err)
	}
	err = s.Login(ctx, "http://"+reg.Addr, authn.AuthConfig{Username: "alice", Password: "wrong"})
	if st, ok := err.(interface{ HTTPStatus() int }); !ok || st.HTTPStatus() != 401 {
		t.Fatalf("login with a wrong password: %v", err)
	}
	t.Logf("wrong password: %v", err)
}

// An interrupted pull leaves no image, tag or layer behind.
func TestInterruptedPull(t *testing.T) {
	requireRoot(t)
	reg := testenv.StartRegistry(t)
	img := testImage(t, "sh", testLayer(t, baseLayerEntries...), testLayer(t, appLayerEntries...))
	reg.Push(t, img, "busybox:latest")
	s := openStore(t, t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	completed := 0
	_, err := s.Tenant("default").Pull(ctx, reg.Ref("busybox:latest"), PullOptions{Progress: func(e ProgressEvent) {
		if e.Status == "Pull complete" {
			completed++
			cancel() // after one layer was committed
		}
	}})
	if err == nil || completed == 0 {
		t.Fatalf("Pull = %v after %d layers", err, completed)
	}
	imgs, _ := s.List(context.Background())
	if len(imgs) != 0 {
		t.Fatalf("images after an interrupted pull: %+v", imgs)
	}
	if _, err := s.Lookup(context.Background(), reg.Ref("busybox:latest")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Lookup: %v", err)
	}
	// The next start sweeps the orphaned layer; a new pull works.
	s = openStore(t, s.dir)
	assertEmpty(t, s)
	if _, err := s.Tenant("default").Pull(context.Background(), reg.Ref("busybox:latest"), PullOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestLastAttempt(t *testing.T) {
	https := `Get "https://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused`
	plain := `Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused`
	for _, tc := range []struct{ all, want string }{
		{https, https},                           // https only: a registry that must use TLS
		{https + "; " + plain, plain},            // https, then http: dockerd reports the last
		{"ping: " + https + "; " + plain, plain}, // wrapped
	} {
		if got := lastAttempt(tc.all, https); got != tc.want {
			t.Errorf("lastAttempt(%q) = %q, want %q", tc.all, got, tc.want)
		}
	}
}
