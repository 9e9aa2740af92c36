package volfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
)

// Ranged I/O. A mount fetches only the byte ranges a reader asks for
// (GET .../data?path=P&off=O&len=N) and writes back only the ranges it
// changed (POST .../write?path=P with a write batch): a batch header,
// then frames of bytes at offsets.
//
//	batch  = magic "VFW1", flags uint32, trunc int64, size int64, frame*
//	frame  = off int64, n uint32, n bytes
//
// Integers are big-endian. The primary applies a batch in order:
// truncate the file to trunc (if not -1), write every frame, set its size
// to size (if not -1), and fsync it if flags has BatchSync. A batch is
// decoded whole before any of it is applied, so a malformed one changes
// nothing.

// Flags of a write batch.
const (
	// BatchSync: fsync the file before answering (the last batch of a
	// flush or fsync; earlier ones of the same write-back skip it, the
	// last one's fsync covers them).
	BatchSync uint32 = 1
)

const (
	batchMagic = "VFW1"
	batchHead  = 4 + 4 + 8 + 8
	frameHead  = 8 + 4
	// MaxFileSize bounds offsets and sizes of the wire (2^50 bytes).
	MaxFileSize = int64(1) << 50
	// MaxFrame bounds one frame's bytes; MaxBatch a batch's (the
	// primary holds one batch in memory while it applies it).
	MaxFrame = 1 << 20
	MaxBatch = 16 << 20
	// MaxFrames bounds a batch's frames.
	MaxFrames = 4096
	// MaxRead bounds one ranged read.
	MaxRead = 16 << 20
)

// Batch is a decoded write batch.
type Batch struct {
	Flags  uint32
	Trunc  int64 // -1: none
	Size   int64 // -1: none
	Frames []Frame
}

// Frame is bytes to write at an offset.
type Frame struct {
	Off  int64
	Data []byte
}

// ErrBadBatch is a write batch that does not decode.
var ErrBadBatch = errors.New("volfs: bad write batch")

// DecodeBatch reads and checks a whole write batch (at most MaxBatch
// bytes of frames).
func DecodeBatch(r io.Reader) (Batch, error) {
	const limit = batchHead + MaxBatch + frameHead*MaxFrames
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return Batch{}, err
	}
	if len(b) > limit {
		return Batch{}, fmt.Errorf("%w: more than %d bytes", ErrBadBatch, limit)
	}
	return decodeBatch(b)
}

func decodeBatch(b []byte) (Batch, error) {
	bad := func(f string, a ...any) (Batch, error) {
		return Batch{}, fmt.Errorf("%w: %s", ErrBadBatch, fmt.Sprintf(f, a...))
	}
	if len(b) < batchHead || string(b[:4]) != batchMagic {
		return bad("no header")
	}
	bt := Batch{
		Flags: binary.BigEndian.Uint32(b[4:]),
		Trunc: int64(binary.BigEndian.Uint64(b[8:])),
		Size:  int64(binary.BigEndian.Uint64(b[16:])),
	}
	if bt.Flags&^BatchSync != 0 {
		return bad("unknown flags %#x", bt.Flags)
	}
	if bt.Trunc < -1 || bt.Trunc > MaxFileSize || bt.Size < -1 || bt.Size > MaxFileSize {
		return bad("size out of range")
	}
	b = b[batchHead:]
	total := 0
	for len(b) > 0 {
		if len(b) < frameHead {
			return bad("short frame")
		}
		off := int64(binary.BigEndian.Uint64(b))
		n := binary.BigEndian.Uint32(b[8:])
		b = b[frameHead:]
		if n == 0 || n > MaxFrame || uint64(n) > uint64(len(b)) {
			return bad("frame of %d bytes", n)
		}
		if off < 0 || off > MaxFileSize-int64(n) {
			return bad("offset out of range")
		}
		if total += int(n); total > MaxBatch || len(bt.Frames) == MaxFrames {
			return bad("more than %d bytes or %d frames", MaxBatch, MaxFrames)
		}
		bt.Frames = append(bt.Frames, Frame{Off: off, Data: b[:n:n]})
		b = b[n:]
	}
	return bt, nil
}

