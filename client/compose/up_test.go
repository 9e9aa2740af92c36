package compose

import (
	"bytes"
	"context"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/macro-cloud/macro/client"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/up/*.golden")

// fixture copies testdata/up/NAME into a temporary directory of the same
// name, files 0644 and directories 0755 whatever the checkout's umask, so
// that content hashes do not depend on the machine.
func fixture(t *testing.T, name string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), name)
	src := filepath.Join("testdata", "up", name)
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func load(t *testing.T, dir string, env ...string) *types.Project {
	t.Helper()
	p, err := Load(context.Background(), LoadOptions{WorkDir: dir, OSEnv: []string{"FROM_SHELL=shell"}, Env: env})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return p
}

func newDeployer(e Engine, out *bytes.Buffer) *Deployer {
	return &Deployer{Engine: e, Out: out, Poll: time.Millisecond, Parallel: 1}
}

func golden(t *testing.T, name, dir, got string) {
	t.Helper()
	got = strings.ReplaceAll(got, dir, "$DIR")
	path := filepath.Join("testdata", "up", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test -update rewrites it); got:\n%s", path, got)
	}
}

// TestUpGolden deploys each fixture into a fresh fake engine and compares
// the progress and every request that changed something with
// testdata/up/NAME.golden.
func TestUpGolden(t *testing.T) {
	for _, name := range []string{"shop", "batch", "files", "nets"} {
		t.Run(name, func(t *testing.T) {
			dir := fixture(t, name)
			f, c := newFakeEngine(t)
			f.networks["tenant-shared"] = client.Network{ID: "shared1", Name: "tenant-shared"}
			var out bytes.Buffer
			p := load(t, dir, "MODE=staging")
			if err := newDeployer(c, &out).Up(context.Background(), p); err != nil {
				t.Fatalf("Up: %v\n%s", err, out.String())
			}
			golden(t, name, dir, "-- progress --\n"+out.String()+"-- requests --\n"+f.requests())
		})
	}
}

// TestUpAgain: a second up of the same file creates nothing; a changed
// service is recreated alone; fewer replicas remove the highest numbers.
func TestUpAgain(t *testing.T) {
	dir := fixture(t, "shop")
	f, c := newFakeEngine(t)
	var out bytes.Buffer
	d := newDeployer(c, &out)
	ctx := context.Background()
	if err := d.Up(ctx, load(t, dir)); err != nil {
		t.Fatal(err)
	}
	f.requests()
	out.Reset()
	if err := d.Up(ctx, load(t, dir)); err != nil {
		t.Fatal(err)
	}
	if reqs := f.requests(); reqs != "" {
		t.Errorf("a second up of the same file changed something:\n%s", reqs)
	}
	for _, want := range []string{"Container shop-db-1  Running", "Container shop-web-1  Running", "Container shop-web-2  Running"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("second up does not say %q:\n%s", want, out.String())
		}
	}

	// MODE changes web's environment: web is recreated, db is not.
	out.Reset()
	if err := d.Up(ctx, load(t, dir, "MODE=debug")); err != nil {
		t.Fatal(err)
	}
	reqs := f.requests()
	if strings.Count(reqs, "POST /containers/create?name=shop-web-") != 2 || strings.Contains(reqs, "name=shop-db-1") {
		t.Errorf("changing web's environment should recreate web's two containers only:\n%s", reqs)
	}
	if !strings.Contains(out.String(), "Container shop-web-1  Recreated") || !strings.Contains(out.String(), "Container shop-db-1  Running") {
		t.Errorf("progress:\n%s", out.String())
	}

	// One replica: web-2 goes.
	p := load(t, dir, "MODE=debug")
	web := p.Services["web"]
	one := 1
	web.Deploy.Replicas = &one
	p.Services["web"] = web
	out.Reset()
	if err := d.Up(ctx, p); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "Container shop-web-2  Removed") || strings.Contains(out.String(), "shop-web-1  Removed") {
		t.Errorf("scaling down to one replica:\n%s", out.String())
	}

	// A new image ID recreates the containers of that image.
	f.mu.Lock()
	f.images["redis:test"] = "sha256:new"
	f.mu.Unlock()
	out.Reset()
	if err := d.Up(ctx, p); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "Container shop-db-1  Recreated") || strings.Contains(out.String(), "shop-web-1  Recreated") {
		t.Errorf("a new image of db:\n%s", out.String())
	}
}

// TestDown removes what up created, the named volume only with -v, and
// answers a second time that nothing is left.
func TestDown(t *testing.T) {
	dir := fixture(t, "shop")
	f, c := newFakeEngine(t)
	var out bytes.Buffer
	d := newDeployer(c, &out)
	ctx := context.Background()
	p := load(t, dir)
	if err := d.Up(ctx, p); err != nil {
		t.Fatal(err)
	}
	f.requests()
	out.Reset()
	if err := d.Down(ctx, "shop", DownOptions{Project: p}); err != nil {
		t.Fatal(err)
	}
	golden(t, "shop-down", dir, "-- progress --\n"+out.String()+"-- requests --\n"+f.requests())
	if len(f.containers) != 0 || len(f.networks) != 0 {
		t.Errorf("left: %d containers, %d networks", len(f.containers), len(f.networks))
	}
	if _, ok := f.volumes["shop_data"]; !ok {
		t.Errorf("down without -v removed the named volume")
	}
	out.Reset()
	if err := d.Down(ctx, "shop", DownOptions{Volumes: true}); err != nil {
		t.Fatal(err)
	}
	if len(f.volumes) != 0 || !strings.Contains(out.String(), "Volume shop_data  Removed") {
		t.Errorf("down -v left %v:\n%s", f.volumes, out.String())
	}
	out.Reset()
	if err := d.Down(ctx, "shop", DownOptions{Volumes: true}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `no resource found to remove for namespace "shop"`) {
		t.Errorf("down of nothing: %q", out.String())
	}
}

