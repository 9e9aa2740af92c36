// Package testenv starts real servers for end-to-end tests: the macro server
// built from this tree (StartServer), Debian's docker-registry
// (StartRegistry), and the real docker CLI pointed at them (Docker).
//
// Everything it starts is stopped when the test ends, pass or fail, and what
// a macro server left behind (containers, shims, mounts, cgroups) is removed
// after it stops. Every server gets its own temporary directory and free
// ports, so tests and test binaries may run side by side, and a run can be
// repeated. A test binary killed before its cleanups ran (a -timeout panic)
// leaves its servers behind; the next StartServer of any test binary sweeps
// them up.
//
// The macro server needs root (namespaces, mounts, cgroups): without it, the
// tests that use it are skipped.
package testenv

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/macro-cloud/macro/internal/testimages"
)

// RequireRoot skips the test when the process is not root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("testenv: this test needs root (namespaces, mounts, cgroups); run the tests as root")
	}
}

// RequireTools skips the test when a program it runs is missing
// (scripts/setup.sh installs them).
func RequireTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (scripts/setup.sh installs it)", tool)
		}
	}
}

// RequireFUSE skips the test where there is no /dev/fuse.
func RequireFUSE(t testing.TB) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("needs /dev/fuse")
	}
}

// Macro returns the path of a macro binary built from ./cmd/macro of this
// module, once per test process. The test is skipped when not run as root,
// and fails when the build fails.
func Macro(t testing.TB) string {
	t.Helper()
	RequireRoot(t)
	return Binary(t, "./cmd/macro")
}

// Kra returns the path of a kra binary built from ./cmd/kra, once per test
// process.
func Kra(t testing.TB) string {
	t.Helper()
	return Binary(t, "./cmd/kra")
}

var binaries sync.Map // package path -> func() (string, error)

// Binary builds the main package pkg (a path relative to the module root,
// "./cmd/macro") once per test process and returns the binary's path.
//
// Builds go through the cache directory of testimages: `go build` keeps its
// output there per module checkout and skips linking when nothing changed;
// the binary handed out is an immutable copy named by its content, so a
// rebuild by another test binary never changes a file that is running.
// MACRO_TEST_SERVER_RACE=1 builds with -race.
func Binary(t testing.TB, pkg string) string {
	t.Helper()
	f, _ := binaries.LoadOrStore(pkg, sync.OnceValues(func() (string, error) { return buildBinary(pkg) }))
	p, err := f.(func() (string, error))()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return p
}

func buildBinary(pkg string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	cache, err := testimages.CacheDir()
	if err != nil {
		return "", err
	}
	var flags []string
	if os.Getenv("MACRO_TEST_SERVER_RACE") == "1" {
		flags = append(flags, "-race")
	}
	sum := sha256.Sum256([]byte(root + "\x00" + pkg + "\x00" + strings.Join(flags, " ")))
	dir := filepath.Join(cache, "bin", filepath.Base(pkg)+"-"+hex.EncodeToString(sum[:6]))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	unlock, err := testimages.LockFile(filepath.Join(dir, ".lock"))
	if err != nil {
		return "", err
	}
	defer unlock()

	out := filepath.Join(dir, "build", filepath.Base(pkg))
	args := append([]string{"build", "-o", out}, flags...)
	cmd := exec.Command(goTool(), append(args, pkg)...)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	h, err := fileHash(out)
	if err != nil {
		return "", err
	}
	final := filepath.Join(dir, filepath.Base(pkg)+"-"+h[:16])
	if _, err := os.Stat(final); err != nil {
		if err := copyFile(final+".tmp", out, 0o755); err != nil {
			return "", err
		}
		if err := os.Rename(final+".tmp", final); err != nil {
			return "", err
		}
	}
	now := time.Now()
	os.Chtimes(final, now, now)
	pruneOld(dir, final, 24*time.Hour)
	return final, nil
}

// pruneOld removes the binaries in dir other than keep that nobody built
// or used for a day.
func pruneOld(dir, keep string, age time.Duration) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		if e.IsDir() || p == keep || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > age {
			os.Remove(p)
		}
	}
}

func goTool() string {
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); fileExists(p) {
		return p
	}
	return "go"
}

// ModuleRoot returns the directory of the go.mod above the working
// directory (a test runs in its package's directory).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if fileExists(filepath.Join(dir, "go.mod")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("testenv: no go.mod above the working directory")
		}
		dir = parent
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func fileHash(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func copyFile(dst, src string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
