package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/crypto/bcrypt"
)

// RegistryBinary is Debian's docker-registry (distribution 2.8).
const RegistryBinary = "/usr/bin/docker-registry"

// Registry is a docker-registry serving plain HTTP on 127.0.0.1, started by
// StartRegistry or StartRegistryWithAuth.
type Registry struct {
	Addr     string // 127.0.0.1:port, the registry part of image references
	Dir      string // configuration, storage and log
	User     string // with StartRegistryWithAuth
	Password string
}

// StartRegistry starts docker-registry on a free port with its storage in a
// temporary directory, waits until /v2/ answers and stops it when the test
// ends. It skips the test when docker-registry is not installed.
func StartRegistry(t testing.TB) *Registry {
	t.Helper()
	return startRegistry(t, "", "")
}

// StartRegistryWithAuth is StartRegistry with htpasswd basic auth: only user
// with password may pull or push (docker login tests).
func StartRegistryWithAuth(t testing.TB, user, password string) *Registry {
	t.Helper()
	return startRegistry(t, user, password)
}

func startRegistry(t testing.TB, user, password string) *Registry {
	t.Helper()
	if _, err := os.Stat(RegistryBinary); err != nil {
		t.Skipf("testenv: %s missing: run scripts/setup.sh", RegistryBinary)
	}
	r := &Registry{Dir: t.TempDir(), User: user, Password: password}
	auth := ""
	if user != "" {
		hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		htpasswd := filepath.Join(r.Dir, "htpasswd")
		if err := os.WriteFile(htpasswd, fmt.Appendf(nil, "%s:%s\n", user, hash), 0o600); err != nil {
			t.Fatal(err)
		}
		auth = fmt.Sprintf("auth:\n  htpasswd:\n    realm: macro-test\n    path: %s\n", htpasswd)
	}
	// The port may be taken between FreePort and the registry's bind: try
	// again with another one.
	var lastErr error
	for range 3 {
		r.Addr = fmt.Sprintf("127.0.0.1:%d", FreePort(t))
		stop, err := r.start(auth)
		if err == nil {
			t.Cleanup(stop)
			return r
		}
		lastErr = err
	}
	t.Fatalf("testenv: docker-registry: %v", lastErr)
	return nil
}

func (r *Registry) start(auth string) (stop func(), err error) {
	secret := make([]byte, 16)
	rand.Read(secret)
	config := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %s
  secret: %s
%s`, filepath.Join(r.Dir, "storage"), r.Addr, hex.EncodeToString(secret), auth)
	cfgPath := filepath.Join(r.Dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
		return nil, err
	}
	logPath := filepath.Join(r.Dir, "registry.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(RegistryBinary, "serve", cfgPath)
	// Its own environment: REGISTRY_* variables would override the config.
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + r.Dir}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	stop = func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.Addr+"/v2/", nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			// 401 is an answer too: the registry wants credentials.
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return stop, nil
			}
		}
		select {
		case <-done:
			b, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("exited: %s\n%s", cmd.ProcessState, b)
		case <-ctx.Done():
			stop()
			b, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("no answer on http://%s/v2/: %v\n%s", r.Addr, err, b)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Ref returns the full reference of repoTag ("busybox:latest") in this
// registry: "127.0.0.1:port/busybox:latest".
func (r *Registry) Ref(repoTag string) string { return r.Addr + "/" + strings.TrimPrefix(repoTag, "/") }

func (r *Registry) remoteOptions() []remote.Option {
	auth := authn.Anonymous
	if r.User != "" {
		auth = authn.FromConfig(authn.AuthConfig{Username: r.User, Password: r.Password})
	}
	return []remote.Option{remote.WithAuth(auth)}
}

// Push uploads img to the registry as repoTag ("busybox:latest") over plain
// HTTP, and returns its full reference with the digest the registry keeps:
// "127.0.0.1:port/busybox@sha256:...".
func (r *Registry) Push(t testing.TB, img v1.Image, repoTag string) string {
	t.Helper()
	ref, err := name.ParseReference(r.Ref(repoTag), name.Insecure)
	if err != nil {
		t.Fatalf("testenv: push %s: %v", repoTag, err)
	}
	if err := remote.Write(ref, img, r.remoteOptions()...); err != nil {
		t.Fatalf("testenv: push %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return ref.Context().Digest(d.String()).String()
}

// Image fetches ref (repoTag or a full reference into this registry) back
// from the registry.
func (r *Registry) Image(t testing.TB, ref string) v1.Image {
	t.Helper()
	if !strings.HasPrefix(ref, r.Addr+"/") {
		ref = r.Ref(ref)
	}
	parsed, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	img, err := remote.Image(parsed, r.remoteOptions()...)
	if err != nil {
		t.Fatalf("testenv: pull %s: %v", ref, err)
	}
	return img
}
