package auth

import (
	"sync"
	"time"
)

// limiter is a token bucket per remote address that only failed attempts
// drain: an address may fail burst times at once, then once per refill.
type limiter struct {
	burst  float64
	refill time.Duration

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// maxBuckets bounds the memory an address scan can make the limiter use;
// full buckets are dropped first.
const maxBuckets = 10000

func newLimiter(burst int, refill time.Duration) *limiter {
	return &limiter{burst: float64(burst), refill: refill, buckets: map[string]*bucket{}}
}

// level refills b up to now and returns its tokens.
func (l *limiter) level(b *bucket, now time.Time) float64 {
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(l.burst, b.tokens+float64(d)/float64(l.refill))
		b.last = now
	}
	return b.tokens
}

// wait returns how long addr must wait before its next attempt; 0 when it
// may try now.
func (l *limiter) wait(addr string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[addr]
	if b == nil {
		return 0
	}
	t := l.level(b, now)
	if t >= 1 {
		return 0
	}
	return time.Duration((1 - t) * float64(l.refill))
}

// fail takes one token from addr's bucket.
func (l *limiter) fail(addr string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[addr]
	if b == nil {
		if len(l.buckets) >= maxBuckets {
			l.sweep(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[addr] = b
	}
	l.level(b, now)
	b.tokens = max(0, b.tokens-1)
}

// sweep forgets the buckets that are full again, and when that is not
// enough, all of them (an attacker with that many addresses is not slowed
// by a per-address limit anyway).
func (l *limiter) sweep(now time.Time) {
	for a, b := range l.buckets {
		if l.level(b, now) >= l.burst {
			delete(l.buckets, a)
		}
	}
	if len(l.buckets) >= maxBuckets {
		clear(l.buckets)
	}
}
