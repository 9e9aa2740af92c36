package delta

// Content-defined chunking: a gear rolling hash (h = h<<1 + gear[byte], so
// the top bits of h depend on the last 64 bytes) cuts where its top bits
// are zero. Cuts are normalized as in FastCDC: before the average size a
// harder condition (more bits), after it an easier one, so chunk sizes
// gather around the average.

const (
	// MinChunk, AvgChunk and MaxChunk bound the chunks' sizes.
	MinChunk = 1 << 10
	AvgChunk = 4 << 10
	MaxChunk = 32 << 10

	maskHard = uint64(1<<14-1) << (64 - 14) // before AvgChunk: the top 14 bits
	maskEasy = uint64(1<<10-1) << (64 - 10) // after it: the top 10 bits
)

// gear maps a byte to a pseudo-random 64-bit value (splitmix64 of a fixed
// seed): sender and receiver must agree, so it never changes.
var gear = func() (g [256]uint64) {
	x := uint64(0x6d6163726f2d6364) // "macro-cd"
	for i := range g {
		x += 0x9e3779b97f4a7c15
		z := x
		z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
		z = (z ^ z>>27) * 0x94d049bb133111eb
		g[i] = z ^ z>>31
	}
	return g
}()

// cut returns the length of the first chunk of data. data holds at least
// MaxChunk bytes unless it is the end of the file. The loops range over
// subslices, so that the compiler drops every bounds check (this loop is
// the sender's hottest after the hash).
func cut(data []byte) int {
	n := len(data)
	if n <= MinChunk {
		return n
	}
	if n > MaxChunk {
		n = MaxChunk
	}
	avg := AvgChunk
	if avg > n {
		avg = n
	}
	var h uint64
	// The hash needs 64 bytes of history to be a function of the window
	// only; start 64 bytes before MinChunk.
	for _, b := range data[MinChunk-64 : MinChunk] {
		h = h<<1 + gear[b]
	}
	i, h := scanCut(data[MinChunk:avg], h, maskHard)
	if i >= 0 {
		return MinChunk + i + 1
	}
	if i, _ = scanCut(data[avg:n], h, maskEasy); i >= 0 {
		return avg + i + 1
	}
	return n
}

// scanCut runs the gear hash over data from h and returns the index of
// the first byte after which h&mask is zero (-1 if none) with the hash
// there. Four bytes a step: the hash after each of them is computed from
// the hash before the four (h<<k plus the bytes' shifted gears), so the
// loop's chain of dependent operations is a quarter as long as byte by
// byte; the cut points are the same.
func scanCut(data []byte, h, mask uint64) (int, uint64) {
	i := 0
	for ; i+3 < len(data); i += 4 {
		g0, g1, g2, g3 := gear[data[i]], gear[data[i+1]], gear[data[i+2]], gear[data[i+3]]
		t1 := g0<<1 + g1
		t2 := t1<<1 + g2
		h1 := h<<1 + g0
		h2 := h<<2 + t1
		h3 := h<<3 + t2
		h4 := h<<4 + (t2<<1 + g3)
		if h1&mask != 0 && h2&mask != 0 && h3&mask != 0 && h4&mask != 0 {
			h = h4
			continue
		}
		switch {
		case h1&mask == 0:
			return i, h1
		case h2&mask == 0:
			return i + 1, h2
		case h3&mask == 0:
			return i + 2, h3
		default:
			return i + 3, h4
		}
	}
	for ; i < len(data); i++ {
		h = h<<1 + gear[data[i]]
		if h&mask == 0 {
			return i, h
		}
	}
	return -1, h
}
