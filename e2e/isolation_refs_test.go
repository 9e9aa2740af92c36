package e2e

import (
	"strings"
	"testing"

	"github.com/macro-cloud/macro/internal/testimages"
)

// TestIsolationContainerRefs: a create that names another tenant's
// container (--network/--pid/--ipc container:, --volumes-from, --link) gets
// exactly the answer it gets for a container that does not exist, dockerd's
// "No such container" (400, as dockerd answers at create), and leaves
// nothing; naming one's own container gets macro's "not supported".
func TestIsolationContainerRefs(t *testing.T) {
	c := newTenantCloud(t)
	_, dirA := c.newTenant("refs-owner")
	_, dirB := c.newTenant("refs-prober")
	busybox := testimages.Busybox(t)
	c.mustDocker(dirA, "load", "-i", busybox)
	c.mustDocker(dirB, "load", "-i", busybox)
	idA := c.mustDocker(dirA, "run", "-d", "--name", "refs-secret", "busybox", "sleep", "300")
	c.mustDocker(dirB, "run", "-d", "--name", "refs-mine", "busybox", "sleep", "300")

	answer := func(dir string, args ...string) (int, string) {
		r := c.docker(dir, append([]string{"create"}, append(args, "busybox", "true")...)...)
		return r.ExitCode, strings.TrimSpace(r.Stderr)
	}
	for _, flag := range []string{"--network=container:%s", "--pid=container:%s", "--ipc=container:%s", "--volumes-from=%s", "--link=%s:alias"} {
		for _, ref := range []string{idA, idA[:12], "refs-secret"} {
			gotCode, got := answer(dirB, strings.ReplaceAll(flag, "%s", ref))
			// The same request naming a container that exists nowhere.
			fake := "refs-none" + strings.Repeat("0", len(ref)-min(len(ref), 9))
			if len(ref) >= 12 {
				fake = strings.Repeat("f", len(ref))
			}
			wantCode, want := answer(dirB, strings.ReplaceAll(flag, "%s", fake))
			want = strings.ReplaceAll(want, fake, ref)
			if gotCode != wantCode || got != want || !strings.Contains(got, "No such container: "+ref) {
				t.Errorf("%s as another tenant: exit %d %q; for a container that does not exist: exit %d %q",
					strings.ReplaceAll(flag, "%s", ref), gotCode, got, wantCode, want)
			}
		}
		// One's own container: refused as unsupported, not as unknown.
		if code, got := answer(dirB, strings.ReplaceAll(flag, "%s", "refs-mine")); strings.HasPrefix(flag, "--link") {
			if code != 0 {
				t.Errorf("%s with one's own container: exit %d %q", flag, code, got)
			}
		} else if code == 0 || !strings.Contains(got, "not supported") {
			t.Errorf("%s with one's own container: exit %d %q", flag, code, got)
		}
	}
	// Only refs-mine and what --link made: no container of a refused create.
	if got := c.containers(dirB); len(got) != 2 {
		t.Errorf("containers of the prober: %v", got)
	}
	c.mustDocker(dirA, "rm", "-f", "refs-secret")
}
