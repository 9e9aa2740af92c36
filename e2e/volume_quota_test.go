package e2e

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/macro-cloud/macro/internal/testimages"
)

// TestQuotaVolumes: a tenant's volume quotas (macro admin tenant create
// --volumes SIZE --volume-count N) as the docker CLI meets them: the
// sizes of lv2 volumes count, a local volume counts the default 1 GiB, an
// nfs volume made without a size gets 1 GiB as its limit; a create over
// the quota (docker volume create, or docker run -v of a new name) is a
// 403 the CLI prints; tenant ls shows the use; concurrent creates never
// pass the count.
func TestQuotaVolumes(t *testing.T) {
	c := newTenantCloud(t)
	_, dir := c.newTenant("quota-vol", "--volumes", "3g", "--volume-count", "6")
	c.mustDocker(dir, "load", "-i", testimages.Busybox(t))
	c.mustDocker(dir, "volume", "create", "plain")                                          // local: 1 GiB counted
	c.mustDocker(dir, "volume", "create", "--driver", "lv2", "-o", "size=1g", "db")         // 1 GiB
	c.mustDocker(dir, "volume", "create", "--driver", "nfs", "-o", "snapshot=off", "files") // 1 GiB given
	if out := c.mustDocker(dir, "volume", "inspect", "-f", "{{.Options.size}}", "files"); out != "1073741824" {
		t.Errorf("an nfs volume without a size in a tenant with a volume quota has size %q, want 1073741824", out)
	}

	want := "Error response from daemon: quota exceeded: tenant quota-vol may have volumes of 3.0 GiB in total, its volumes have 3.0 GiB and big needs 16.0 MiB"
	r := c.docker(dir, "volume", "create", "--driver", "lv2", "-o", "size=16m", "big")
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, want) {
		t.Errorf("a volume over the size quota: exit %d\n%s\nwant %q", r.ExitCode, r.Combined(), want)
	}
	r = c.docker(dir, "run", "--rm", "-v", "newvol:/data", "busybox", "true")
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, "quota exceeded: tenant quota-vol may have volumes of 3.0 GiB") {
		t.Errorf("docker run -v of a new volume over the quota: exit %d\n%s", r.ExitCode, r.Combined())
	}
	if out := c.mustAdmin("tenant", "ls"); !regexpMatch(`\nquota-vol\s+\S+\s+\S+\s+\S+\s+\S+\s+3.0GiB/3.0GiB\s+3/6\s+off\n`, out) {
		t.Errorf("tenant ls does not show the volumes:\n%s", out)
	}

	// Freed room is usable again; the count holds under concurrency.
	c.mustDocker(dir, "volume", "rm", "plain")
	c.mustAdmin("tenant", "set-quota", "quota-vol", "--volumes", "0")
	var wg sync.WaitGroup
	exits := make([]int, 8)
	for i := range exits {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := c.docker(dir, "volume", "create", fmt.Sprintf("c%d", i))
			if r.ExitCode != 0 && !strings.Contains(r.Stderr, "quota exceeded: tenant quota-vol may have 6 volumes") {
				t.Errorf("a concurrent create failed otherwise: %s", r.Combined())
			}
			exits[i] = r.ExitCode
		}()
	}
	wg.Wait()
	made := 0
	for _, e := range exits {
		if e == 0 {
			made++
		}
	}
	vols := strings.Fields(c.mustDocker(dir, "volume", "ls", "-q"))
	if made != 4 || len(vols) != 6 {
		t.Errorf("8 concurrent creates with room for 4: %d made, %d volumes: %v", made, len(vols), vols)
	}
}
