package testimages

import (
	"os"
	"path/filepath"
	"testing"
)

// RedisArchive is the file name, in the cache directory, of the redis:test
// archive that scripts/build-redis-image.sh writes. The script uses the same
// name; change both together.
const RedisArchive = "redis-test-v1.tar"

// RedisRef is the reference the redis archive is tagged with.
const RedisRef = "redis:test"

// Redis returns the path of the redis:test docker-archive (a Debian minbase
// rootfs with redis-server; Cmd redis-server --protected-mode no, port 6379)
// built by scripts/build-redis-image.sh. Building it downloads Debian
// packages and takes minutes, so tests do not build it: the test is skipped
// when the archive is not in the cache.
func Redis(t testing.TB) string {
	t.Helper()
	dir, err := CacheDir()
	if err != nil {
		t.Fatalf("testimages: %v", err)
	}
	p := filepath.Join(dir, RedisArchive)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("testimages: %s is not built; run scripts/build-redis-image.sh (MACRO_TEST_CACHE=%s)", RedisRef, dir)
	}
	return p
}
