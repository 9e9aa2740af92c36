package e2e

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/macro-cloud/macro/internal/testenv"
	"github.com/macro-cloud/macro/internal/testimages"
)

// volumeImage is busybox with a VOLUME at /srv/data that holds a file
// owned by uid 1000, as `docker build` of
// "FROM busybox / COPY --chown=1000 seed.txt /srv/data/ / VOLUME /srv/data" makes it.
func volumeImage(t *testing.T) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, h := range []*tar.Header{
		{Name: "srv/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: now},
		{Name: "srv/data/", Typeflag: tar.TypeDir, Mode: 0o750, Uid: 1000, Gid: 1000, ModTime: now},
		{Name: "srv/data/seed.txt", Typeflag: tar.TypeReg, Mode: 0o640, Uid: 1000, Gid: 1000, Size: 12, ModTime: now},
		{Name: "srv/data/link", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd", ModTime: now},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte("from-image\n\n"))
		}
	}
	tw.Close()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(testimages.BusyboxImage(t), layer)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Config.Volumes = map[string]struct{}{"/srv/data": {}}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "volimg.tar")
	if err := testimages.WriteDockerArchiveFile(p, img, "volimg:1"); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestVolumes drives local volumes with the docker CLI as tenant alice
// over TLS: create/ls/inspect/rm/prune, -v NAME:/path[:ro], --mount with a
// sub-path (that a symlink cannot lead out of) and tmpfs, anonymous
// volumes and rm -v, the image's files copied into a fresh volume, a
// volume in use, binds of host paths (refused to tenants, allowed on the
// machine's own socket), and another tenant that never sees alice's.
func TestVolumes(t *testing.T) {
	c := newComposeCloud(t)
	run := func(args ...string) string { t.Helper(); return c.must(t, append([]string{"run", "--rm"}, args...)...) }
	fails := func(want string, args ...string) {
		t.Helper()
		if r := c.docker(t, args...); r.ExitCode == 0 || !strings.Contains(r.Stderr, want) {
			t.Errorf("docker %s: exit %d, want an error with %q:\n%s", strings.Join(args, " "), r.ExitCode, want, r.Combined())
		}
	}

	c.must(t, "volume", "create", "data")
	if out := c.must(t, "volume", "ls", "--format", "{{.Driver}} {{.Name}}"); out != "local data" {
		t.Errorf("volume ls: %q", out)
	}
	if out := c.must(t, "volume", "inspect", "--format", "{{.Driver}} {{.Scope}} {{.Mountpoint}}", "data"); !strings.HasPrefix(out, "local local "+c.tc.srv.DataDir+"/volumes/alice/data/_data") {
		t.Errorf("volume inspect: %q", out)
	}
	fails("an lv2 volume needs a size", "volume", "create", "--driver", "lv2", "shared") // drivers: volume_drivers_test.go
	fails("local volume options are not supported (device, type)", "volume", "create", "-o", "type=nfs", "-o", "device=:/x", "fromhost")

	// -v NAME:/path and :ro.
	run("-v", "data:/d", "busybox", "sh", "-c", "echo one > /d/f && mkdir /d/sub && echo in-sub > /d/sub/x && ln -s / /d/escape")
	if out := run("-v", "data:/d:ro", "busybox", "cat", "/d/f"); out != "one" {
		t.Errorf("cat from the volume: %q", out)
	}
	fails("Read-only file system", "run", "--rm", "-v", "data:/d:ro", "busybox", "touch", "/d/g")

	// --mount with volume-subpath; a symlink in the volume stays inside it.
	if out := run("--mount", "type=volume,source=data,target=/m,volume-subpath=sub", "busybox", "cat", "/m/x"); out != "in-sub" {
		t.Errorf("cat from the sub-path: %q", out)
	}
	if out := run("--mount", "type=volume,source=data,target=/m,volume-subpath=escape", "busybox", "ls", "/m"); strings.Contains(out, "proc") || !strings.Contains(out, "sub") {
		t.Errorf("a sub-path through a symlink to / shows %q: it must be the volume's own root", out)
	}
	fails("no such file or directory", "run", "--rm", "--mount", "type=volume,source=data,target=/m,volume-subpath=missing", "busybox", "true")

	// --mount type=tmpfs.
	if out := run("--mount", "type=tmpfs,target=/t,tmpfs-size=1m", "busybox", "sh", "-c", "grep ' /t ' /proc/mounts"); !strings.Contains(out, "tmpfs /t tmpfs") || !strings.Contains(out, "size=1024k") {
		t.Errorf("tmpfs mount: %q", out)
	}

	// In use: 409 with the holder; removable once it is gone.
	c.must(t, "run", "-d", "--name", "holder", "-v", "data:/d", "busybox", "sleep", "1000")
	fails("volume is in use", "volume", "rm", "data")
	if out := c.must(t, "inspect", "--format", "{{range .Mounts}}{{.Type}} {{.Name}} {{.Destination}} {{.RW}}{{end}}", "holder"); out != "volume data /d true" {
		t.Errorf("inspect Mounts: %q", out)
	}
	// system df counts the volume, used by holder, with its size.
	df := c.must(t, "system", "df", "--format", "{{.Type}}|{{.TotalCount}}|{{.Active}}|{{.Size}}")
	if !strings.Contains(df, "Local Volumes|1|1|") || strings.Contains(df, "Local Volumes|1|1|0B") {
		t.Errorf("system df:\n%s", df)
	}
	if out := c.must(t, "system", "df", "-v", "--format", "{{range .Volumes}}{{.Name}} {{.Links}}{{end}}"); out != "data 1" {
		t.Errorf("system df -v volumes: %q", out)
	}
	// docker cp reaches the volume mounted in the container.
	local := t.TempDir()
	os.WriteFile(filepath.Join(local, "copied-in"), []byte("via-cp"), 0o644)
	c.must(t, "cp", filepath.Join(local, "copied-in"), "holder:/d/")
	if out := run("-v", "data:/d", "busybox", "cat", "/d/copied-in"); out != "via-cp" {
		t.Errorf("docker cp into the volume: %q", out)
	}
	c.must(t, "cp", "holder:/d", filepath.Join(local, "out"))
	if got, err := os.ReadFile(filepath.Join(local, "out", "f")); err != nil || string(got) != "one\n" {
		t.Errorf("docker cp of the volume's mount point: %q %v", got, err)
	}
	c.must(t, "rm", "-f", "holder")

	// Anonymous volumes: -v /path, removed by rm -v.
	c.must(t, "run", "-d", "--name", "anon", "-v", "/scratch", "busybox", "sleep", "1000")
	anon := c.must(t, "inspect", "--format", "{{range .Mounts}}{{.Name}}{{end}}", "anon")
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(anon) {
		t.Fatalf("anonymous volume name %q", anon)
	}
	if out := c.must(t, "volume", "ls", "-q"); !strings.Contains(out, anon) {
		t.Errorf("volume ls does not list the anonymous volume:\n%s", out)
	}
	c.must(t, "rm", "-fv", "anon")
	if out := c.must(t, "volume", "ls", "-q"); strings.Contains(out, anon) {
		t.Errorf("rm -v left the anonymous volume:\n%s", out)
	}

	// run --rm removes its anonymous volumes with the container; named
	// ones stay.
	before := c.must(t, "volume", "ls", "-q")
	run("-v", "/scratch", "-v", "kept:/k", "busybox", "true")
	eventually(t, "run --rm removed its anonymous volume", func() bool {
		return c.must(t, "volume", "ls", "-q") == strings.TrimSpace(before+"\nkept")
	})

	// The image's files at a VOLUME go into a fresh volume, with owners
	// and symlinks; a volume with data keeps it.
	c.must(t, "load", "-i", volumeImage(t))
	if out := run("volimg:1", "sh", "-c", "cat /srv/data/seed.txt; stat -c '%u %a' /srv/data/seed.txt /srv/data; readlink /srv/data/link"); !strings.Contains(out, "from-image\n\n1000 640\n1000 750\n/etc/passwd") {
		t.Errorf("the image's VOLUME in an anonymous volume: %q", out)
	}
	run("-v", "seeded:/srv/data", "volimg:1", "sh", "-c", "echo changed > /srv/data/seed.txt")
	if out := run("-v", "seeded:/srv/data", "volimg:1", "cat", "/srv/data/seed.txt"); out != "changed" {
		t.Errorf("a named volume filled from the image, then changed: %q", out)
	}
	if out := run("-v", "nocopy:/srv/data:nocopy", "volimg:1", "ls", "-A", "/srv/data"); out != "" {
		t.Errorf("nocopy volume: %q", out)
	}

	// prune: anonymous volumes only, then all unused with --all.
	c.must(t, "create", "--name", "anon2", "-v", "/x", "busybox", "true")
	anon2 := c.must(t, "inspect", "--format", "{{range .Mounts}}{{.Name}}{{end}}", "anon2")
	c.must(t, "rm", "anon2")
	c.must(t, "volume", "prune", "-f")
	out := c.must(t, "volume", "ls", "-q")
	if strings.Contains(out, anon2) || !strings.Contains(out, "data") || !strings.Contains(out, "seeded") || !strings.Contains(out, "kept") {
		t.Errorf("volume ls after prune:\n%s", out)
	}
	c.must(t, "volume", "prune", "-af")
	if out := c.must(t, "volume", "ls", "-q"); out != "" {
		t.Errorf("volume ls after prune --all:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(c.tc.srv.DataDir, "volumes", "alice", "data")); !os.IsNotExist(err) {
		t.Errorf("the data of a pruned volume is still on the node: %v", err)
	}

	// Binds of host paths: never for a tenant.
	fails("bind mounts of host paths are not available to tenants", "run", "--rm", "-v", "/etc:/host", "busybox", "true")
	fails("bind mounts of host paths are not available to tenants", "run", "--rm", "--mount", "type=bind,source=/etc,target=/host", "busybox", "true")

	// On the machine's own socket, as with dockerd's, they are allowed.
	host := t.TempDir()
	os.WriteFile(filepath.Join(host, "hello"), []byte("from-the-host"), 0o644)
	sock := c.tc.srv.Host()
	testenv.MustDocker(t, sock, "load", "-i", testimages.Busybox(t))
	if out := strings.TrimSpace(testenv.MustDocker(t, sock, "run", "--rm", "-v", host+":/h:ro", "busybox", "cat", "/h/hello").Stdout); out != "from-the-host" {
		t.Errorf("bind mount on the admin socket: %q", out)
	}
	// compose's create_host_path: BindOptions.CreateMountpoint (the
	// docker CLI has no flag for it).
	body := `{"Image":"busybox","Cmd":["touch","/m/x"],"HostConfig":{"Mounts":[{"Type":"bind","Source":"` + host + `/made","Target":"/m","BindOptions":{"CreateMountpoint":true}}]}}`
	resp, err := c.tc.srv.Client().Post("http://macro/containers/create?name=made", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("create with CreateMountpoint on the admin socket: %d", resp.StatusCode)
	}
	testenv.MustDocker(t, sock, "start", "-a", "made")
	if _, err := os.Stat(filepath.Join(host, "made", "x")); err != nil {
		t.Errorf("bind-create-src on the admin socket: %v", err)
	}

	// Another tenant never sees alice's volumes; the same name is its own.
	c.must(t, "volume", "create", "secret")
	run("-v", "secret:/d", "busybox", "sh", "-c", "echo alice-data > /d/f")
	c.tc.mustAdmin("tenant", "create", "bob")
	tokenB := strings.TrimSpace(c.tc.mustAdmin("token", "create", "--tenant", "bob"))
	dirB, status, msg := c.tc.certs(tokenB)
	if dirB == "" {
		t.Fatalf("certs of bob: %d %s", status, msg)
	}
	bob := func(args ...string) testenv.Result { t.Helper(); return c.tc.docker(dirB, args...) }
	if r := bob("volume", "inspect", "secret"); r.ExitCode == 0 || !strings.Contains(r.Stderr, "no such volume") {
		t.Errorf("bob inspects alice's volume: %s", r.Combined())
	}
	if r := bob("volume", "rm", "secret"); r.ExitCode == 0 || !strings.Contains(r.Stderr, "no such volume") {
		t.Errorf("bob removes alice's volume: %s", r.Combined())
	}
	if r := bob("volume", "ls", "-q"); r.ExitCode != 0 || strings.TrimSpace(r.Stdout) != "" {
		t.Errorf("bob's volume ls: %s", r.Combined())
	}
	if r := bob("load", "-i", testimages.Busybox(t)); r.ExitCode != 0 {
		t.Fatalf("bob loads busybox: %s", r.Combined())
	}
	if r := bob("run", "--rm", "-v", "secret:/d", "busybox", "ls", "-A", "/d"); r.ExitCode != 0 || strings.TrimSpace(r.Stdout) != "" {
		t.Errorf("bob's own volume named secret: exit %d %q", r.ExitCode, r.Combined())
	}
	if out := run("-v", "secret:/d", "busybox", "cat", "/d/f"); out != "alice-data" {
		t.Errorf("alice's volume after bob's: %q", out)
	}
}

// TestNetworks drives networks with the docker CLI as tenant alice:
// predefined networks, create with IPAM, run with --ip and
// --network-alias, connect and disconnect, rm of a network in use, prune,
// host refused, and another tenant that sees none of it.
func TestNetworks(t *testing.T) {
	c := newComposeCloud(t)
	fails := func(want string, args ...string) {
		t.Helper()
		if r := c.docker(t, args...); r.ExitCode == 0 || !strings.Contains(r.Stderr, want) {
			t.Errorf("docker %s: exit %d, want an error with %q:\n%s", strings.Join(args, " "), r.ExitCode, want, r.Combined())
		}
	}
	if out := c.must(t, "network", "ls", "--format", "{{.Name}} {{.Driver}}"); out != "bridge bridge\nhost host\nnone null" {
		t.Errorf("predefined networks: %q", out)
	}
	c.must(t, "network", "create", "--subnet", "10.9.0.0/24", "--gateway", "10.9.0.1", "--label", "team=a", "front")
	c.must(t, "network", "create", "-d", "ipip", "back")
	fails("not supported", "network", "create", "-d", "macvlan", "mv")
	fails("already exists", "network", "create", "front")
	fails("invalid subnet", "network", "create", "--subnet", "10.9.0.1/24", "bad")
	if out := c.must(t, "network", "inspect", "--format", "{{.Driver}} {{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}} {{.Labels.team}}", "front"); out != "bridge 10.9.0.0/24 10.9.0.1 a" {
		t.Errorf("network inspect front: %q", out)
	}

	c.must(t, "run", "-d", "--name", "n1", "--network", "front", "--ip", "10.9.0.5", "--network-alias", "api", "busybox", "sleep", "1000")
	if out := c.must(t, "inspect", "--format", "{{with index .NetworkSettings.Networks \"front\"}}{{.IPAMConfig.IPv4Address}} {{.Aliases}}{{end}}", "n1"); out != "10.9.0.5 [api]" {
		t.Errorf("n1 on front: %q", out)
	}
	c.must(t, "network", "connect", "--alias", "b1", "back", "n1")
	if out := c.must(t, "inspect", "--format", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}={{$v.Aliases}} {{end}}", "n1"); out != "back=[b1] front=[api]" {
		t.Errorf("n1's networks after connect: %q", out)
	}
	if out := c.must(t, "network", "inspect", "--format", "{{range .Containers}}{{.Name}}{{end}}", "back"); out != "n1" {
		t.Errorf("network inspect back: containers %q", out)
	}
	fails("has active endpoints", "network", "rm", "front")
	c.must(t, "network", "disconnect", "back", "n1")
	if out := c.must(t, "inspect", "--format", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}", "n1"); out != "front" {
		t.Errorf("n1's networks after disconnect: %q", out)
	}
	fails("network host is not supported", "run", "--rm", "--network", "host", "busybox", "true")
	fails("pre-defined network", "network", "rm", "bridge")

	// Another tenant sees none of it.
	c.tc.mustAdmin("tenant", "create", "bob")
	tokenB := strings.TrimSpace(c.tc.mustAdmin("token", "create", "--tenant", "bob"))
	dirB, status, msg := c.tc.certs(tokenB)
	if dirB == "" {
		t.Fatalf("certs of bob: %d %s", status, msg)
	}
	if r := c.tc.docker(dirB, "network", "inspect", "front"); r.ExitCode == 0 || !strings.Contains(r.Stderr, "not found") {
		t.Errorf("bob inspects alice's network: %s", r.Combined())
	}
	if r := c.tc.docker(dirB, "network", "ls", "--format", "{{.Name}}"); strings.Contains(r.Stdout, "front") || strings.Contains(r.Stdout, "back") {
		t.Errorf("bob's network ls: %s", r.Combined())
	}

	c.must(t, "rm", "-f", "n1")
	if out := c.must(t, "network", "prune", "-f"); !strings.Contains(out, "front") || !strings.Contains(out, "back") {
		t.Errorf("network prune: %q", out)
	}
	if out := c.must(t, "network", "ls", "--filter", "type=custom", "-q"); out != "" {
		t.Errorf("custom networks after prune: %q", out)
	}
}
