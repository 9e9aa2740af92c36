package delta

import "testing"

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
