package ingress

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DomainCheckPath is where the HTTP check of a custom domain claim fetches
// the claim's token (api/domains_http.go); the ingress never serves it.
const DomainCheckPath = "/.well-known/macro-domain/"

// IdentityHeader carries the authenticated identity to a backend. The
// proxy removes it from every incoming request, so a backend can trust it.
const IdentityHeader = "X-Macro-User"

// Waker thaws a suspended pod; Wake returns once it runs again.
type Waker interface {
	Wake(ctx context.Context, tenant, pod string) error
}

// Options bound what the proxy accepts.
type Options struct {
	// MaxBodyBytes bounds a request body; 0 means 256 MiB.
	MaxBodyBytes int64
	// HTTPSPort is the public port of HTTPS, for redirects; 443 is left out
	// of the URL.
	HTTPSPort int
	// DialTimeout bounds connecting to a backend; 0 means 5 s.
	DialTimeout time.Duration
	// WakeTimeout bounds waiting for a suspended pod; 0 means 30 s.
	WakeTimeout time.Duration
	// Dial connects to a pod address; nil means a plain net.Dialer. The
	// node's network passes one that dials from inside its router, where
	// the pod addresses are routed.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Node is the node this ingress runs on: pods of other nodes are
	// reached through DialRemote (when it is set; else with Dial, as local
	// ones, which works where the nodes' networks route each other's pods).
	Node string
	// DialRemote connects to port of a pod of tenant on another node (the
	// node's tunnel: the node's agent dials and splices).
	DialRemote func(ctx context.Context, node, tenant, pod string, port int) (net.Conn, error)
	// Backoff is how long a pod whose dial failed gets no new requests
	// while another replica is ready (passive health check); 0 means 5 s.
	Backoff time.Duration
	// OIDC is the provider of routes with kr.ingress.auth=oidc; nil: such
	// routes cannot log anyone in (bearer and basic still work).
	OIDC *OIDCConfig
	// SessionSecret keys the login cookies (32 random bytes); every
	// ingress of a cluster needs the same one for a login to hold on all
	// of them. Empty: a random secret, so logins end with the process.
	SessionSecret []byte
	// ACMEChallenge answers /.well-known/acme-challenge/ on plain HTTP
	// (ACME's HTTP-01), before routing; nil: such requests are routed.
	ACMEChallenge http.Handler
}

// Proxy is the HTTP side of the ingress: an http.Handler that routes by
// host and path through the current Table.
type Proxy struct {
	table     atomic.Pointer[Table]
	opts      Options
	waker     Waker
	log       *slog.Logger
	transport *http.Transport
	// remoteTransport reaches pods of other nodes: its idle connections
	// close after 2 s, since the node counts an open one as traffic that
	// keeps the pod from being suspended.
	remoteTransport *http.Transport
	proxies         sync.Map // targetKey -> *httputil.ReverseProxy
	remotes         sync.Map // dial host of a pod on another node -> remoteTarget
	remoteN         atomic.Uint64
	health          health
	auth            *authState
	now             func() time.Time
	Activity        *Activity
}

// NewProxy makes a proxy with an empty table. waker may be nil: suspended
// pods are then not served.
func NewProxy(opts Options, waker Waker, log *slog.Logger) *Proxy {
	if opts.MaxBodyBytes == 0 {
		opts.MaxBodyBytes = 256 << 20
	}
	if opts.HTTPSPort == 0 {
		opts.HTTPSPort = 443
	}
	if opts.DialTimeout == 0 {
		opts.DialTimeout = 5 * time.Second
	}
	if opts.WakeTimeout == 0 {
		opts.WakeTimeout = 30 * time.Second
	}
	if opts.Backoff == 0 {
		opts.Backoff = 5 * time.Second
	}
	if opts.Dial == nil {
		opts.Dial = (&net.Dialer{Timeout: opts.DialTimeout, KeepAlive: 30 * time.Second}).DialContext
	}
	p := &Proxy{opts: opts, waker: waker, log: log, now: time.Now, Activity: NewActivity()}
	p.auth = newAuthState(opts, func() time.Time { return p.now() })
	p.transport = &http.Transport{
		DialContext:           p.dial,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 0, // streaming backends answer when they like
		ExpectContinueTimeout: time.Second,
		ForceAttemptHTTP2:     false, // backends speak HTTP/1.1 (h2c is not assumed)
	}
	p.remoteTransport = p.transport.Clone()
	p.remoteTransport.IdleConnTimeout = 2 * time.Second
	p.table.Store(Build(Config{}, nil))
	return p
}

