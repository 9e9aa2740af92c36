package delta

import (
	"bytes"
	"testing"
)

func BenchmarkChunker(b *testing.B) {
	data := randBytes(1, 64<<20)
	buf := make([]byte, 4<<20)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		chunkReader(bytes.NewReader(data), buf)
	}
}

func BenchmarkCut(b *testing.B) {
	data := randBytes(1, 64<<20)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		for p := 0; p < len(data); {
			p += cut(data[p:min(len(data), p+MaxChunk)])
		}
	}
}

func BenchmarkSum4K(b *testing.B) {
	data := randBytes(1, 4<<10)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		Sum(data)
	}
}

func BenchmarkSum64K(b *testing.B) {
	data := randBytes(1, 64<<10)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		Sum(data)
	}
}
