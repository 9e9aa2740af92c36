package e2e

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/macro-cloud/macro/internal/testenv"
	"github.com/macro-cloud/macro/internal/testimages"
)

// pushTenant is a tenant of TestPush: its token, kra's home and its
// docker client certificates.
type pushTenant struct {
	name, token, home, certs string
}

// TestPush pushes images to a real macro server's API port as a tenant
// would: kra push from a docker save archive, an OCI layout and a local
// docker engine (the reference dockerd), crane push and skopeo copy; each
// image then runs with docker run in the tenant, and another tenant can
// neither see, pull nor mount any of it.
func TestPush(t *testing.T) {
	c := newTenantCloud(t)
	kra := testenv.Kra(t)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, c.caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	newTenant := func(name string) *pushTenant {
		c.mustAdmin("tenant", "create", name)
		tn := &pushTenant{name: name, token: strings.TrimSpace(c.mustAdmin("token", "create", "--tenant", name)), home: t.TempDir()}
		dir, status, msg := c.certs(tn.token)
		if dir == "" {
			t.Fatalf("certs of %s: %d %s", name, status, msg)
		}
		tn.certs = dir
		return tn
	}
	alice, bob := newTenant("alice"), newTenant("bob")

	// kra runs as tn, from an empty directory (no compose file), with
	// extra environment.
	work := t.TempDir()
	kraPush := func(t *testing.T, tn *pushTenant, env []string, args ...string) (string, error) {
		t.Helper()
		cmd := exec.Command(kra, append([]string{"push"}, args...)...)
		cmd.Dir = work
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + tn.home, "TMPDIR=" + os.TempDir(),
			"KR_HOST=https://" + c.addr, "KR_CA=" + caFile, "KR_ACCESS_TOKEN=" + tn.token}, env...)
		out, err := cmd.CombinedOutput()
		t.Logf("kra push %s (as %s): %v\n%s", strings.Join(args, " "), tn.name, err, out)
		return string(out), err
	}
	mustPush := func(t *testing.T, tn *pushTenant, env []string, args ...string) string {
		t.Helper()
		out, err := kraPush(t, tn, env, args...)
		if err != nil {
			t.Fatalf("kra push %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	summary := regexp.MustCompile(`(?m)^(\d+) layers?: (\d+) pushed, (\d+) already there; (\S+) sent in `)
	// expect checks kra's summary line: layers, pushed, already there, and
	// whether bytes were sent.
	expect := func(t *testing.T, out string, layers, pushed, existing string, sent bool) {
		t.Helper()
		m := summary.FindStringSubmatch(out)
		if m == nil || m[1] != layers || m[2] != pushed || m[3] != existing || (m[4] != "0B") != sent {
			t.Errorf("kra push: want %s layers, %s pushed, %s already there (bytes sent: %v); got %q", layers, pushed, existing, sent, m)
		}
	}
	// runs checks that ref runs in tn's tenant with docker run.
	runs := func(t *testing.T, tn *pushTenant, ref string, cmd ...string) string {
		t.Helper()
		if len(cmd) == 0 {
			cmd = []string{"echo", "pushed image runs"}
		}
		r := c.docker(tn.certs, append([]string{"run", "--rm", ref}, cmd...)...)
		if r.ExitCode != 0 {
			t.Errorf("docker run %s as %s: exit %d\n%s", ref, tn.name, r.ExitCode, r.Combined())
		}
		return r.Stdout
	}
	busybox := testimages.Busybox(t)

	t.Run("Archive", func(t *testing.T) {
		out := mustPush(t, alice, nil, "--archive", busybox)
		if !strings.Contains(out, "Pushing busybox:latest to "+c.addr+"/busybox:latest (tenant alice)") {
			t.Errorf("kra push: %s", out)
		}
		expect(t, out, "1", "1", "0", true)
		if out := runs(t, alice, "busybox:latest"); out != "pushed image runs\n" {
			t.Errorf("docker run busybox:latest: %q", out)
		}
		// Again: kra remembers the layer it made, the server has it.
		out = mustPush(t, alice, nil, "--archive", busybox, "busybox:latest")
		expect(t, out, "1", "0", "1", false)
		if strings.Contains(out, "compressing") {
			t.Errorf("the second push compressed the layer again:\n%s", out)
		}
		// From a machine that never pushed it (a CI runner): compressed to
		// the same blob, found by its digest, not sent.
		fresh := *alice
		fresh.home = t.TempDir()
		out = mustPush(t, &fresh, nil, "--archive", busybox, "busybox:latest")
		expect(t, out, "1", "0", "1", false)
	})

	t.Run("OCILayout", func(t *testing.T) {
		// busybox (its layer compressed as kra compresses it: already
		// there) and a layer of its own, in an OCI layout that skopeo's
		// oci:DIR:TAG made, which names the image by its tag only.
		img, err := mutate.AppendLayers(testimages.BusyboxImage(t), fileLayer(t, "oci.txt", "from an OCI layout\n"))
		if err != nil {
			t.Fatal(err)
		}
		archive := filepath.Join(t.TempDir(), "oci.tar")
		if err := testimages.WriteOCIArchiveFile(archive, img, "oci:1"); err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(t.TempDir(), "layout")
		if out, err := exec.Command("skopeo", "copy", "oci-archive:"+archive, "oci:"+dir+":v1").CombinedOutput(); err != nil {
			t.Fatalf("skopeo copy to an OCI layout: %v\n%s", err, out)
		}
		out := mustPush(t, alice, nil, "--oci", dir, "oci/busybox:1")
		expect(t, out, "2", "1", "1", true)
		if strings.Contains(out, "compressing") {
			t.Errorf("kra compressed a layer of an OCI layout:\n%s", out)
		}
		if out := runs(t, alice, c.addr+"/oci/busybox:1", "cat", "/oci.txt"); out != "from an OCI layout\n" {
			t.Errorf("the pushed layer: %q", out)
		}
		expect(t, mustPush(t, alice, nil, "--oci", dir, "oci/busybox:2"), "2", "0", "2", false)
	})

	t.Run("DockerEngine", func(t *testing.T) {
		d := testenv.StartDockerd(t)
		// busybox and a layer of its own, loaded into the engine.
		img, err := mutate.AppendLayers(testimages.BusyboxImage(t), fileLayer(t, "hello.txt", "hello from the docker engine\n"))
		if err != nil {
			t.Fatal(err)
		}
		archive := filepath.Join(t.TempDir(), "app.tar")
		if err := testimages.WriteDockerArchiveFile(archive, img, "engine/app:1"); err != nil {
			t.Fatal(err)
		}
		testenv.MustDocker(t, d.Host(), "load", "-i", archive)
		env := []string{"DOCKER_HOST=" + d.Host()}
		out := mustPush(t, alice, env, "engine/app:1")
		expect(t, out, "2", "1", "1", true)
		if !strings.Contains(out, "Reading engine/app:1 from the docker engine at "+d.Host()+"\n") {
			t.Errorf("kra push does not say where it reads the image:\n%s", out)
		}
		if out := runs(t, alice, "engine/app:1", "cat", "/hello.txt"); out != "hello from the docker engine\n" {
			t.Errorf("the pushed layer: %q", out)
		}
		expect(t, mustPush(t, alice, env, "engine/app:1"), "2", "0", "2", false)
		// The images of a compose file, with a name compose interpolates.
		compose := filepath.Join(t.TempDir(), "compose.yaml")
		os.WriteFile(compose, []byte("services:\n  app:\n    image: engine/app:${APP_TAG:-1}\n"), 0o644)
		out = mustPush(t, alice, env, "-f", compose)
		if !strings.Contains(out, "Pushing engine/app:1 to ") {
			t.Errorf("kra push -f compose.yaml:\n%s", out)
		}
		expect(t, out, "2", "0", "2", false)
		// Not in the engine.
		if out, err := kraPush(t, alice, env, "nope:1"); err == nil || !strings.Contains(out, "kra: no image nope:1 in the docker engine at "+d.Host()) {
			t.Errorf("kra push of an image the engine lacks: %v\n%s", err, out)
		}
	})

	t.Run("Crane", func(t *testing.T) {
		crane := testenv.Binary(t, "github.com/google/go-containerregistry/cmd/crane")
		cfg := t.TempDir()
		craneRun := func(tn *pushTenant, args ...string) (string, error) {
			cmd := exec.Command(crane, args...)
			cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + cfg, "DOCKER_CONFIG=" + filepath.Join(cfg, tn.name), "SSL_CERT_FILE=" + caFile}
			out, err := cmd.CombinedOutput()
			t.Logf("crane %s (as %s): %v\n%s", strings.Join(args, " "), tn.name, err, out)
			return string(out), err
		}
		for _, tn := range []*pushTenant{alice, bob} {
			if out, err := craneRun(tn, "auth", "login", c.addr, "-u", tn.name, "-p", tn.token); err != nil {
				t.Fatalf("crane auth login: %v\n%s", err, out)
			}
		}
		// kra compresses as crane does: crane finds the layer kra pushed.
		out, err := craneRun(alice, "push", busybox, c.addr+"/crane/busybox:1")
		if err != nil {
			t.Fatalf("crane push: %v\n%s", err, out)
		}
		if strings.Contains(out, "pushed blob") || !strings.Contains(out, "existing blob") {
			t.Errorf("crane pushed the layers kra pushed before:\n%s", out)
		}
		runs(t, alice, "crane/busybox:1")
		if out, err := craneRun(bob, "manifest", c.addr+"/crane/busybox:1"); err == nil || !strings.Contains(out, "MANIFEST_UNKNOWN") {
			t.Errorf("bob reads alice's manifest with crane: %v\n%s", err, out)
		}
	})

	t.Run("Skopeo", func(t *testing.T) {
		certDir := t.TempDir()
		os.WriteFile(filepath.Join(certDir, "ca.crt"), c.caPEM, 0o644)
		out, err := exec.Command("skopeo", "copy", "--dest-cert-dir", certDir, "--dest-creds", "alice:"+alice.token,
			"docker-archive:"+busybox, "docker://"+c.addr+"/skopeo/busybox:1").CombinedOutput()
		if err != nil {
			t.Fatalf("skopeo copy: %v\n%s", err, out)
		}
		runs(t, alice, "skopeo/busybox:1")
		out, err = exec.Command("skopeo", "inspect", "--cert-dir", certDir, "--creds", "bob:"+bob.token,
			"docker://"+c.addr+"/skopeo/busybox:1").CombinedOutput()
		if err == nil || !strings.Contains(strings.ToLower(string(out)), "manifest unknown") {
			t.Errorf("bob inspects alice's image with skopeo: %v\n%s", err, out)
		}
	})

	t.Run("OtherTenant", func(t *testing.T) {
		// Alice's layer, by digest, from her manifest.
		var m v1.Manifest
		resp := c.registry(alice.token, "GET", "/v2/busybox/manifests/latest", "application/vnd.docker.distribution.manifest.v2+json")
		if resp.status != http.StatusOK || json.Unmarshal(resp.body, &m) != nil || len(m.Layers) != 1 {
			t.Fatalf("alice's manifest: %d %s", resp.status, resp.body)
		}
		layer := m.Layers[0].Digest.String()
		for _, p := range []string{"/v2/busybox/manifests/latest", "/v2/busybox/blobs/" + layer, "/v2/engine/app/manifests/1", "/v2/oci/busybox/manifests/1"} {
			if r := c.registry(bob.token, "GET", p, ""); r.status != http.StatusNotFound {
				t.Errorf("bob's GET %s: %d", p, r.status)
			}
		}
		// A mount of alice's blob into bob's repository is an upload
		// (202), not a mount (201).
		r := c.registry(bob.token, "POST", "/v2/mine/blobs/uploads/?mount="+layer+"&from=busybox", "")
		if r.status != http.StatusAccepted {
			t.Errorf("bob's mount of alice's layer: %d %s", r.status, r.body)
		}
		// Bob's docker does not run alice's images.
		for _, ref := range []string{"busybox:latest", c.addr + "/engine/app:1"} {
			if r := c.docker(bob.certs, "run", "--rm", "--pull", "never", ref, "true"); r.ExitCode == 0 {
				t.Errorf("bob ran alice's %s", ref)
			}
		}
		// Bob pushing the same image sends it: alice's copy is not his,
		// even with a kra cache that knows the blob.
		asBob := *bob
		asBob.home = alice.home
		expect(t, mustPush(t, &asBob, nil, "--archive", busybox), "1", "1", "0", true)
		runs(t, bob, "busybox:latest")
	})

	t.Run("Errors", func(t *testing.T) {
		if out, err := kraPush(t, alice, []string{"KR_ACCESS_TOKEN=kr_0000000000000000_" + strings.Repeat("0", 64)}, "--archive", busybox); err == nil ||
			!strings.Contains(out, "kra: the token was refused by https://"+c.addr+": revoked or mistyped") {
			t.Errorf("kra push with a wrong token: %v\n%s", err, out)
		}
		bad := filepath.Join(t.TempDir(), "bad.tar")
		os.WriteFile(bad, bytes.Repeat([]byte("garbage\n"), 200), 0o644)
		if out, err := kraPush(t, alice, nil, "--archive", bad, "x:1"); err == nil || !strings.Contains(out, "not a valid image archive: not a tar file") {
			t.Errorf("kra push of a bad archive: %v\n%s", err, out)
		}
	})
}

// registryAnswer is a registry response, read.
type registryAnswer struct {
	status int
	body   []byte
}

// registry sends a request to the API port's registry with token.
func (c *tenantCloud) registry(token, method, path, accept string) registryAnswer {
	c.t.Helper()
	req, _ := http.NewRequest(method, "https://"+c.addr+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return registryAnswer{resp.StatusCode, b}
}

// fileLayer is a layer of one file.
func fileLayer(t *testing.T, name, content string) v1.Layer {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg, ModTime: time.Unix(946684800, 0)})
	tw.Write([]byte(content))
	tw.Close()
	data := b.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}
