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
	for i, b := range data[MinChunk:avg] {
		h = h<<1 + gear[b]
		if h&maskHard == 0 {
			return MinChunk + i + 1
		}
	}
	for i, b := range data[avg:n] {
		h = h<<1 + gear[b]
		if h&maskEasy == 0 {
			return avg + i + 1
		}
	}
	return n
}
