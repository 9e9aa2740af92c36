package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/macro-cloud/macro/internal/testenv"
	"github.com/macro-cloud/macro/internal/testimages"
)

// TestQuotaPods: a tenant with --pods 2 creates two containers, the third
// is refused with a message that says why, in Docker's error shape, and
// leaves nothing behind; removing one makes room again. Concurrent creates
// never get past the limit.
func TestQuotaPods(t *testing.T) {
	c := newTenantCloud(t)
	_, dir := c.newTenant("quota-pods", "--pods", "2")
	c.mustDocker(dir, "load", "-i", testimages.Busybox(t))
	c.mustDocker(dir, "create", "--name", "one", "busybox", "true")
	c.mustDocker(dir, "run", "-d", "--name", "two", "busybox", "sleep", "300")

	r := c.docker(dir, "create", "--name", "three", "busybox", "true")
	want := "Error response from daemon: quota exceeded: tenant quota-pods may have 2 pods (containers, running or not), has 2"
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, want) {
		t.Errorf("a third create: exit %d\n%s\nwant %q", r.ExitCode, r.Combined(), want)
	}
	r = c.docker(dir, "run", "--rm", "busybox", "true")
	if r.ExitCode != 125 || !strings.Contains(r.Stderr, want) {
		t.Errorf("docker run over the quota: exit %d\n%s", r.ExitCode, r.Combined())
	}
	if got := c.containers(dir); len(got) != 2 {
		t.Errorf("containers after the refusals: %v, want one and two", got)
	}

	// The raw answer: 403 with {"message": ...}.
	pool := c.http.Transport.(*http.Transport).TLSClientConfig.RootCAs
	cl := &sweepClient{name: "quota-pods", base: "https://" + c.addr, tls: certTLS(t, pool, dir)}
	resp := cl.do(t, "docker", "POST", "/containers/create", `{"Image":"busybox","Cmd":["true"]}`, nil)
	if resp.status != http.StatusForbidden || !strings.Contains(string(resp.body), `{"message":"quota exceeded: tenant quota-pods may have 2 pods`) {
		t.Errorf("POST /containers/create over the quota: %d %s", resp.status, resp.body)
	}

	c.mustDocker(dir, "rm", "one")
	c.mustDocker(dir, "create", "--name", "three", "busybox", "true")

	// Lowering the limit below what is used takes nothing away.
	c.mustAdmin("tenant", "set-quota", "quota-pods", "--pods", "1")
	if got := c.containers(dir); len(got) != 2 {
		t.Errorf("containers after lowering the quota: %v", got)
	}
	c.mustDocker(dir, "start", "three")

	// Race: with room for 3 more, 8 concurrent creates make exactly 3.
	c.mustAdmin("tenant", "set-quota", "quota-pods", "--pods", "5")
	var wg sync.WaitGroup
	results := make([]int, 8)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = c.docker(dir, "create", "--name", "race"+strconv.Itoa(i), "busybox", "true").ExitCode
		}()
	}
	wg.Wait()
	ok := 0
	for _, code := range results {
		if code == 0 {
			ok++
		}
	}
	if got := c.containers(dir); ok != 3 || len(got) != 5 {
		t.Errorf("8 concurrent creates with room for 3: %d succeeded, containers %v", ok, got)
	}
	// No limit any more.
	c.mustAdmin("tenant", "set-quota", "quota-pods", "--pods", "0")
	c.mustDocker(dir, "create", "busybox", "true")
	c.mustDocker(dir, "rm", "-f", "two", "three")
}