// SetTable replaces the routing table; requests in flight keep the old one.
// Reverse proxies of targets that left the table are dropped.
func (p *Proxy) SetTable(t *Table) {
	p.table.Store(t)
	live := map[string]bool{} // targetKey: the reverse proxies to keep
	pods := map[string]bool{} // pods: the activity records to keep
	for _, r := range t.Routes() {
		for _, tg := range r.Targets {
			live[targetKey(tg)] = true
			pods[tg.Pod] = true
		}
	}
	p.proxies.Range(func(k, v any) bool {
		if !live[k.(string)] {
			p.proxies.Delete(k)
			if h := v.(*targetProxy).dialHost; h != "" {
				p.remotes.Delete(h)
			}
		}
		return true
	})
	for _, port := range t.TCPPorts() {
		for _, tg := range t.TCP(port).Targets {
			pods[tg.Pod] = true
		}
	}
	p.Activity.forget(pods)
	p.health.forget(pods)
}

// Table is the current routing table.
func (p *Proxy) Table() *Table { return p.table.Load() }

// Close drops idle connections to backends.
func (p *Proxy) Close() {
	p.transport.CloseIdleConnections()
	p.remoteTransport.CloseIdleConnections()
}

// requestHost is the host a request is for: lower case, without port.
func requestHost(r *http.Request) string {
	h := r.Host
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect {
		page(w, http.StatusMethodNotAllowed, "CONNECT is not served here", "This is an ingress, not a forward proxy.")
		return
	}
	host := requestHost(r)
	table := p.table.Load()
	if r.TLS == nil && p.opts.ACMEChallenge != nil && strings.HasPrefix(r.URL.Path, "/.well-known/acme-challenge/") {
		p.opts.ACMEChallenge.ServeHTTP(w, r)
		return
	}
	if strings.HasPrefix(r.URL.Path, DomainCheckPath) {
		// Never a pod's: no tenant proves a domain through this cloud.
		page(w, http.StatusNotFound, "Not found", "This path proves custom domains to their cloud; the ingress serves it for no app.")
		return
	}
	if strings.HasPrefix(r.URL.Path, "/.macro/") && table.HasOIDC(host) {
		if r.TLS == nil {
			p.redirect(w, r, host)
		} else {
			p.serveReserved(w, r, host)
		}
		return
	}
	route := table.Lookup(host, r.URL.Path)
	if route == nil {
		page(w, http.StatusNotFound, "Not found", fmt.Sprintf("No app is served at %s.", host))
		return
	}
	if route.HTTPS && r.TLS == nil {
		p.redirect(w, r, host)
		return
	}
	if route.Auth != nil {
		if r.TLS == nil { // ParseLabels allows no such route; never send credentials in clear
			page(w, http.StatusForbidden, "HTTPS required", "This app is served over HTTPS only.")
			return
		}
		id, ok := p.authenticate(w, r, host, route)
		if !ok {
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), identityKey{}, id))
	}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = http.MaxBytesReader(w, r.Body, p.opts.MaxBodyBytes)
	}
	// A request whose backend could not be dialled (nothing was sent) goes
	// to another replica: one try per target, at most three.
	tries := min(len(route.Targets), 3)
	var rw *retryWriter
	if tries > 1 {
		rw = &retryWriter{ResponseWriter: w}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = keepOpen{r.Body} // the transport closes it on a failed dial
		}
	}
	for try := 1; ; try++ {
		t, ok := p.pick(r.Context(), route)
		if !ok {
			page(w, http.StatusBadGateway, "Bad gateway", fmt.Sprintf("No backend of %s is up.", host))
			return
		}
		pa, err := p.enter(r.Context(), route.Tenant, t.Pod)
		if err != nil {
			page(w, http.StatusBadGateway, "Bad gateway", fmt.Sprintf("The app of %s could not be woken.", host))
			return
		}
		if rw == nil {
			serveTo(p.proxyFor(t), pa, w, r)
			return
		}
		rw.retry = try < tries
		rw.failed = false
		serveTo(p.proxyFor(t), pa, rw, r)
		if !rw.failed {
			return
		}
	}
}