// encodeHead is a batch's header.
func encodeHead(flags uint32, trunc, size int64) []byte {
	h := make([]byte, batchHead)
	copy(h, batchMagic)
	binary.BigEndian.PutUint32(h[4:], flags)
	binary.BigEndian.PutUint64(h[8:], uint64(trunc))
	binary.BigEndian.PutUint64(h[16:], uint64(size))
	return h
}

// batchReader streams a batch whose frames are read from src at their
// offsets (the mount's local copy): a read past src's end gives zeros
// (the copy was truncated while the batch was sent; the next write-back
// carries the truncation).
type batchReader struct {
	head   *bytes.Reader
	src    io.ReaderAt
	frames []span // each at most MaxFrame
	cur    []byte
	buf    []byte
}

func newBatchReader(src io.ReaderAt, flags uint32, trunc, size int64, frames []span) *batchReader {
	return &batchReader{head: bytes.NewReader(encodeHead(flags, trunc, size)), src: src, frames: frames}
}

// batchLen is the encoded length of a batch of frames.
func batchLen(frames []span) int64 {
	n := int64(batchHead)
	for _, f := range frames {
		n += frameHead + f.end - f.off
	}
	return n
}

func (br *batchReader) Read(p []byte) (int, error) {
	if br.head.Len() > 0 {
		return br.head.Read(p)
	}
	for len(br.cur) == 0 {
		if len(br.frames) == 0 {
			return 0, io.EOF
		}
		f := br.frames[0]
		br.frames = br.frames[1:]
		n := int(f.end - f.off)
		if cap(br.buf) < frameHead+n {
			br.buf = make([]byte, frameHead+MaxFrame)
		}
		b := br.buf[:frameHead+n]
		binary.BigEndian.PutUint64(b, uint64(f.off))
		binary.BigEndian.PutUint32(b[8:], uint32(n))
		got, err := br.src.ReadAt(b[frameHead:], f.off)
		if err != nil && err != io.EOF {
			return 0, err
		}
		clear(b[frameHead+got:])
		br.cur = b
	}
	n := copy(p, br.cur)
	br.cur = br.cur[n:]
	return n, nil
}

// span is the byte range [off, end).
type span struct{ off, end int64 }

// spans is a set of byte ranges: sorted, disjoint, not adjacent.
type spans []span

func (s spans) total() int64 {
	var n int64
	for _, x := range s {
		n += x.end - x.off
	}
	return n
}

// add adds [off, end).
func (s spans) add(off, end int64) spans {
	if off >= end {
		return s
	}
	i := sort.Search(len(s), func(i int) bool { return s[i].end >= off })
	j := i
	for j < len(s) && s[j].off <= end {
		off, end = min(off, s[j].off), max(end, s[j].end)
		j++
	}
	return slices.Replace(s, i, j, span{off, end})
}

// remove removes [off, end).
func (s spans) remove(off, end int64) spans {
	if off >= end {
		return s
	}
	var out spans
	for _, x := range s {
		if x.end <= off || x.off >= end {
			out = append(out, x)
			continue
		}
		if x.off < off {
			out = append(out, span{x.off, off})
		}
		if x.end > end {
			out = append(out, span{end, x.end})
		}
	}
	return out
}

// missing are the parts of [off, end) not in s.
func (s spans) missing(off, end int64) spans {
	var out spans
	for _, x := range s[sort.Search(len(s), func(i int) bool { return s[i].end > off }):] {
		if x.off >= end {
			break
		}
		if x.off > off {
			out = append(out, span{off, x.off})
		}
		off = max(off, x.end)
	}
	if off < end {
		out = append(out, span{off, end})
	}
	return out
}

// chunks cuts s into pieces of at most max bytes.
func (s spans) chunks(max int64) []span {
	var out []span
	for _, x := range s {
		for o := x.off; o < x.end; o += max {
			out = append(out, span{o, min(o+max, x.end)})
		}
	}
	return out
}