// TestQuotaMemory: the memory of running containers is bounded at create
// and at start; a container without a limit counts (and is limited to)
// 256 MiB; stopping one makes room.
func TestQuotaMemory(t *testing.T) {
	c := newTenantCloud(t)
	_, dir := c.newTenant("quota-mem", "--memory", "320m")
	c.mustDocker(dir, "load", "-i", testimages.Busybox(t))
	c.mustDocker(dir, "run", "-d", "--name", "ma", "--memory", "128m", "busybox", "sleep", "300")
	c.mustDocker(dir, "create", "--name", "mb", "--memory", "128m", "busybox", "sleep", "300")
	// b is created, not running: room for a third 64m at create.
	c.mustDocker(dir, "create", "--name", "mc", "--memory", "64m", "busybox", "sleep", "300")
	c.mustDocker(dir, "start", "mb")
	// 256m of 320m are running: c (64m) fits, nothing more after.
	c.mustDocker(dir, "start", "mc")
	if out := c.mustAdmin("tenant", "ls"); !regexpMatch(`\nquota-mem\s+\S+\s+320.0MiB/320.0MiB\s+3/-\s+\S+/-\s+\S+/-\s+\S+/-\s+off\n`, out) {
		t.Errorf("tenant ls does not show the memory in use:\n%s", out)
	}

	want := "quota exceeded: tenant quota-mem may run pods with 320.0 MiB of memory in total, its running pods have 320.0 MiB and this one needs 8.0 MiB"
	r := c.docker(dir, "run", "-d", "--name", "md", "--memory", "8m", "busybox", "sleep", "300")
	if r.ExitCode != 125 || !strings.Contains(r.Stderr, want) {
		t.Errorf("docker run over the memory quota: exit %d\n%s\nwant %q", r.ExitCode, r.Combined(), want)
	}
	if got := c.containers(dir); len(got) != 3 {
		t.Errorf("a refused docker run left a container: %v", got)
	}
	// A container without a limit needs 256 MiB and gets it as its limit.
	c.mustDocker(dir, "stop", "-t", "0", "ma", "mb")
	c.mustDocker(dir, "run", "-d", "--name", "nolimit", "busybox", "sleep", "300")
	if got := c.mustDocker(dir, "inspect", "--format", "{{.HostConfig.Memory}}", "nolimit"); got != strconv.Itoa(256<<20) {
		t.Errorf("HostConfig.Memory of a container created without a limit: %s", got)
	}
	// c (64m) and nolimit (256m) run: a is refused at start, with the
	// container left as it was.
	r = c.docker(dir, "start", "ma")
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, "quota exceeded: tenant quota-mem may run pods with 320.0 MiB of memory in total, its running pods have 320.0 MiB and this one needs 128.0 MiB") {
		t.Errorf("start over the memory quota: exit %d\n%s", r.ExitCode, r.Combined())
	}
	if st := c.mustDocker(dir, "inspect", "--format", "{{.State.Status}}", "ma"); st != "exited" {
		t.Errorf("a refused start changed the container: %s", st)
	}
	// A container that exited by itself (restart no) holds no memory.
	c.mustDocker(dir, "rm", "-f", "nolimit")
	c.mustDocker(dir, "run", "--name", "done", "--memory", "200m", "busybox", "true")
	c.mustDocker(dir, "start", "ma")
	// An exited container given a restart policy would run again: checked.
	r = c.docker(dir, "update", "--restart", "always", "done")
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, "quota exceeded: tenant quota-mem may run pods with 320.0 MiB of memory in total, its running pods have 192.0 MiB and this one needs 200.0 MiB") {
		t.Errorf("update --restart always over the memory quota: exit %d\n%s", r.ExitCode, r.Combined())
	}
	// Restarting a running container needs nothing more.
	c.mustDocker(dir, "restart", "-t", "0", "ma")
	c.mustDocker(dir, "rm", "-f", "ma", "mb", "mc", "done")
}

