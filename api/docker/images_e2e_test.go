package docker_test

import (
	"encoding/json"
	"sort"
	"strings"
	"testing"

	"github.com/macro-cloud/macro/internal/testenv"
	"github.com/macro-cloud/macro/internal/testimages"
)

// TestDockerImagesCLI drives the image endpoints with the real docker CLI
// against a macro server: load, images, inspect, tag, history, save, rmi,
// pull from a local registry, login, prune.
func TestDockerImagesCLI(t *testing.T) {
	testenv.RequireRoot(t)
	srv := testenv.StartServer(t)
	host := srv.Host()
	docker := func(args ...string) testenv.Result { t.Helper(); return testenv.Docker(t, host, args...) }
	must := func(args ...string) string {
		t.Helper()
		return strings.TrimSpace(testenv.MustDocker(t, host, args...).Stdout)
	}

	out := must("load", "-i", testimages.Busybox(t))
	if out != "Loaded image: busybox:latest" {
		t.Fatalf("docker load printed %q", out)
	}
	id := must("images", "-q", "--no-trunc", "busybox")
	if !strings.HasPrefix(id, "sha256:") || len(id) != 71 {
		t.Fatalf("image ID %q", id)
	}
	if out := must("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"); out != "busybox:latest "+id[7:19] {
		t.Fatalf("docker images: %q", out)
	}

	var inspect []map[string]any
	if err := json.Unmarshal([]byte(must("image", "inspect", "busybox")), &inspect); err != nil || len(inspect) != 1 {
		t.Fatalf("inspect: %v", err)
	}
	cfg := inspect[0]["Config"].(map[string]any)
	if inspect[0]["Id"] != id || inspect[0]["Os"] != "linux" || cfg["Cmd"].([]any)[0] != "sh" ||
		inspect[0]["RootFS"].(map[string]any)["Type"] != "layers" {
		t.Fatalf("inspect: %v", inspect[0])
	}

	must("tag", "busybox", "localhost:5000/team/box:1")
	must("tag", id[7:19], "other")
	// The API lists the tags of an image sorted; the docker CLI makes its
	// rows from a map by repository, so their order varies from run to run
	// (with dockerd too): the rows are compared as a set.
	if out := must("image", "inspect", "--format", "{{json .RepoTags}}", "busybox"); out != `["busybox:latest","localhost:5000/team/box:1","other:latest"]` {
		t.Fatalf("RepoTags after tag: %s", out)
	}
	rows := strings.Split(must("images", "--format", "{{.Repository}}:{{.Tag}}"), "\n")
	sort.Strings(rows)
	if out := strings.Join(rows, "\n"); out != "busybox:latest\nlocalhost:5000/team/box:1\nother:latest" {
		t.Fatalf("after tag: %q", out)
	}
	if out := must("images", "--filter", "reference=busybox", "--format", "{{.Repository}}"); out != "busybox" {
		t.Fatalf("reference filter: %q", out)
	}
	if out := must("history", "--format", "{{.ID}}", "busybox"); !strings.HasPrefix(out, id[7:19]) {
		t.Fatalf("history: %q", out)
	}

	r := docker("rmi", id[7:19])
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, "image is referenced in multiple repositories") {
		t.Fatalf("rmi by ID with several tags: %+v", r)
	}
	if out := must("rmi", "other", "localhost:5000/team/box:1"); out != "Untagged: other:latest\nUntagged: localhost:5000/team/box:1" {
		t.Fatalf("rmi tags: %q", out)
	}
	r = docker("rmi", "nosuch")
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, "No such image: nosuch:latest") {
		t.Fatalf("rmi nosuch: %+v", r)
	}

	// Save, remove, load back.
	archive := t.TempDir() + "/busybox.tar"
	must("save", "-o", archive, "busybox")
	if out := must("rmi", "busybox"); !strings.Contains(out, "Untagged: busybox:latest\nDeleted: "+id) {
		t.Fatalf("rmi: %q", out)
	}
	if out := must("images", "-q"); out != "" {
		t.Fatalf("images after rmi: %q", out)
	}
	if out := must("load", "-i", archive); out != "Loaded image: busybox:latest" {
		t.Fatalf("load of saved archive: %q", out)
	}
	if out := must("load", "-i", testimages.BusyboxOCI(t)); out != "Loaded image: busybox:latest" {
		t.Fatalf("load of OCI archive: %q", out)
	}

	// Prune of all unused images.
	must("image", "prune", "-a", "-f")
	if out := must("images", "-q"); out != "" {
		t.Fatalf("images after prune -a: %q", out)
	}

	// Pull from a local registry, with and without credentials.
	reg := testenv.StartRegistryWithAuth(t, "alice", "s3cret")
	reg.Push(t, testimages.BusyboxImage(t), "mirror/busybox:1")
	ref := reg.Ref("mirror/busybox:1")
	r = docker("pull", ref)
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, "pull access denied for "+reg.Addr+"/mirror/busybox") {
		t.Fatalf("pull without login: %+v", r)
	}
	r = testenv.DockerIn(t, host, "wrong\n", "login", "-u", "alice", "--password-stdin", reg.Addr)
	if r.ExitCode == 0 {
		t.Fatalf("login with a wrong password succeeded: %+v", r)
	}
	if out := strings.TrimSpace(testenv.MustDockerIn(t, host, "s3cret\n", "login", "-u", "alice", "--password-stdin", reg.Addr).Stdout); !strings.Contains(out, "Login Succeeded") {
		t.Fatalf("login: %q", out)
	}
	out = must("pull", ref)
	t.Logf("docker pull:\n%s", out)
	if !strings.Contains(out, "1: Pulling from mirror/busybox") || !strings.Contains(out, ": Pull complete") || !strings.Contains(out, "Digest: sha256:") ||
		!strings.Contains(out, "Status: Downloaded newer image for "+ref) || !strings.HasSuffix(out, "\n"+ref) {
		t.Fatalf("pull: %q", out)
	}
	if out := must("images", "--digests", "--format", "{{.Repository}}:{{.Tag}} {{.Digest}}"); !strings.HasPrefix(out, reg.Addr+"/mirror/busybox:1 sha256:") {
		t.Fatalf("images --digests: %q", out)
	}
	r = docker("pull", reg.Ref("mirror/busybox:nosuch"))
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, "manifest for "+reg.Ref("mirror/busybox:nosuch")+" not found") {
		t.Fatalf("pull of a missing tag: %+v", r)
	}

	if out := must("rmi", ref); !strings.Contains(out, "Untagged: "+ref) || !strings.Contains(out, "Deleted: sha256:") {
		t.Fatalf("rmi of the pulled image: %q", out)
	}
}