// serveTo proxies r to a target and ends its activity record, also when
// the reverse proxy aborts the handler (http.ErrAbortHandler, a client or
// backend gone mid-response).
func serveTo(tp *targetProxy, pa *podActivity, w http.ResponseWriter, r *http.Request) {
	defer pa.end()
	tp.ServeHTTP(w, r)
}

// retryWriter lets the error handler of a reverse proxy ask for another
// try instead of answering, when the backend could not be dialled.
type retryWriter struct {
	http.ResponseWriter
	retry  bool // another try is allowed
	failed bool // the error handler asked for it
}

func (w *retryWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// keepOpen is a request body that a failed try does not close.
type keepOpen struct{ io.ReadCloser }

func (keepOpen) Close() error { return nil }

// redirect sends a plain HTTP request of an HTTPS route to HTTPS.
func (p *Proxy) redirect(w http.ResponseWriter, r *http.Request, host string) {
	u := url.URL{Scheme: "https", Host: host, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
	if p.opts.HTTPSPort != 443 {
		u.Host = net.JoinHostPort(host, strconv.Itoa(p.opts.HTTPSPort))
	}
	if strings.Contains(host, ":") { // an IPv6 literal
		u.Host = net.JoinHostPort(host, strconv.Itoa(p.opts.HTTPSPort))
	}
	// 308 keeps the method and body, as Caddy does.
	http.Redirect(w, r, u.String(), http.StatusPermanentRedirect)
}

// pick chooses a target round robin among the ready ones; when none is
// ready it wakes a suspended one.
func (p *Proxy) pick(ctx context.Context, route *Route) (Target, bool) {
	return p.pickOf(ctx, route.Tenant, route.Targets, &route.next)
}

// pickOf chooses among targets, counting turns in next; it allocates
// nothing on the way of a request to a ready pod.
func (p *Proxy) pickOf(ctx context.Context, tenant string, targets []Target, next *atomic.Uint64) (Target, bool) {
	n := next.Add(1)
	ready, suspended, up, starting := 0, 0, 0, 0
	checkDown := p.health.any()
	for i := range targets {
		t := &targets[i]
		switch {
		case !t.Addr.IsValid():
		case t.Ready && !t.Suspended:
			ready++
			if checkDown && !p.health.isDown(t.Pod, p.now()) {
				up++
			}
		case t.Suspended:
			suspended++
		case t.Starting:
			starting++
		}
	}
	if checkDown && up > 0 && up < ready {
		// Pods whose dial failed lately are left out while others are up.
		now := p.now()
		return nthTarget(targets, int(n%uint64(up)), func(t *Target) bool {
			return t.Ready && !t.Suspended && !p.health.isDown(t.Pod, now)
		}), true
	}
	if ready > 0 {
		return nthTarget(targets, int(n%uint64(ready)), func(t *Target) bool { return t.Ready && !t.Suspended }), true
	}
	if starting > 0 {
		// Better a replica whose healthcheck has not answered yet (a
		// first probe comes after its interval, 30 s by default) than
		// none.
		return nthTarget(targets, int(n%uint64(starting)), func(t *Target) bool { return t.Starting && !t.Ready && !t.Suspended }), true
	}
	if suspended == 0 || p.waker == nil {
		return Target{}, false
	}
	t := nthTarget(targets, int(n%uint64(suspended)), func(t *Target) bool { return t.Suspended })
	ctx, cancel := context.WithTimeout(ctx, p.opts.WakeTimeout)
	defer cancel()
	if err := p.waker.Wake(ctx, tenant, t.Pod); err != nil {
		p.log.Warn("wake", "pod", t.Pod, "err", err)
		return Target{}, false
	}
	return t, true
}

// nthTarget is the k-th of targets (with an address) that want accepts.
func nthTarget(targets []Target, k int, want func(*Target) bool) Target {
	for i := range targets {
		if t := &targets[i]; t.Addr.IsValid() && want(t) {
			if k == 0 {
				return *t
			}
			k--
		}
	}
	return Target{}
}

// targetKey names a target's reverse proxy: pod, address and node.
func targetKey(t Target) string { return t.Pod + "\x00" + t.Addr.String() + "\x00" + t.Node }

// targetProxy is the reverse proxy of one target.
type targetProxy struct {
	httputil.ReverseProxy
	// dialHost is the URL host of a pod on another node, which the
	// transport's dial looks up in remotes ("" for a local pod).
	dialHost string
}

// proxyFor returns the reverse proxy of a target, made once per pod,
// address and node; the table's target keeps it at hand, so a request
// builds no key.
func (p *Proxy) proxyFor(t Target) *targetProxy {
	if t.rp != nil {
		if tp := t.rp.Load(); tp != nil {
			return tp
		}
	}
	var tp *targetProxy
	if v, ok := p.proxies.Load(targetKey(t)); ok {
		tp = v.(*targetProxy)
	} else {
		tp = p.reverseProxy(t)
		v, loaded := p.proxies.LoadOrStore(targetKey(t), tp)
		if loaded && tp.dialHost != "" {
			p.remotes.Delete(tp.dialHost)
		}
		tp = v.(*targetProxy)
	}
	if t.rp != nil {
		t.rp.Store(tp)
	}
	return tp
}

func (p *Proxy) reverseProxy(t Target) *targetProxy {
	tp := &targetProxy{}
	host := t.Addr.String()
	transport := p.transport
	if p.remote(t) {
		transport = p.remoteTransport
		// A host of its own per pod: the transport pools connections by
		// host, and a tunnel to one pod must never carry another's
		// requests (IPv4 addresses repeat across tenants).
		tp.dialHost = fmt.Sprintf("r%d.node.invalid:%d", p.remoteN.Add(1), t.Port)
		host = tp.dialHost
		p.remotes.Store(tp.dialHost, remoteTarget{node: t.Node, pod: t.Pod, port: t.Port, tenant: t.Tenant})
	}
	tp.ReverseProxy = httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = host
			pr.Out.Host = pr.In.Host
			stripTrusted(pr.Out.Header)
			if id, ok := pr.In.Context().Value(identityKey{}).(identity); ok {
				setIdentity(pr.Out.Header, id)
			}
			pr.SetXForwarded()
		},
		Transport:  transport,
		BufferPool: copyBuffers,
		// 0: a response of unknown length or text/event-stream is flushed
		// as it comes (streams, long polls); others are written in one go.
		FlushInterval: 0,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				page(w, http.StatusRequestEntityTooLarge, "Request too large", fmt.Sprintf("The body is limited to %d bytes.", mbe.Limit))
				return
			}
			if r.Context().Err() != nil {
				return // the client went away
			}
			var de *dialError
			if errors.As(err, &de) {
				p.health.failed(t.Pod, p.now().Add(p.opts.Backoff))
				if rw, ok := w.(*retryWriter); ok && rw.retry {
					p.log.Info("backend down; trying another", "pod", t.Pod, "node", t.Node, "err", err)
					rw.failed = true
					return
				}
			}
			p.log.Info("backend", "pod", t.Pod, "addr", t.Addr, "node", t.Node, "err", err)
			page(w, http.StatusBadGateway, "Bad gateway", "The app did not answer.")
		},
	}
	return tp
}

