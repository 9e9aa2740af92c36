package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/macro-cloud/macro/auth"
	"github.com/macro-cloud/macro/internal/testenv"
	"github.com/macro-cloud/macro/internal/testimages"
)

// accessCloud is a tenant cloud whose server also serves S3 (--s3-addr).
type accessCloud struct {
	*tenantCloud
	s3Addr string
	caFile string
}

func newAccessCloud(t *testing.T) *accessCloud {
	if _, err := exec.LookPath("rclone"); err != nil {
		t.Skip("rclone is not installed (scripts/setup.sh installs it)")
	}
	macro := testenv.Macro(t) // skips without root
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	s3Addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	srv := testenv.StartServer(t, testenv.WithArgs("--api-addr", addr, "--s3-addr", s3Addr))
	caFile := filepath.Join(srv.DataDir, "ca", auth.CACertFile)
	c := newTenantCloudOn(t, macro, srv, addr)
	return &accessCloud{tenantCloud: c, s3Addr: s3Addr, caFile: caFile}
}

// volumeKey is a key as POST /volumekeys answers it.
type volumeKey struct {
	ID, Volume, Secret string
	ReadOnly           bool
}

// createKey makes a volume access key with the tenant's token over the
// native API.
func (c *accessCloud) createKey(token string, body string) volumeKey {
	c.t.Helper()
	status, b := c.call(token, http.MethodPost, "/apis/macro/v1/volumekeys", body)
	if status != http.StatusCreated {
		c.t.Fatalf("POST /volumekeys %s: %d %s", body, status, b)
	}
	var k volumeKey
	if err := json.Unmarshal(b, &k); err != nil {
		c.t.Fatal(err)
	}
	return k
}