// TestDownAfterFailedUp: an up that fails half-way (a dependency turns
// unhealthy) leaves a namespace that down empties.
func TestDownAfterFailedUp(t *testing.T) {
	dir := fixture(t, "files")
	os.WriteFile(filepath.Join(dir, "compose.override.yaml"), []byte(`
services:
  web:
    labels:
      fake.health: unhealthy
    healthcheck:
      test: ["CMD", "false"]
  worker:
    depends_on:
      web:
        condition: service_healthy
`), 0o644)
	f, c := newFakeEngine(t)
	var out bytes.Buffer
	d := newDeployer(c, &out)
	ctx := context.Background()
	err := d.Up(ctx, load(t, dir))
	if err == nil || err.Error() != "dependency failed to start: container files-web-1 is unhealthy" {
		t.Fatalf("Up: %v", err)
	}
	if len(f.containers) == 0 || len(f.volumes) == 0 || len(f.networks) == 0 {
		t.Fatalf("the failed up created nothing to clean: %d containers, %d volumes, %d networks", len(f.containers), len(f.volumes), len(f.networks))
	}
	if err := d.Down(ctx, "files", DownOptions{}); err != nil {
		t.Fatal(err)
	}
	if len(f.containers)+len(f.volumes)+len(f.networks) != 0 {
		t.Errorf("down left containers %v, volumes %v, networks %v", f.containers, f.volumes, f.networks)
	}
}

// TestUploads: unchanged files are not uploaded again; changed ones go to
// a new volume, recreate the services that mount them, and the old volume
// is removed; an upload interrupted after its volume was made is redone.
func TestUploads(t *testing.T) {
	dir := fixture(t, "files")
	f, c := newFakeEngine(t)
	var out bytes.Buffer
	d := newDeployer(c, &out)
	ctx := context.Background()
	if err := d.Up(ctx, load(t, dir)); err != nil {
		t.Fatal(err)
	}
	var vols []string
	for name, files := range f.files {
		vols = append(vols, name)
		if files["app.conf"] != "0 644 port=8080\n" && files["index.html"] != "0 644 <h1>shop</h1>\n" {
			t.Errorf("volume %s holds %q", name, files)
		}
	}
	if len(vols) != 2 {
		t.Fatalf("uploaded into %v, want two volumes", vols)
	}
	if n := len(f.containers); n != 2 {
		t.Errorf("%d containers after up, want 2 (no helper left)", n)
	}
	f.requests()
	out.Reset()
	if err := d.Up(ctx, load(t, dir)); err != nil {
		t.Fatal(err)
	}
	if reqs := f.requests(); reqs != "" {
		t.Errorf("up with unchanged files changed something:\n%s", reqs)
	}
	if !strings.Contains(out.String(), "Files ./config/  Unchanged") {
		t.Errorf("progress:\n%s", out.String())
	}

	if err := os.WriteFile(filepath.Join(dir, "config", "app.conf"), []byte("port=9090\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := d.Up(ctx, load(t, dir)); err != nil {
		t.Fatal(err)
	}
	progress := out.String()
	for _, want := range []string{"Files ./config/  Uploaded to volume files_kra-files-", "Files ./index.html  Unchanged", "Container files-web-1  Recreated", "Container files-worker-1  Recreated"} {
		if !strings.Contains(progress, want) {
			t.Errorf("after changing config/app.conf, no %q in:\n%s", want, progress)
		}
	}
	if len(f.volumes) != 2 {
		t.Errorf("the old volume of config/ was not removed: %v", f.volumes)
	}

	// An interrupted upload: the helper container is still there.
	p := load(t, dir)
	ups, err := ScanUploads(p)
	if err != nil {
		t.Fatal(err)
	}
	u := ups[filepath.Join(dir, "config")]
	f.mu.Lock()
	f.containers["leftover"] = &fakeContainer{id: "leftover", name: "files-kra-upload-" + u.Hash[:12], req: CreateRequest{HostConfig: &containerHostConfig}}
	delete(f.files, u.Volume)
	f.mu.Unlock()
	out.Reset()
	if err := d.Up(ctx, p); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "Files ./config/  Uploaded") || f.files[u.Volume]["app.conf"] == "" {
		t.Errorf("an interrupted upload was not redone:\n%s", out.String())
	}
	if f.find("files-kra-upload-"+u.Hash[:12]) != nil {
		t.Errorf("the helper container is left")
	}
}
