// Package testimages builds the container images that tests use from Debian
// packages installed on this machine (scripts/setup.sh installs them). No
// image is ever pulled: busybox:latest is assembled from busybox-static's
// /bin/busybox, redis:test from a debootstrap rootfs
// (scripts/build-redis-image.sh).
//
// Images are written once into a cache directory ($MACRO_TEST_CACHE, default
// /var/tmp/macro-test-cache) under a name derived from their inputs, so later
// test runs reuse them. Test binaries of several packages may build at the
// same time: builds take a lock file and publish by atomic rename, so a reader
// never sees a partial archive.
package testimages

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// DefaultCacheDir is used when MACRO_TEST_CACHE is not set. It is outside
// /tmp so that images survive reboots of machines that clean /tmp.
const DefaultCacheDir = "/var/tmp/macro-test-cache"

// CacheDir returns the directory test images are cached in, creating it.
func CacheDir() (string, error) {
	dir := os.Getenv("MACRO_TEST_CACHE")
	if dir == "" {
		dir = DefaultCacheDir
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("test image cache: %w", err)
	}
	return dir, nil
}

// Cached returns dir/name, producing it with build when it does not exist
// yet. build writes the file at the path it is given (a temporary name in
// dir); Cached renames it into place only when build succeeded. An exclusive
// lock on dir/.name.lock serializes builders across processes, and a second
// builder waiting on the lock finds the file already there.
func Cached(dir, name string, build func(tmp string) error) (string, error) {
	final := filepath.Join(dir, name)
	if _, err := os.Stat(final); err == nil {
		return final, nil
	}
	unlock, err := LockFile(filepath.Join(dir, "."+name+".lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, err := os.Stat(final); err == nil {
		return final, nil
	}
	tmp := fmt.Sprintf("%s.tmp-%d", final, os.Getpid())
	defer os.Remove(tmp) // a no-op after the rename
	if err := build(tmp); err != nil {
		return "", fmt.Errorf("build %s: %w", name, err)
	}
	if err := syncFile(tmp); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, final); err != nil {
		return "", fmt.Errorf("publish %s: %w", name, err)
	}
	return final, nil
}

// LockFile takes an exclusive flock on path, creating the file, waiting as
// long as another process holds it, and returns its release.
func LockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil // closing releases the flock
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// hashFiles returns a short hex digest of salt and the contents of files:
// the cache key of an image built from them.
func hashFiles(salt string, files ...string) (string, error) {
	h := sha256.New()
	io.WriteString(h, salt)
	for _, p := range files {
		f, err := os.Open(p)
		if err != nil {
			return "", err
		}
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return "", fmt.Errorf("hash %s: %w", p, err)
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}