// copyBuffers are the reverse proxies' copy buffers: without a pool each
// response allocated 32 KiB, most of the garbage of a request.
var copyBuffers = &bufferPool{}

type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[32 << 10]byte); ok {
		return v[:]
	}
	return new([32 << 10]byte)[:]
}

func (b *bufferPool) Put(buf []byte) {
	if cap(buf) == 32<<10 {
		b.p.Put((*[32 << 10]byte)(buf[:cap(buf)]))
	}
}

// page writes a small HTML error page.
func page(w http.ResponseWriter, status int, title, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	fmt.Fprintf(w, "<!doctype html>\n<title>%d %s</title>\n<h1>%s</h1>\n<p>%s</p>\n",
		status, html.EscapeString(title), html.EscapeString(title), html.EscapeString(msg))
}

// Server wraps a handler in an http.Server with the ingress's limits:
// bounded headers and slow-client timeouts (a request's headers must arrive
// within 10 s; an idle keep-alive connection closes after 2 minutes).
// Bodies and responses are not time-bounded, so uploads and streams work.
// The server's own errors (failed handshakes) go to log at debug level.
func Server(h http.Handler, tlsConfig *tls.Config, log *slog.Logger) *http.Server {
	return &http.Server{
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		Handler:           h,
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
}

// Activity counts requests in flight and the last request per pod, which
// auto-suspend reads to tell idle pods.
type Activity struct {
	mu   sync.RWMutex
	pods map[string]*podActivity
}

type podActivity struct {
	inFlight atomic.Int64
	last     atomic.Int64 // unix nanoseconds of the last start or end
	requests atomic.Uint64
	// gate is held shared by every request and connection to the pod for
	// as long as it lasts, and exclusively by the suspender while it
	// freezes the pod: a pod is never frozen under a request, and a
	// request that comes during a freeze waits for it, then wakes the pod.
	gate sync.RWMutex
	// frozen is set by the suspender once it froze the pod through this
	// proxy; the next request wakes it.
	frozen atomic.Bool
}

// NewActivity returns an empty tracker.
func NewActivity() *Activity { return &Activity{pods: map[string]*podActivity{}} }

func (a *Activity) of(pod string) *podActivity {
	a.mu.RLock()
	pa := a.pods[pod]
	a.mu.RUnlock()
	if pa != nil {
		return pa
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if pa = a.pods[pod]; pa == nil {
		pa = &podActivity{}
		a.pods[pod] = pa
	}
	return pa
}

// Begin records a request to pod; the function it returns ends it (call
// it once). While it lasts, the pod is not frozen.
func (a *Activity) Begin(pod string) (end func()) { return a.begin(pod).end }

func (a *Activity) begin(pod string) *podActivity {
	pa := a.of(pod)
	pa.gate.RLock()
	pa.inFlight.Add(1)
	pa.requests.Add(1)
	pa.last.Store(time.Now().UnixNano())
	return pa
}

func (pa *podActivity) end() {
	pa.last.Store(time.Now().UnixNano())
	pa.inFlight.Add(-1)
	pa.gate.RUnlock()
}

// enter begins a request to pod and wakes the pod first when the
// suspender froze it (the table may not say so yet); the caller ends the
// request with end.
func (p *Proxy) enter(ctx context.Context, tenant, pod string) (*podActivity, error) {
	pa := p.Activity.begin(pod)
	if pa.frozen.Load() {
		if p.waker == nil {
			pa.end()
			return nil, fmt.Errorf("pod %s is suspended and nothing can wake it", pod)
		}
		ctx, cancel := context.WithTimeout(ctx, p.opts.WakeTimeout)
		defer cancel()
		if err := p.waker.Wake(ctx, tenant, pod); err != nil {
			p.log.Warn("wake", "pod", pod, "err", err)
			pa.end()
			return nil, err
		}
		pa.frozen.Store(false)
	}
	return pa, nil
}

// freeze runs suspend with the pod's gate held exclusively, if no request
// or connection holds it and the pod was idle since before since; it
// reports whether it froze the pod.
func (a *Activity) freeze(pod string, since time.Time, suspend func() error) (bool, error) {
	pa := a.of(pod)
	if !pa.gate.TryLock() {
		return false, nil // in use
	}
	defer pa.gate.Unlock()
	if !pa.idleSince(since) {
		return false, nil
	}
	if err := suspend(); err != nil {
		return false, err
	}
	pa.frozen.Store(true)
	return true, nil
}

// Idle reports whether pod has had no request in flight since before t.
func (a *Activity) Idle(pod string, since time.Time) bool {
	a.mu.RLock()
	pa := a.pods[pod]
	a.mu.RUnlock()
	return pa == nil || pa.idleSince(since)
}

// idleSince is true when nothing is in flight and nothing began or ended
// since.
func (pa *podActivity) idleSince(since time.Time) bool {
	return pa.inFlight.Load() == 0 && pa.last.Load() < since.UnixNano()
}

// forget drops the records of pods not in keep that have nothing in
// flight (pods that left the ingress).
func (a *Activity) forget(keep map[string]bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for pod, pa := range a.pods {
		if !keep[pod] && pa.inFlight.Load() == 0 {
			delete(a.pods, pod)
		}
	}
}

// Requests is the number of requests pod has had through this proxy.
func (a *Activity) Requests(pod string) uint64 {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if pa := a.pods[pod]; pa != nil {
		return pa.requests.Load()
	}
	return 0
}
