package delta

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// cutRef is cut written plainly, byte by byte: the definition the fast
// cut (four bytes a step) must match exactly, or receivers' chunks would
// no longer be the senders'.
func cutRef(data []byte) int {
	n := len(data)
	if n <= MinChunk {
		return n
	}
	n = min(n, MaxChunk)
	avg := min(AvgChunk, n)
	var h uint64
	for i := MinChunk - 64; i < n; i++ {
		h = h<<1 + gear[data[i]]
		if i < MinChunk {
			continue
		}
		if i < avg && h&maskHard == 0 || i >= avg && h&maskEasy == 0 {
			return i + 1
		}
	}
	return n
}

func TestCutMatchesDefinition(t *testing.T) {
	check := func(what string, d []byte) {
		for p := 0; p < len(d); {
			w := d[p:min(len(d), p+MaxChunk)]
			got, want := cut(w), cutRef(w)
			if got != want {
				t.Fatalf("%s at %d: cut %d, want %d", what, p, got, want)
			}
			p += got
		}
		for n := 0; n < 6000 && n <= len(d); n += 7 {
			if got, want := cut(d[:n]), cutRef(d[:n]); got != want {
				t.Fatalf("%s, %d bytes: cut %d, want %d", what, n, got, want)
			}
		}
	}
	for seed := uint64(0); seed < 20; seed++ {
		check("random", randBytes(seed, 1<<20))
	}
	check("zeros", make([]byte, 200000))
	text := make([]byte, 0, 300000)
	for len(text) < 300000 {
		text = append(text, "the quick brown fox jumps over the lazy dog; "...)
	}
	check("text", text)
}

// TestChunkMapped: chunking through mappings, window by window, gives the
// chunks reading gives, and a file shorter than its mapping (one that
// shrank) faults into "not ok" instead of killing the process.
func TestChunkMapped(t *testing.T) {
	defer func(w int64) { mapWindow = w }(mapWindow)
	mapWindow = 256 << 10
	dir := t.TempDir()
	for _, size := range []int{mapMin, mapMin + 1, 3*mapMin + 12345} {
		data := randBytes(uint64(size), size)
		p := filepath.Join(dir, "f")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		want, wn, err := chunkReader(bytes.NewReader(data), make([]byte, 4<<20))
		if err != nil {
			t.Fatal(err)
		}
		got, _, gn, ok := chunkMapped(f, int64(size), nil)
		if !ok || gn != wn || !slices.Equal(got, want) {
			t.Errorf("size %d: mapped gives %d chunks, %d bytes, ok %v; read gives %d, %d", size, len(got), gn, ok, len(want), wn)
		}
		// The file as it was mapped is longer than it is now.
		if _, _, _, ok := chunkMapped(f, int64(size)+1<<20, nil); ok {
			t.Errorf("size %d: chunking past the end is ok", size)
		}
		f.Close()
	}
}
