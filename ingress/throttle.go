package ingress

import (
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// Throttling of failed logins (basic and bearer) on authenticated routes.
//
// Failures are counted per client address (an IPv6 client by its /64) and
// route, and per route from all addresses, in windows of a minute. Once a
// count is over its limit, a request with credentials this ingress has not
// accepted before gets 429 with Retry-After until the window ends, and its
// password is not even checked (no guesses, no bcrypt to burn CPU with).
// A client whose credentials were accepted before passes as ever: a guesser
// never slows the users who already got in. A bearer token is checked
// before the throttle (a SHA-256 compare, no CPU to burn), so a right one
// always passes; wrong ones count.
const (
	throttleWindow   = time.Minute
	throttlePerAddr  = 10  // failures per client address and route per window
	throttlePerRoute = 100 // failures per route, all addresses, per window
	throttleMaxKeys  = 1 << 16
)

type throttle struct {
	mu   sync.Mutex
	fail map[throttleKey]*failCount
}

type throttleKey struct {
	route string
	addr  netip.Prefix // invalid: the route's count over all addresses
}

type failCount struct {
	n     int
	start time.Time
}

// clientPrefix is who a request comes from for throttling: its IPv4
// address, or its IPv6 /64 (one subscriber's range).
func clientPrefix(r *http.Request) netip.Prefix {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.PrefixFrom(netip.IPv4Unspecified(), 32)
	}
	a = a.Unmap()
	if a.Is4() {
		return netip.PrefixFrom(a, 32)
	}
	p, _ := a.WithZone("").Prefix(64)
	return p
}

func routeKey(r *Route) string { return r.Tenant + "\x00" + r.Host + "\x00" + r.Path }

// blocked says how long the client must wait before its next login attempt
// on route is checked; 0 when it may try now.
func (t *throttle) blocked(route string, addr netip.Prefix, now time.Time) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	var wait time.Duration
	for _, k := range []throttleKey{{route, addr}, {route: route}} {
		limit := throttlePerAddr
		if !k.addr.IsValid() {
			limit = throttlePerRoute
		}
		if c := t.fail[k]; c != nil && c.n >= limit {
			if left := c.start.Add(throttleWindow).Sub(now); left > wait {
				wait = left
			}
		}
	}
	return wait
}

// failed counts a failed login.
func (t *throttle) failed(route string, addr netip.Prefix, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.fail == nil {
		t.fail = map[throttleKey]*failCount{}
	}
	if len(t.fail) >= throttleMaxKeys {
		for k, c := range t.fail {
			if now.Sub(c.start) >= throttleWindow {
				delete(t.fail, k)
			}
		}
		if len(t.fail) >= throttleMaxKeys {
			// Addresses beyond count: keep the routes' own counts, which
			// still bound the guessing.
			for k := range t.fail {
				if k.addr.IsValid() {
					delete(t.fail, k)
				}
			}
		}
	}
	for _, k := range []throttleKey{{route, addr}, {route: route}} {
		c := t.fail[k]
		if c == nil || now.Sub(c.start) >= throttleWindow {
			c = &failCount{start: now}
			t.fail[k] = c
		}
		c.n++
	}
}

// tooMany answers 429 with the seconds to wait.
func tooMany(w http.ResponseWriter, wait time.Duration) {
	secs := int((wait + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
	authPage(w, http.StatusTooManyRequests, "Too many failed sign-ins",
		"Too many wrong passwords or tokens came for this app; try again in "+strconv.Itoa(max(secs, 1))+" s.", false)
}
