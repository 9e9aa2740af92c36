package docker

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/macro-cloud/macro/image"
	"github.com/macro-cloud/macro/internal/testenv"
	"github.com/macro-cloud/macro/internal/testimages"
	"github.com/macro-cloud/macro/registry"
	"github.com/macro-cloud/macro/types"
)

// One port serves the Docker API and the registry, as the tenant-facing
// TLS port does: what crane pushes there, the docker CLI sees under its
// own name and under HOST:PORT/name; `docker push HOST:PORT/name` is
// answered from the tenant's images; `docker pull HOST:PORT/name` finds
// them up to date.
func TestImagesThroughOwnRegistry(t *testing.T) {
	testenv.RequireRoot(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := image.Open(t.TempDir(), log)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.New(registry.Config{Store: st, Log: log, Authenticate: func(r *http.Request) (string, bool) {
		_, pw, ok := r.BasicAuth()
		return types.DefaultTenant, ok && pw == "tok"
	}})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/v2/", reg)
	mux.Handle("/", New(Config{Log: log, Images: st}).Handler())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")

	ref, _ := name.ParseReference(host+"/team/app:1", name.Insecure)
	if err := remote.Write(ref, testimages.BusyboxImage(t), remote.WithAuth(&authn.Basic{Username: "u", Password: "tok"})); err != nil {
		t.Fatal(err)
	}
	docker := func(args ...string) string {
		t.Helper()
		return strings.TrimSpace(testenv.MustDocker(t, "tcp://"+host, args...).Stdout)
	}
	if out := docker("images", "--format", "{{.Repository}}:{{.Tag}}"); out != "team/app:1" {
		t.Fatalf("docker images: %q", out)
	}
	id := docker("image", "inspect", "--format", "{{.Id}}", "team/app:1")
	if got := docker("image", "inspect", "--format", "{{.Id}}", host+"/team/app:1"); got != id {
		t.Fatalf("inspect through the registry host: %q, want %q", got, id)
	}
	if out := docker("pull", host+"/team/app:1"); !strings.Contains(out, "Image is up to date for "+host+"/team/app:1") {
		t.Fatalf("docker pull: %q", out)
	}
	// docker tag to our host is the tenant's own name.
	docker("tag", "team/app:1", host+"/other:2")
	// One image, two repositories: the CLI's rows come from a map by
	// repository, in no set order (with dockerd too), so compare them sorted.
	rows := strings.Split(docker("images", "--format", "{{.Repository}}:{{.Tag}}"), "\n")
	sort.Strings(rows)
	if out := strings.Join(rows, "\n"); out != "other:2\nteam/app:1" {
		t.Fatalf("docker images after tag: %q", out)
	}
	out := docker("push", host+"/other:2")
	if !strings.Contains(out, "Layer already exists") || !strings.Contains(out, "2: digest: sha256:") {
		t.Fatalf("docker push: %q", out)
	}
	// What docker push said is what the registry serves.
	desc, err := remote.Head(mustRef(t, host+"/other:2"), remote.WithAuth(&authn.Basic{Username: "u", Password: "tok"}))
	if err != nil || !strings.Contains(out, desc.Digest.String()) {
		t.Fatalf("registry has %v (%v), docker push said %q", desc, err, out)
	}
	if r := testenv.Docker(t, "tcp://"+host, "push", host+"/nosuch:1"); r.ExitCode == 0 || !strings.Contains(r.Stderr, "does not exist locally") {
		t.Fatalf("push of a missing image: %+v", r)
	}
	if r := testenv.Docker(t, "tcp://"+host, "push", "localhost:1/x:1"); r.ExitCode == 0 {
		t.Fatalf("push elsewhere: %+v", r)
	}
	if _, err := st.Tenant("other").Lookup(context.Background(), "team/app:1"); err == nil {
		t.Fatal("another tenant sees the pushed image")
	}
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
