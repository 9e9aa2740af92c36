package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/macro-cloud/macro/auth"
	"github.com/macro-cloud/macro/internal/testenv"
	"github.com/macro-cloud/macro/internal/testimages"
)

// TestVolumeAccessOtherNode: an lv2 and a local volume live on n2, a node
// that runs only an agent; the server, which holds no copy and runs no
// pods, serves them over WebDAV (curl) and S3 (curl --aws-sigv4) by
// mounting them from n2 through FUSE. A file a pod wrote is read; a file
// put over each protocol is seen by the pod; n3, which has no business
// with the volume, is refused its data (404), as before.
func TestVolumeAccessOtherNode(t *testing.T) {
	testenv.RequireTools(t, "mkfs.ext4", "curl")
	testenv.RequireFUSE(t)
	c := startZonedCluster(t, 3)
	c.docker(t, "load", "-i", testimages.Busybox(t))
	c.docker(t, "volume", "create", "--driver", "lv2", "-o", "size=32M", "-o", "zone=z2", "fast")
	c.docker(t, "run", "-d", "--name", "pl", "-v", "fast:/fast", "busybox", "sleep", "1d")
	c.waitPlaced(t, "pl", func(n string) bool { return n == "n2" })
	c.docker(t, "volume", "create", "plain")
	c.docker(t, "run", "-d", "--name", "ql", "--label", "kr.zone=z2", "-v", "plain:/plain", "busybox", "sleep", "1d")
	c.waitPlaced(t, "ql", func(n string) bool { return n == "n2" })
	c.sh(t, "pl", "echo from-the-pod > /fast/pod.txt")
	c.sh(t, "ql", "echo from-the-pod > /plain/pod.txt")

	out, err := exec.Command(testenv.Macro(t), "admin", "--data-dir", c.srv.DataDir, "token", "create", "--tenant", "default").Output()
	if err != nil {
		t.Fatalf("token create: %v", err)
	}
	token := strings.TrimSpace(string(out))
	ca := filepath.Join(c.srv.DataDir, "ca", auth.CACertFile)
	curl := func(args ...string) (string, error) {
		t.Helper()
		out, err := exec.Command("curl", append([]string{"-sS", "--fail-with-body", "--cacert", ca}, args...)...).CombinedOutput()
		t.Logf("curl %s: %v\n%s", strings.Join(args, " "), err, out)
		return string(out), err
	}
	dav := func(args ...string) string {
		t.Helper()
		out, err := curl(append([]string{"-H", "Authorization: Bearer " + token}, args...)...)
		if err != nil {
			t.Fatalf("WebDAV: %v", err)
		}
		return out
	}

	for _, v := range []struct{ name, pod, dir string }{{"fast", "pl", "/fast"}, {"plain", "ql", "/plain"}} {
		// WebDAV: read what the pod wrote, put a file the pod reads.
		if got := dav(c.api + "/dav/" + v.name + "/pod.txt"); got != "from-the-pod\n" {
			t.Fatalf("%s: GET over WebDAV: %q", v.name, got)
		}
		dav("-X", "PUT", "--data-binary", "put-over-webdav", c.api+"/dav/"+v.name+"/dav.txt")
		if got := c.sh(t, v.pod, "cat "+v.dir+"/dav.txt"); got != "put-over-webdav" {
			t.Fatalf("%s: the pod reads %q of the file put over WebDAV", v.name, got)
		}
		if got := dav("-X", "PROPFIND", "-H", "Depth: 1", c.api+"/dav/"+v.name+"/"); !strings.Contains(got, "pod.txt") || !strings.Contains(got, "dav.txt") {
			t.Fatalf("%s: PROPFIND lists %s", v.name, got)
		}

		// S3, with a key of the volume.
		var key struct{ ID, Secret string }
		if err := json.Unmarshal([]byte(dav("-X", "POST", "--data-binary", `{"volume": "`+v.name+`"}`, c.api+"/apis/macro/v1/volumekeys")), &key); err != nil {
			t.Fatal(err)
		}
		s3 := func(args ...string) string {
			t.Helper()
			out, err := curl(append([]string{"--aws-sigv4", "aws:amz:us-east-1:s3", "-u", key.ID + ":" + key.Secret, "-H", "X-Amz-Content-Sha256: UNSIGNED-PAYLOAD"}, args...)...)
			if err != nil {
				t.Fatalf("S3: %v", err)
			}
			return out
		}
		if got := s3("https://" + c.s3 + "/" + v.name + "/pod.txt"); got != "from-the-pod\n" {
			t.Fatalf("%s: GET over S3: %q", v.name, got)
		}
		s3("-X", "PUT", "--data-binary", "put-over-s3", "https://"+c.s3+"/"+v.name+"/s3.txt")
		if got := c.sh(t, v.pod, "cat "+v.dir+"/s3.txt"); got != "put-over-s3" {
			t.Fatalf("%s: the pod reads %q of the file put over S3", v.name, got)
		}
		if got := s3("https://" + c.s3 + "/" + v.name + "?list-type=2"); !strings.Contains(got, "<Key>s3.txt</Key>") || !strings.Contains(got, "<Key>dav.txt</Key>") {
			t.Fatalf("%s: S3 list: %s", v.name, got)
		}
	}

	// n3 has no business with n2's lv2 volume: its node credential is
	// refused the volume's data.
	n3tok, err := os.ReadFile(filepath.Join(c.agents["n3"].DataDir, "node-credential"))
	if err != nil {
		t.Skipf("n3's credential: %v", err)
	}
	status, err := curl("-o", "/dev/null", "-w", "%{http_code}", "-H", "Authorization: Bearer "+strings.TrimSpace(string(n3tok)),
		c.api+"/node/v1/volfs/default/fast/route")
	if err == nil || !strings.HasSuffix(strings.TrimSpace(status), "404") {
		t.Fatalf("n3 asks for the route of n2's lv2 volume: %q %v, want 404", status, err)
	}
}
