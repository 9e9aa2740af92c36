package compose

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoad feeds compose files to Load, Check and the translation into
// create requests: whatever a tenant writes, kra answers with an error or
// requests that encode, and never panics.
func FuzzLoad(f *testing.F) {
	for _, name := range []string{"shop", "batch", "files", "nets"} {
		b, err := os.ReadFile(filepath.Join("testdata", "up", name, "compose.yaml"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("services:\n  web:\n    image: x\n    deploy:\n      resources:\n        limits: {cpus: '0.5', memory: 1G, pids: 3}\n"))
	f.Add([]byte("services:\n  a:\n    image: x\n    depends_on: {b: {condition: service_healthy, required: false}}\n    tmpfs: ['/t:size=1k']\n    volumes:\n      - type: tmpfs\n        target: /x\n        tmpfs: {size: 10, mode: 0755}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := filepath.Join(t.TempDir(), "fuzz")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		p, err := Load(context.Background(), LoadOptions{WorkDir: dir, OSEnv: []string{}})
		if err != nil {
			return
		}
		if _, err := DependencyOrder(p); err != nil {
			return
		}
		for _, key := range sortedKeys(p.Networks) {
			if _, err := NetworkRequest(p, key); err != nil {
				t.Fatalf("network %s: %v", key, err)
			}
		}
		for _, key := range sortedKeys(p.Volumes) {
			if _, err := VolumeRequest(p, key); err != nil {
				t.Fatalf("volume %s: %v", key, err)
			}
		}
		for _, name := range serviceNames(p) {
			req, err := ContainerRequest(p, p.Services[name], 1, "sha256:x", Uploads{})
			if err != nil {
				continue // a bind mount not uploaded, a bad port
			}
			if _, err := json.Marshal(req); err != nil {
				t.Fatalf("service %s: %v", name, err)
			}
		}
	})
}