// TestQuotaImages: image storage is bounded for docker load and for a push
// to the registry; a refused image leaves nothing (no image, no layer in
// docker system df); a tag of what the tenant has needs no room.
func TestQuotaImages(t *testing.T) {
	c := newTenantCloud(t)
	token, dir := c.newTenant("quota-img", "--images", "64k")
	busybox := testimages.Busybox(t)
	r := c.docker(dir, "load", "-i", busybox)
	if r.ExitCode == 0 || !strings.Contains(r.Combined(), "quota exceeded: tenant quota-img may store 64.0 KiB of images, has 0 B, and this would add") {
		t.Errorf("docker load over the image quota: exit %d\n%s", r.ExitCode, r.Combined())
	}
	if out := c.mustDocker(dir, "images", "-q"); out != "" {
		t.Errorf("images after a refused load: %q", out)
	}
	if out := c.mustDocker(dir, "system", "df", "--format", "{{.Type}} {{.Size}}"); !strings.Contains(out, "Images 0B") {
		t.Errorf("docker system df after a refused load:\n%s", out)
	}
	// Enough for busybox, not for more.
	c.mustAdmin("tenant", "set-quota", "quota-img", "--images", "8m")
	c.mustDocker(dir, "load", "-i", busybox)
	c.mustDocker(dir, "tag", "busybox:latest", "again:1")
	c.mustDocker(dir, "load", "-i", busybox) // adds nothing
	df := func() string { return c.mustDocker(dir, "system", "df", "--format", "{{.Type}} {{.Size}}") }
	dfBusybox := df()
	layers := func() int {
		ents, err := os.ReadDir(filepath.Join(c.srv.DataDir, "images", "layers"))
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	layersBusybox := layers()

	// Pushes through the registry: DENIED, 403, whether the blobs are
	// too big already (random bytes: 2 layers of 4 MiB) or only the
	// image is once extracted (7 MiB of zeros, a few KiB compressed).
	push := func(repo string, img v1.Image) error {
		ref, err := name.ParseReference(c.addr + "/" + repo)
		if err != nil {
			t.Fatal(err)
		}
		return remote.Write(ref, img, remote.WithAuth(&authn.Basic{Username: "x", Password: token}), remote.WithTransport(c.http.Transport))
	}
	randomImg, err := random.Image(4<<20, 2)
	if err != nil {
		t.Fatal(err)
	}
	zeros, err := crane.Layer(map[string][]byte{"zeros": make([]byte, 7<<20)})
	if err != nil {
		t.Fatal(err)
	}
	zerosImg, err := mutate.AppendLayers(empty.Image, zeros)
	if err != nil {
		t.Fatal(err)
	}
	// docker pull from another registry: refused where the image would
	// be committed, in the pull's stream.
	reg := testenv.StartRegistry(t)
	pullRef := reg.Push(t, runnable(t, zerosImg), "zeros:1")
	r = c.docker(dir, "pull", pullRef)
	if r.ExitCode == 0 || !strings.Contains(r.Combined(), "quota exceeded: tenant quota-img may store 8.0 MiB of images") {
		t.Errorf("docker pull over the image quota: exit %d\n%s", r.ExitCode, r.Combined())
	}
	for repo, img := range map[string]v1.Image{"big:1": runnable(t, randomImg), "zeros:1": runnable(t, zerosImg)} {
		err := push(repo, img)
		var te *transport.Error
		if err == nil || !asTransportError(err, &te) || te.StatusCode != http.StatusForbidden || !strings.Contains(err.Error(), "DENIED: quota exceeded: tenant quota-img may store 8.0 MiB of images") {
			t.Errorf("push of %s over the image quota: %v", repo, err)
		}
	}
	if out := c.mustDocker(dir, "images", "--format", "{{.Repository}}:{{.Tag}}"); strings.Contains(out, "big") || strings.Contains(out, "zeros") {
		t.Errorf("a refused pull or push made an image:\n%s", out)
	}
	if n := layers(); n != layersBusybox {
		t.Errorf("%d extracted layers on the server after refused pulls and pushes, %d before", n, layersBusybox)
	}
	if got := df(); got != dfBusybox {
		t.Errorf("docker system df after refused pulls and pushes:\n%s\nwant as with busybox alone:\n%s", got, dfBusybox)
	}
	c.mustAdmin("tenant", "set-quota", "quota-img", "--images", "0")
	for repo, img := range map[string]v1.Image{"big:1": runnable(t, randomImg), "zeros:1": runnable(t, zerosImg)} {
		if err := push(repo, img); err != nil {
			t.Errorf("push of %s without a quota: %v", repo, err)
		}
	}
	out := c.mustDocker(dir, "images", "--format", "{{.Repository}}:{{.Tag}}")
	if !strings.Contains(out, "big:1") || !strings.Contains(out, "zeros:1") {
		t.Errorf("pushed images missing:\n%s", out)
	}
}

// runnable gives an image this machine's platform, so that a push makes
// it an image of the tenant (a runnable image; see image/push.go).
func runnable(t *testing.T, img v1.Image) v1.Image {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", goruntime.GOARCH
	out, err := mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func asTransportError(err error, te **transport.Error) bool {
	for err != nil {
		if e, ok := err.(*transport.Error); ok {
			*te = e
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}

// TestQuotaAdmin: quotas as macro admin takes and shows them.
func TestQuotaAdmin(t *testing.T) {
	c := newTenantCloud(t)
	out := c.mustAdmin("tenant", "create", "quota-adm", "--pods", "3", "--memory", "4g", "--images", "10g")
	if !strings.Contains(out, `tenant "quota-adm" created, quota: 3 pods, 4.0GiB memory, 10.0GiB images`) {
		t.Errorf("tenant create with a quota: %q", out)
	}
	out = c.mustAdmin("tenant", "set-quota", "quota-adm", "--memory", "512m")
	if !strings.Contains(out, "quota: 3 pods, 512.0MiB memory, 10.0GiB images") {
		t.Errorf("set-quota --memory: %q", out)
	}
	out = c.mustAdmin("tenant", "ls")
	if !regexpMatch(`quota-adm\s+\S+\s+0B/512.0MiB\s+0/3\s+0B/10.0GiB\s+0B/-\s+0/-\s+off\n`, out) || !regexpMatch(`\ndefault\s+\S+\s+0B/-\s+0/-\s+0B/-\s+\S+/-\s+\d+/-\s+off\n`, out) {
		t.Errorf("tenant ls:\n%s", out)
	}
	for _, bad := range [][]string{
		{"tenant", "set-quota", "quota-adm"},
		{"tenant", "set-quota", "quota-adm", "--memory", "lots"},
		{"tenant", "set-quota", "quota-adm", "--pods", "-1"},
	} {
		if _, errOut, err := c.admin(bad...); err == nil || !strings.Contains(errOut, "set-quota") && !strings.Contains(errOut, "--") {
			t.Errorf("%v: %v %q", bad, err, errOut)
		}
	}
	if _, errOut, err := c.admin("tenant", "set-quota", "nobody", "--pods", "1"); err == nil || !strings.Contains(errOut, `tenant "nobody" not found`) {
		t.Errorf("set-quota of an unknown tenant: %v %q", err, errOut)
	}
}

func regexpMatch(pattern, s string) bool { return regexp.MustCompile(pattern).MatchString(s) }
