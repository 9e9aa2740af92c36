package ingress

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

// discardWriter is a ResponseWriter that keeps nothing.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(int)             {}

// BenchmarkProxyServeHTTP is the proxy's own path for a 1 KiB response
// over a kept-alive backend connection (bench/ingress.sh measures it beside
// Caddy): its allocations are what the GC pays per request.
func BenchmarkProxyServeHTTP(b *testing.B) {
	body := strings.Repeat("x", 1024)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		io.WriteString(w, body)
	}))
	defer be.Close()
	ap := netip.MustParseAddrPort(be.Listener.Addr().String())
	p := NewProxy(Options{}, nil, slog.New(slog.DiscardHandler))
	p.SetTable(Build(Config{Verified: map[string][]string{"bench": {"bench.test"}}}, []Backend{{
		Tenant: "bench", Pod: "backend", Created: time.Now(), Addr: ap.Addr(), Ready: true,
		Labels: map[string]string{"kr.ingress." + strconv.Itoa(int(ap.Port())): "http://bench.test"},
	}}))
	defer p.Close()
	req := httptest.NewRequest("GET", "http://bench.test/", nil)
	req.RemoteAddr = "127.0.0.1:5555"
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		clear(w.h)
		p.ServeHTTP(w, req)
	}
}
