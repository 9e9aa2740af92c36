package ingress

import (
	"context"
	"encoding/base64"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// TestLoginThrottle: wrong passwords and tokens from one address are
// answered 429 with Retry-After once over the limit, without checking
// them; a user whose password was accepted before, and a right token,
// pass as ever; another address is not held back; the window ends.
func TestLoginThrottle(t *testing.T) {
	be := whoami(t)
	carol, _ := bcrypt.GenerateFromPassword([]byte("pw2"), bcrypt.MinCost)
	f := newIngress(t, Config{Domain: "cloud.test"},
		authBackend("api", be, "https://api.*", AuthLabel, "basic,token",
			AuthBasicLabel, "alice:"+pwHash+",carol:"+string(carol), AuthTokensLabel, "ci:sha256:"+tokenSum("t0ken-of-ci")))
	api := f.url("api.alice.cloud.test", "/v1")
	basic := func(user, pass string) []string {
		return []string{"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))}
	}
	status := func(c *http.Client, hdr []string) (int, string) {
		resp, _ := do(t, c, "GET", api, false, hdr...)
		return resp.StatusCode, resp.Header.Get("Retry-After")
	}
	if s, _ := status(f.client, basic("alice", "pw")); s != 200 {
		t.Fatalf("alice: %d", s)
	}
	for i := 1; i < throttlePerAddr; i++ {
		hdr := basic("alice", "guess"+strconv.Itoa(i))
		if i%2 == 0 {
			hdr = []string{"Authorization", "Bearer guess" + strconv.Itoa(i)}
		}
		if s, _ := status(f.client, hdr); s != 401 {
			t.Fatalf("failure %d: %d, want 401", i, s)
		}
	}
	s, after := status(f.client, basic("alice", "guess"))
	if n, _ := strconv.Atoi(after); s != 429 || n < 1 || n > 60 {
		t.Fatalf("failure %d: %d Retry-After %q, want 429 and 1-60 s", throttlePerAddr, s, after)
	}
	// Held back: not even a right password of a user never seen passes
	// (it is not checked), but those who got in before do.
	for _, c := range []struct {
		what string
		hdr  []string
		want int
	}{
		{"another guess", basic("alice", "guess-again"), 429},
		{"a wrong token", []string{"Authorization", "Bearer nope"}, 429},
		{"carol, never seen", basic("carol", "pw2"), 429},
		{"alice, accepted before", basic("alice", "pw"), 200},
		{"the right token", []string{"Authorization", "Bearer t0ken-of-ci"}, 200},
	} {
		if s, _ := status(f.client, c.hdr); s != c.want {
			t.Errorf("%s: %d, want %d", c.what, s, c.want)
		}
	}
	// Another address is not held back.
	other := &http.Client{Transport: f.client.Transport.(*http.Transport).Clone()}
	other.Transport.(*http.Transport).DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
		_, port, _ := net.SplitHostPort(addr)
		return d.DialContext(ctx, network, "127.0.0.1:"+port)
	}
	if s, _ := status(other, basic("carol", "pw2")); s != 200 {
		t.Errorf("carol from another address: %d", s)
	}
	// The window ends.
	f.proxy.now = func() time.Time { return time.Now().Add(throttleWindow + time.Second) }
	if s, _ := status(f.client, basic("alice", "guess-later")); s != 401 {
		t.Errorf("after the window: %d, want 401", s)
	}
}

// TestThrottleKeys: failures from many addresses add up per route; an IPv6
// client is its /64; other routes are not held back.
func TestThrottleKeys(t *testing.T) {
	var th throttle
	now := time.Now()
	for i := range throttlePerRoute {
		a := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		if w := th.blocked("r1", netip.PrefixFrom(a, 32), now); w != 0 {
			t.Fatalf("failure %d held back", i)
		}
		th.failed("r1", netip.PrefixFrom(a, 32), now)
	}
	fresh := netip.MustParsePrefix("192.0.2.1/32")
	if w := th.blocked("r1", fresh, now); w <= 0 || w > throttleWindow {
		t.Fatalf("route over its limit: wait %v", w)
	}
	if w := th.blocked("r2", fresh, now); w != 0 {
		t.Fatalf("another route held back: %v", w)
	}
	for _, c := range []struct{ remote, want string }{
		{"[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1:2::/64"},
		{"192.0.2.7:1234", "192.0.2.7/32"},
		{"[::ffff:192.0.2.7]:1", "192.0.2.7/32"},
		{"junk", "0.0.0.0/32"},
	} {
		if got := clientPrefix(&http.Request{RemoteAddr: c.remote}); got.String() != c.want {
			t.Errorf("%s: %s, want %s", c.remote, got, c.want)
		}
	}
}
