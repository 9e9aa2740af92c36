package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// layerCache is client.LayerCache in a file: for each host and layer
// (diffID), the blob kra compressed it to and the repository it went to.
// It lives in $XDG_CACHE_HOME/kra/layers.json (~/.cache/kra/...). It only
// saves work: a blob it names is looked up on the server (HEAD) before it
// is trusted, and the server checks every layer against its diffID.
type layerCache struct {
	path string

	mu      sync.Mutex
	entries map[string]cacheEntry
	dirty   bool
}

type cacheEntry struct {
	Blob v1.Descriptor `json:"blob"`
	Repo string        `json:"repo"`
	Used time.Time     `json:"used"`
}

// maxCacheEntries bounds the cache; the least recently used go first.
const maxCacheEntries = 4096

// openLayerCache reads the cache; a cache that cannot be read is empty.
func openLayerCache() *layerCache {
	c := &layerCache{entries: map[string]cacheEntry{}}
	dir, err := os.UserCacheDir()
	if err != nil {
		return c
	}
	c.path = filepath.Join(dir, "kra", "layers.json")
	if b, err := os.ReadFile(c.path); err == nil {
		json.Unmarshal(b, &c.entries)
	}
	return c
}

func cacheKey(host string, diffID v1.Hash) string { return host + " " + diffID.String() }

func (c *layerCache) Get(host string, diffID v1.Hash) (v1.Descriptor, string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[cacheKey(host, diffID)]
	if !ok || e.Blob.Digest.Hex == "" {
		return v1.Descriptor{}, "", false
	}
	e.Used = time.Now().UTC()
	c.entries[cacheKey(host, diffID)] = e
	c.dirty = true
	return e.Blob, e.Repo, true
}

func (c *layerCache) Put(host string, diffID v1.Hash, blob v1.Descriptor, repo string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.entries[cacheKey(host, diffID)] = cacheEntry{Blob: blob, Repo: repo, Used: time.Now().UTC()}
	c.dirty = true
}

// save writes the cache back (0600: it names the tenant's repositories).
func (c *layerCache) save() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.dirty || c.path == "" {
		return nil
	}
	if len(c.entries) > maxCacheEntries {
		keys := make([]string, 0, len(c.entries))
		for k := range c.entries {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool { return c.entries[keys[i]].Used.After(c.entries[keys[j]].Used) })
		for _, k := range keys[maxCacheEntries:] {
			delete(c.entries, k)
		}
	}
	b, err := json.Marshal(c.entries)
	if err != nil {
		return err
	}
	c.dirty = false
	return writeFileAtomic(c.path, b, 0o600)
}