// kra runs the real kra CLI as the tenant of token.
func (c *accessCloud) kra(token string, args ...string) string {
	c.t.Helper()
	cmd := exec.Command(testenv.Kra(c.t), args...)
	cmd.Env = append(os.Environ(), "KR_HOST=https://"+c.addr, "KR_ACCESS_TOKEN="+token, "KR_CA="+c.caFile, "XDG_CONFIG_HOME="+c.t.TempDir())
	out, err := cmd.CombinedOutput()
	c.t.Logf("kra %s: %v\n%s", strings.Join(args, " "), err, out)
	if err != nil {
		c.t.Fatalf("kra %s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}

// kraKey makes a key of volume with kra volume key create and reads the
// key ID and secret from what it prints.
func (c *accessCloud) kraKey(token, volume string, flags ...string) volumeKey {
	c.t.Helper()
	out := c.kra(token, append([]string{"volume", "key", "create", volume}, flags...)...)
	var k volumeKey
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 3 && f[0] == "key" && f[1] == "ID:":
			k.ID = f[2]
		case len(f) == 2 && f[0] == "secret:":
			k.Secret = f[1]
		}
	}
	if k.ID == "" || k.Secret == "" {
		c.t.Fatalf("kra volume key create printed no key:\n%s", out)
	}
	k.Volume, k.ReadOnly = volume, strings.Contains(out, "(read-only)")
	return k
}

// call makes one request on the API port with a bearer token ("" for
// none).
func (c *accessCloud) call(token, method, path, body string) (int, []byte) {
	c.t.Helper()
	req, _ := http.NewRequest(method, "https://"+c.addr+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// rclone runs rclone with remotes dav: (WebDAV at /dav/<volume> with the
// token as bearer) and s3: (the S3 endpoint with a key) set up in its
// environment.
func (c *accessCloud) rclone(env []string, args ...string) (string, error) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "rclone", append([]string{"--config", "/dev/null", "--low-level-retries", "1", "--retries", "1"}, args...)...)
	// The cluster CA through Go's own variable; AWS_CA_BUNDLE (and
	// rclone's --ca-cert) break rclone 1.60's S3 backend
	// (LoadCustomCABundleError).
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") && !strings.HasPrefix(kv, "RCLONE_") && !strings.HasPrefix(kv, "SSL_CERT_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(append(cmd.Env, "SSL_CERT_FILE="+c.caFile), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	c.t.Logf("rclone %s: %v\n%s", strings.Join(args, " "), err, tail(errOut.String(), 3000))
	return out.String(), err
}

func (c *accessCloud) mustRclone(env []string, args ...string) string {
	c.t.Helper()
	out, err := c.rclone(env, args...)
	if err != nil {
		c.t.Fatalf("rclone %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// curl runs curl with the cluster CA and returns the HTTP status.
func (c *accessCloud) curl(args ...string) string {
	c.t.Helper()
	cmd := exec.Command("curl", append([]string{"-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", c.caFile}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		c.t.Fatalf("curl %s: %v %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// curlS3 runs curl with an S3 signature (curl --aws-sigv4) by key k.
func (c *accessCloud) curlS3(k volumeKey, args ...string) string {
	c.t.Helper()
	return c.curl(append([]string{"--aws-sigv4", "aws:amz:us-east-1:s3", "-u", k.ID + ":" + k.Secret, "-H", "X-Amz-Content-Sha256: UNSIGNED-PAYLOAD"}, args...)...)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func davEnv(addr, volume, token string) []string {
	return []string{
		"RCLONE_CONFIG_DAV_TYPE=webdav",
		"RCLONE_CONFIG_DAV_URL=https://" + addr + "/dav/" + volume,
		"RCLONE_CONFIG_DAV_VENDOR=other",
		"RCLONE_CONFIG_DAV_BEARER_TOKEN=" + token,
	}
}

func s3Env(addr string, k volumeKey) []string {
	return []string{
		"RCLONE_CONFIG_S3_TYPE=s3",
		"RCLONE_CONFIG_S3_PROVIDER=Other",
		"RCLONE_CONFIG_S3_ENDPOINT=https://" + addr,
		"RCLONE_CONFIG_S3_ACCESS_KEY_ID=" + k.ID,
		"RCLONE_CONFIG_S3_SECRET_ACCESS_KEY=" + k.Secret,
		"RCLONE_CONFIG_S3_REGION=us-east-1",
		"RCLONE_CONFIG_S3_FORCE_PATH_STYLE=true",
		// Small parts, so that the 12 MiB file goes up in several.
		"RCLONE_CONFIG_S3_UPLOAD_CUTOFF=5M",
		"RCLONE_CONFIG_S3_CHUNK_SIZE=5M",
	}
}

// makeTree writes a directory tree of files with random contents: small
// ones in nested directories, names with spaces and unicode, an empty
// file, and one of 12 MiB (a multipart upload over S3).
func makeTree(t *testing.T) string {
	dir := t.TempDir()
	files := map[string]int{
		"a.txt": 10, "empty": 0, "dir one/b.bin": 70000, "dir one/deeper/c.txt": 5,
		"ünïcode/naïve file.txt": 300, "z/y/x/w.dat": 4096, "big.bin": 12 << 20,
	}
	for name, size := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, size)
		rand.Read(b)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// treeSums maps every regular file under dir to its SHA-256.
func treeSums(t *testing.T, dir string) map[string]string {
	t.Helper()
	sums := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		sum := sha256.Sum256(b)
		sums[filepath.ToSlash(rel)] = hex.EncodeToString(sum[:])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return sums
}

func sameSums(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d files, want %d: %v", what, len(got), len(want), got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %s has sha256 %q, want %q", what, k, got[k], v)
		}
	}
}

// TestVolumeAccess copies a tree into a volume over WebDAV and over S3
// with rclone, reads it back, checks it from a container and a
// container's file through both, and the refusals with curl.
func TestVolumeAccess(t *testing.T) {
	c := newAccessCloud(t)
	aliceTok, aliceCerts := c.newTenant("alice")
	bobTok, bobCerts := c.newTenant("bob")
	c.mustDocker(aliceCerts, "load", "-i", testimages.Busybox(t))
	c.mustDocker(aliceCerts, "volume", "create", "data")
	c.mustDocker(aliceCerts, "volume", "create", "other")
	c.mustDocker(bobCerts, "volume", "create", "bobs")

	rw := c.kraKey(aliceTok, "data")
	ro := c.kraKey(aliceTok, "data", "--read-only", "--description", "for the backup")
	if ls := c.kra(aliceTok, "volume", "key", "ls", "data"); !strings.Contains(ls, rw.ID) || !strings.Contains(ls, ro.ID) || !strings.Contains(ls, "read-only") || !strings.Contains(ls, "for the backup") {
		t.Errorf("kra volume key ls:\n%s", ls)
	}
	all := c.createKey(aliceTok, `{"all": true}`)
	bobKey := c.createKey(bobTok, `{"volume": "bobs"}`)
	if rw.Secret == "" || rw.ReadOnly || !ro.ReadOnly || all.Volume != "" {
		t.Fatalf("keys: %+v %+v %+v", rw, ro, all)
	}

	tree := makeTree(t)
	want := treeSums(t, tree)
	dav := davEnv(c.addr, "data", aliceTok)
	s3 := s3Env(c.s3Addr, rw)

	t.Run("webdav", func(t *testing.T) {
		c.mustRclone(dav, "copy", tree, "dav:viadav")
		ls := c.mustRclone(dav, "lsf", "-R", "--files-only", "dav:viadav")
		if n := len(strings.Fields(strings.ReplaceAll(ls, " ", "_"))); n != len(want) {
			t.Errorf("lsf over WebDAV: %d files, want %d:\n%s", n, len(want), ls)
		}
		back := t.TempDir()
		c.mustRclone(dav, "copy", "dav:viadav", back)
		sameSums(t, "read back over WebDAV", treeSums(t, back), want)
		c.mustRclone(dav, "check", tree, "dav:viadav")
		// MOVE, COPY (server side), DELETE, MKCOL.
		c.mustRclone(dav, "moveto", "dav:viadav/a.txt", "dav:viadav/moved.txt")
		c.mustRclone(dav, "copyto", "dav:viadav/moved.txt", "dav:viadav/a.txt")
		c.mustRclone(dav, "deletefile", "dav:viadav/moved.txt")
		c.mustRclone(dav, "mkdir", "dav:viadav/newdir")
		c.mustRclone(dav, "check", tree, "dav:viadav")
		// /dav/ lists the tenant's volumes, and only them.
		root := davEnv(c.addr, "", aliceTok)
		if ls := c.mustRclone(root, "lsd", "dav:"); !strings.Contains(ls, " data\n") || !strings.Contains(ls, " other\n") || strings.Contains(ls, "bobs") {
			t.Errorf("lsd of /dav/:\n%s", ls)
		}
		if ls := c.mustRclone(root, "lsf", "dav:data/viadav/dir one"); !strings.Contains(ls, "b.bin") {
			t.Errorf("lsf through /dav/:\n%s", ls)
		}
		// The README's connection string, with the token.
		if ls := c.mustRclone(nil, "lsf", ":webdav,url='https://"+c.addr+"/dav/data',vendor=other,bearer_token="+aliceTok+":viadav"); !strings.Contains(ls, "big.bin") {
			t.Errorf("lsf with a connection string:\n%s", ls)
		}
		// A read-only key as user and password: it lists and reads, and
		// cannot write.
		obscured := strings.TrimSpace(c.mustRclone(nil, "obscure", ro.Secret))
		davRO := []string{
			"RCLONE_CONFIG_DAV_TYPE=webdav", "RCLONE_CONFIG_DAV_URL=https://" + c.addr + "/dav/data", "RCLONE_CONFIG_DAV_VENDOR=other",
			"RCLONE_CONFIG_DAV_USER=" + ro.ID, "RCLONE_CONFIG_DAV_PASS=" + obscured,
		}
		if ls := c.mustRclone(davRO, "lsf", "dav:viadav"); !strings.Contains(ls, "big.bin") {
			t.Errorf("lsf with a read-only key:\n%s", ls)
		}
		if _, err := c.rclone(davRO, "copyto", filepath.Join(tree, "a.txt"), "dav:viadav/ro.txt"); err == nil {
			t.Error("a read-only key wrote over WebDAV")
		}
		if _, err := c.rclone(s3Env(c.s3Addr, ro), "copyto", filepath.Join(tree, "a.txt"), "s3:data/ro.txt"); err == nil {
			t.Error("a read-only key wrote over S3")
		}
	})
	t.Run("s3", func(t *testing.T) {
		c.mustRclone(s3, "copy", tree, "s3:data/vias3")
		ls := c.mustRclone(s3, "lsf", "-R", "--files-only", "s3:data/vias3")
		if n := len(strings.Split(strings.TrimSpace(ls), "\n")); n != len(want) {
			t.Errorf("lsf over S3: %d files, want %d:\n%s", n, len(want), ls)
		}
		back := t.TempDir()
		c.mustRclone(s3, "copy", "s3:data/vias3", back)
		sameSums(t, "read back over S3", treeSums(t, back), want)
		c.mustRclone(s3, "check", tree, "s3:data/vias3") // MD5s against the ETags
		// Server-side copy, move and delete.
		c.mustRclone(s3, "copyto", "s3:data/vias3/a.txt", "s3:data/vias3/copied.txt")
		c.mustRclone(s3, "moveto", "s3:data/vias3/copied.txt", "s3:data/vias3/moved.txt")
		c.mustRclone(s3, "deletefile", "s3:data/vias3/moved.txt")
		c.mustRclone(s3, "check", tree, "s3:data/vias3")
		// A second copy finds everything in place (exit status 9: nothing
		// transferred).
		if _, err := c.rclone(s3, "copy", "--error-on-no-transfer", tree, "s3:data/vias3"); err == nil || err.(*exec.ExitError).ExitCode() != 9 {
			t.Errorf("a second copy transferred files again (or failed): %v", err)
		}
		buckets := c.mustRclone(s3Env(c.s3Addr, all), "lsd", "s3:")
		if !strings.Contains(buckets, " data\n") || !strings.Contains(buckets, " other\n") || strings.Contains(buckets, "bobs") {
			t.Errorf("buckets of a key of all volumes:\n%s", buckets)
		}
		if b := c.mustRclone(s3, "lsd", "s3:"); strings.Contains(b, "other") || !strings.Contains(b, "data") {
			t.Errorf("buckets of a key of one volume:\n%s", b)
		}
	})
	t.Run("container", func(t *testing.T) {
		out := c.mustDocker(aliceCerts, "run", "--rm", "-v", "data:/data", "busybox", "sh", "-c",
			"cd /data && sha256sum viadav/big.bin vias3/big.bin 'viadav/dir one/b.bin' 'vias3/ünïcode/naïve file.txt' && echo from a container > /data/fromctr.txt")
		for _, f := range []string{"big.bin", "dir one/b.bin", "ünïcode/naïve file.txt"} {
			if !strings.Contains(out, want[f]) {
				t.Errorf("the container does not see %s (sha256 %s):\n%s", f, want[f], out)
			}
		}
		if got := c.mustRclone(dav, "cat", "dav:fromctr.txt"); got != "from a container\n" {
			t.Errorf("a container's file over WebDAV: %q", got)
		}
		if got := c.mustRclone(s3, "cat", "s3:data/fromctr.txt"); got != "from a container\n" {
			t.Errorf("a container's file over S3: %q", got)
		}
	})
	t.Run("symlinks", func(t *testing.T) {
		c.mustDocker(aliceCerts, "run", "--rm", "-v", "data:/data", "busybox", "sh", "-c",
			"ln -s / /data/root && ln -s /etc/passwd /data/passwd && ln -s ../../../../../../etc /data/up && ln -s fromctr.txt /data/inside")
		host, _ := os.ReadFile("/etc/passwd")
		for _, p := range []string{"root/etc/passwd", "passwd", "up/passwd", "root/"} {
			// rclone cat of a name that is no file lists it as a
			// directory: what matters is that no host file comes out.
			if got, _ := c.rclone(dav, "cat", "dav:"+p); bytes.Contains([]byte(got), host[:min(len(host), 20)]) {
				t.Errorf("WebDAV %s gives the host's file: %q", p, tail(got, 100))
			}
			if got, _ := c.rclone(s3, "cat", "s3:data/"+p); bytes.Contains([]byte(got), host[:min(len(host), 20)]) {
				t.Errorf("S3 %s gives the host's file: %q", p, tail(got, 100))
			}
			if got := c.curl("-u", rw.ID+":"+rw.Secret, "https://"+c.addr+"/dav/data/"+p); got != "404" {
				t.Errorf("WebDAV GET %s: %s, want 404", p, got)
			}
			if got := c.curlS3(rw, "https://"+c.s3Addr+"/data/"+p); got != "404" {
				t.Errorf("S3 GET %s: %s, want 404", p, got)
			}
		}
		if got := c.curlS3(rw, "-T", "/etc/hostname", "https://"+c.s3Addr+"/data/root/tmp/planted"); got != "403" {
			t.Errorf("S3 PUT through a symlink out: %s, want 403", got)
		}
		if got := c.curl("-T", "/etc/hostname", "-u", rw.ID+":"+rw.Secret, "https://"+c.addr+"/dav/data/root/tmp/planted"); got != "404" && got != "409" {
			t.Errorf("WebDAV PUT through a symlink out: %s, want 404 or 409", got)
		}
		if _, err := os.Stat("/tmp/planted"); err == nil {
			t.Errorf("a PUT through a symlink wrote /tmp/planted on the host")
		}
		if got := c.mustRclone(dav, "cat", "dav:inside"); got != "from a container\n" {
			t.Errorf("a symlink within the volume over WebDAV: %q", got)
		}
		if got := c.mustRclone(s3, "cat", "s3:data/inside"); got != "from a container\n" {
			t.Errorf("a symlink within the volume over S3: %q", got)
		}
		ls := c.mustRclone(s3, "lsf", "s3:data")
		if strings.Contains(ls, "root") || strings.Contains(ls, "passwd") {
			t.Errorf("S3 lists symlinks that lead out:\n%s", ls)
		}
	})
	t.Run("curl", func(t *testing.T) {
		base := "https://" + c.addr + "/dav/"
		curl := c.curl
		for _, tc := range []struct {
			name string
			args []string
			want string
		}{
			{"no credentials", []string{base + "data/fromctr.txt"}, "401"},
			{"a bad token", []string{"-H", "Authorization: Bearer kr_0000000000000000_" + strings.Repeat("0", 64), base + "data/fromctr.txt"}, "401"},
			{"the token as basic auth", []string{"-u", "me:" + aliceTok, base + "data/fromctr.txt"}, "200"},
			{"a key as basic auth", []string{"-u", rw.ID + ":" + rw.Secret, base + "data/fromctr.txt"}, "200"},
			{"a key with a wrong secret", []string{"-u", rw.ID + ":" + strings.Repeat("0", 40), base + "data/fromctr.txt"}, "401"},
			{"PROPFIND", []string{"-X", "PROPFIND", "-H", "Depth: 1", "-H", "Authorization: Bearer " + aliceTok, base + "data/"}, "207"},
			{"PUT", []string{"-T", "/etc/hostname", "-H", "Authorization: Bearer " + aliceTok, base + "data/put.txt"}, "201"},
			{"MKCOL", []string{"-X", "MKCOL", "-H", "Authorization: Bearer " + aliceTok, base + "data/col"}, "201"},
			{"LOCK", []string{"-X", "LOCK", "-H", "Authorization: Bearer " + aliceTok, "-H", "Content-Type: application/xml", "--data",
				`<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockinfo>`, base + "data/locked.txt"}, "201"},
			{"DELETE", []string{"-X", "DELETE", "-H", "Authorization: Bearer " + aliceTok, base + "data/put.txt"}, "204"},
			{"a read-only key reads", []string{"-u", ro.ID + ":" + ro.Secret, base + "data/fromctr.txt"}, "200"},
			{"a read-only key cannot PUT", []string{"-T", "/etc/hostname", "-u", ro.ID + ":" + ro.Secret, base + "data/ro.txt"}, "403"},
			{"a read-only key cannot DELETE", []string{"-X", "DELETE", "-u", ro.ID + ":" + ro.Secret, base + "data/fromctr.txt"}, "403"},
			{"another tenant's volume", []string{"-H", "Authorization: Bearer " + bobTok, base + "data/fromctr.txt"}, "404"},
			{"a volume of none", []string{"-H", "Authorization: Bearer " + aliceTok, base + "nope/"}, "404"},
			{"another volume than the key's", []string{"-u", rw.ID + ":" + rw.Secret, base + "other/"}, "404"},
			{"another tenant's key", []string{"-u", bobKey.ID + ":" + bobKey.Secret, base + "data/fromctr.txt"}, "404"},
			{"escape with ..", []string{"--path-as-is", "-H", "Authorization: Bearer " + aliceTok, base + "data/../bobs/"}, "404"},
		} {
			if got := curl(tc.args...); got != tc.want {
				t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
			}
		}
		s3 := c.curlS3
		s3base := "https://" + c.s3Addr + "/"
		for _, tc := range []struct {
			name string
			got  string
			want string
		}{
			{"S3 without a signature", curl(s3base + "data/fromctr.txt"), "403"},
			{"S3 GET", s3(rw, s3base+"data/fromctr.txt"), "200"},
			{"S3 Range", s3(rw, "-r", "0-3", s3base+"data/fromctr.txt"), "206"},
			{"S3 another tenant's bucket", s3(bobKey, s3base+"data/fromctr.txt"), "404"},
			{"S3 read-only PUT", s3(ro, "-T", "/etc/hostname", s3base+"data/ro.txt"), "403"},
			{"S3 PUT", s3(rw, "-T", "/etc/hostname", s3base+"data/curl.txt"), "200"},
			{"S3 key escaping", s3(rw, "--path-as-is", s3base+"data/a/../../x"), "400"},
		} {
			if tc.got != tc.want {
				t.Errorf("%s: %s, want %s", tc.name, tc.got, tc.want)
			}
		}
		// The key is revoked: WebDAV and S3 refuse it.
		c.kra(aliceTok, "volume", "key", "rm", rw.ID)
		if ls := c.kra(aliceTok, "volume", "key", "ls"); strings.Contains(ls, rw.ID) || !strings.Contains(ls, ro.ID) {
			t.Errorf("kra volume key ls after rm:\n%s", ls)
		}
		if got := curl("-u", rw.ID+":"+rw.Secret, base+"data/fromctr.txt"); got != "401" {
			t.Errorf("a revoked key over WebDAV: %s", got)
		}
		if got := s3(rw, s3base+"data/fromctr.txt"); got != "403" {
			t.Errorf("a revoked key over S3: %s", got)
		}
	})
}
