package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/macro-cloud/macro/agent"
	"github.com/macro-cloud/macro/auth"
	"github.com/macro-cloud/macro/ingress"
	"github.com/macro-cloud/macro/nodeproto"
	"github.com/macro-cloud/macro/store"
	"github.com/macro-cloud/macro/types"
)

// ingressConfig is the ingress's part of the server's flags.
type ingressConfig struct {
	httpAddr, httpsAddr string
	httpSet, httpsSet   bool // given on the command line: failing to listen is fatal
	domain              string
	// dial reaches pod addresses (nil: from the host).
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// node is this server's own node, whose pods dial reaches ("" when it
	// runs no agent); pods of other nodes are reached through their tunnels.
	node    string
	dataDir string // set by runServer

	// Authenticated ingress (kr.ingress.auth=oidc).
	oidcIssuer, oidcClientID, oidcSecretFile, oidcCABundle string
	sessionKeyFile                                         string
	// ACME instead of the internal CA.
	acmeDirectory, acmeEmail, acmeCABundle, acmeChallenge string
}

// addFlags declares the ingress's flags beyond its listeners.
func (c *ingressConfig) addFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.oidcIssuer, "oidc-issuer", "", "OpenID Connect provider (issuer URL, discovery) that routes with kr.ingress.auth=oidc log users in with; it must accept https://HOST/.macro/oidc/callback as a redirect URI")
	fs.StringVar(&c.oidcClientID, "oidc-client-id", "", "client ID of the ingress at the OIDC provider")
	fs.StringVar(&c.oidcSecretFile, "oidc-client-secret-file", "", "file holding the client secret of the ingress at the OIDC provider")
	fs.StringVar(&c.oidcCABundle, "oidc-ca-bundle", "", "PEM file of CAs to trust for the OIDC provider (default: the system's)")
	fs.StringVar(&c.sessionKeyFile, "ingress-session-key", "", "file with the secret that seals login cookies, created if missing (default: one secret for the whole cluster, kept sealed in the store)")
	fs.StringVar(&c.acmeDirectory, "acme-directory", "", "ACME directory URL: HTTPS certificates of routed hosts come from this CA (HTTP-01 on the HTTP ingress) instead of the cluster's internal CA")
	fs.StringVar(&c.acmeEmail, "acme-email", "", "contact address of the ACME account")
	fs.StringVar(&c.acmeCABundle, "acme-ca-bundle", "", "PEM file of CAs to trust for the ACME directory (default: the system's)")
	fs.StringVar(&c.acmeChallenge, "acme-challenge", "", "how the ACME CA checks a host: http-01 (on the HTTP ingress) or tls-alpn-01 (on the HTTPS ingress) (default http-01, tls-alpn-01 when the HTTP ingress is off)")
}

// httpClientTrusting is a client that trusts the CAs in the PEM file
// bundle; the default client when bundle is empty.
func httpClientTrusting(bundle string) (*http.Client, error) {
	if bundle == "" {
		return http.DefaultClient, nil
	}
	b, err := os.ReadFile(bundle)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: no PEM certificate", bundle)
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{RootCAs: pool}
	return &http.Client{Transport: t, Timeout: time.Minute}, nil
}

// authOptions turns the OIDC flags into proxy options. The session secret
// is the cluster's, in shared (made by the first server that needs it),
// unless --ingress-session-key names a file; without shared it is kept in
// DATA-DIR/ingress/session.key.
func (c ingressConfig) authOptions(opts *ingress.Options, shared ingress.State) error {
	var secret []byte
	var err error
	switch {
	case c.sessionKeyFile != "" || shared == nil:
		keyFile := c.sessionKeyFile
		if keyFile == "" {
			keyFile = filepath.Join(c.dataDir, "ingress", "session.key")
		}
		secret, err = loadOrCreateSecret(keyFile)
	default:
		secret, err = sharedSecret(shared, filepath.Join(c.dataDir, "ingress", "session.key"))
	}
	if err != nil {
		return fmt.Errorf("ingress session key: %w", err)
	}
	opts.SessionSecret = secret
	if c.oidcIssuer == "" {
		if c.oidcClientID != "" || c.oidcSecretFile != "" {
			return errors.New("--oidc-client-id and --oidc-client-secret-file need --oidc-issuer")
		}
		return nil
	}
	if c.oidcClientID == "" || c.oidcSecretFile == "" {
		return errors.New("--oidc-issuer needs --oidc-client-id and --oidc-client-secret-file")
	}
	b, err := os.ReadFile(c.oidcSecretFile)
	if err != nil {
		return fmt.Errorf("oidc client secret: %w", err)
	}
	client, err := httpClientTrusting(c.oidcCABundle)
	if err != nil {
		return fmt.Errorf("--oidc-ca-bundle: %w", err)
	}
	opts.OIDC = &ingress.OIDCConfig{Issuer: c.oidcIssuer, ClientID: c.oidcClientID, ClientSecret: strings.TrimSpace(string(b)), HTTPClient: client}
	return nil
}

// sharedSecret is the session secret of the cluster in shared: the first
// server to start with this code stores its own old secret file, if it has
// one (logins made before go on), else 32 random bytes; the others take it.
func sharedSecret(shared ingress.State, oldFile string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := shared.Get(ctx, "session.key")
	if err == nil {
		return b, nil
	}
	if !errors.Is(err, ingress.ErrNoState) {
		return nil, err
	}
	mine, err := os.ReadFile(oldFile)
	if err != nil || len(mine) < 32 {
		mine = make([]byte, 32)
		if _, err := rand.Read(mine); err != nil {
			return nil, err
		}
	}
	return shared.Create(ctx, "session.key", mine)
}

// loadOrCreateSecret reads 32 bytes or more from path, or writes 32
// random ones there (0600) when it does not exist.
func loadOrCreateSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		if len(b) < 32 {
			return nil, fmt.Errorf("%s: shorter than 32 bytes", path)
		}
		return b, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	b = make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return loadOrCreateSecret(path)
		}
		return nil, err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return nil, err
	}
	return b, f.Close()
}

// runIngress serves the ingress until ctx ends: HTTP and HTTPS listeners,
// the routing table fed from the store, raw TCP ports as routes claim
// them, and auto-suspend of idle pods through the node agent.
func runIngress(ctx context.Context, cfg ingressConfig, st *store.Store, ca *auth.CA, ag *agent.Agent, tunnels *nodeproto.Tunnels, log *slog.Logger) ([]*http.Server, error) {
	log = log.With("subsystem", "ingress")
	listen := func(addr string, set bool, what string) (net.Listener, error) {
		if addr == "" || addr == "off" {
			return nil, nil
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			if set {
				return nil, err
			}
			log.Warn("ingress "+what+" is off: cannot listen on the default address (choose one with --ingress-"+what+")", "addr", addr, "err", err)
			return nil, nil
		}
		return l, nil
	}
	hl, err := listen(cfg.httpAddr, cfg.httpSet, "http")
	if err != nil {
		return nil, err
	}
	tl, err := listen(cfg.httpsAddr, cfg.httpsSet, "https")
	if err != nil {
		if hl != nil {
			hl.Close()
		}
		return nil, err
	}
	closeAll := func() {
		for _, l := range []net.Listener{hl, tl} {
			if l != nil {
				l.Close()
			}
		}
	}
	// Without listeners the feed still runs: auto-suspend needs no traffic.
	nodes := &ingressNodes{local: cfg.node, ag: ag, tunnels: tunnels}
	opts := ingress.Options{Dial: cfg.dial, Node: cfg.node, DialRemote: nodes.dial}
	if tl != nil {
		opts.HTTPSPort = tl.Addr().(*net.TCPAddr).Port
	}
	shared, err := newIngressState(st, ca)
	if err != nil {
		closeAll()
		return nil, err
	}
	if err := cfg.authOptions(&opts, shared); err != nil {
		closeAll()
		return nil, err
	}
	issue := func(host string) (tls.Certificate, error) { return ca.ServerCert([]string{host}, time.Now()) }
	var acmeALPN func(host string) (*tls.Certificate, bool)
	if cfg.acmeDirectory != "" {
		client, err := httpClientTrusting(cfg.acmeCABundle)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("--acme-ca-bundle: %w", err)
		}
		challenge := cfg.acmeChallenge
		if challenge == "" && hl == nil {
			challenge = "tls-alpn-01"
		}
		a, err := ingress.NewACME(ingress.ACMEConfig{DirectoryURL: cfg.acmeDirectory, Email: cfg.acmeEmail, HTTPClient: client,
			State: shared.under("acme"), Challenge: challenge, Log: log})
		if err != nil {
			closeAll()
			return nil, err
		}
		opts.ACMEChallenge = a
		acmeALPN = a.ALPNCert
		issue = a.Issue
		if hl == nil && challenge == "http-01" {
			log.Warn("ACME is configured for http-01 but the HTTP ingress is off: its challenges cannot be answered")
		}
	}
	proxy := ingress.NewProxy(opts, nodes, log)
	feed := &ingressFeed{
		st: st, proxy: proxy, log: log, domain: cfg.domain, nodes: nodes,
		suspender: ingress.NewSuspender(proxy.Activity, nodes, log),
		tcp:       map[int]net.Listener{},
	}
	go feed.run(ctx)
	var servers []*http.Server
	serve := func(l net.Listener, tlsCfg *tls.Config) {
		srv := ingress.Server(proxy, tlsCfg, log)
		servers = append(servers, srv)
		go func() {
			var err error
			if tlsCfg != nil {
				err = srv.ServeTLS(l, "", "")
			} else {
				err = srv.Serve(l)
			}
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("serve", "addr", l.Addr().String(), "err", err)
			}
		}()
	}
	if hl != nil {
		serve(hl, nil)
		log.Info("ingress HTTP", "addr", hl.Addr().String())
	}
	if tl != nil {
		certs := ingress.NewCerts(proxy, issue)
		certs.ALPN = acmeALPN
		serve(tl, certs.TLSConfig())
		log.Info("ingress HTTPS", "addr", tl.Addr().String())
	}
	return servers, nil
}

// ingressNodes reaches the nodes that run the ingress's pods: the agent in
// this process for its own node, another node through its tunnel.
type ingressNodes struct {
	local   string // "" when this server runs no agent
	ag      *agent.Agent
	tunnels *nodeproto.Tunnels
	podNode atomic.Pointer[map[string]string] // pod -> node, from the feed
}

func (n *ingressNodes) dial(ctx context.Context, node, tenant, pod string, port int) (net.Conn, error) {
	if node == n.local {
		return n.ag.DialPod(ctx, tenant, pod, port)
	}
	if !n.tunnels.Has(node) {
		// At once: the request goes to another replica rather than wait
		// for a tunnel that may be gone for good.
		return nil, fmt.Errorf("node %s has no tunnel to this server", node)
	}
	return n.tunnels.Remote(node).DialPod(ctx, tenant, pod, port)
}

// Wake thaws a pod on whichever node runs it.
func (n *ingressNodes) Wake(ctx context.Context, _, pod string) error {
	node := n.nodeOf(pod)
	if node == "" || node == n.local {
		return n.ag.Wake(ctx, pod)
	}
	return n.tunnels.Remote(node).Wake(ctx, pod)
}

// Suspend freezes an idle pod on whichever node runs it, unless the
// node saw other servers' ingress traffic to it since idleSince.
func (n *ingressNodes) Suspend(ctx context.Context, _, pod string, idleSince time.Time) error {
	node := n.nodeOf(pod)
	if node == "" || node == n.local {
		return n.ag.SuspendIdle(ctx, pod, idleSince)
	}
	if !n.tunnels.Has(node) {
		return fmt.Errorf("node %s has no tunnel to this server", node) // not worth a wait: the next check tries again
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return n.tunnels.Remote(node).SuspendIdle(ctx, pod, idleSince)
}

func (n *ingressNodes) nodeOf(pod string) string {
	if m := n.podNode.Load(); m != nil {
		return (*m)[pod]
	}
	return ""
}

// ingressFeed keeps the proxy's table in step with the pods in the store
// and runs auto-suspend over them.
type ingressFeed struct {
	st        *store.Store
	proxy     *ingress.Proxy
	suspender *ingress.Suspender
	nodes     *ingressNodes
	log       *slog.Logger
	domain    string

	pods     map[string]types.Pod
	statuses map[string]types.PodStatus
	verified map[string][]string      // tenant -> its verified custom domains
	suspend  map[string]time.Duration // tenant -> its default suspend rule
	servers  map[string]string        // live servers (node names) -> API URL

	tcpMu sync.Mutex
	tcp   map[int]net.Listener
}

func (f *ingressFeed) run(ctx context.Context) {
	defer f.closeTCP()
	for ctx.Err() == nil {
		snap, err := f.st.Snapshot(ctx)
		if err != nil {
			f.log.Warn("snapshot", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		f.pods = map[string]types.Pod{}
		for _, p := range snap.Pods {
			f.pods[p.ID] = p
		}
		f.statuses = snap.Statuses
		f.refreshDomains(ctx)
		f.refreshTenants(ctx)
		f.rebuild()
		f.follow(ctx, snap.Revision+1)
	}
}

// follow applies changes until the watch ends, rebuilding the table at
// most every 20 ms and checking auto-suspend every second.
func (f *ingressFeed) follow(ctx context.Context, from int64) {
	changes := f.st.Watch(ctx, from)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var rebuild <-chan time.Time
	for {
		select {
		case c, ok := <-changes:
			if !ok {
				return
			}
			switch {
			case c.Kind == "events":
				continue // no route in them
			case c.Kind == "pods" && c.Deleted:
				delete(f.pods, c.ID)
			case c.Kind == "status" && c.Deleted:
				delete(f.statuses, c.ID)
			case c.Pod != nil:
				f.pods[c.ID] = *c.Pod
			case c.Status != nil:
				f.statuses[c.ID] = *c.Status
			}
			if rebuild == nil {
				rebuild = time.After(20 * time.Millisecond)
			}
		case <-rebuild:
			rebuild = nil
			f.rebuild()
		case <-tick.C:
			f.refreshTenants(ctx)
			f.suspendIdle(ctx)
			if f.refreshDomains(ctx) {
				f.rebuild()
			}
		case <-ctx.Done():
			return
		}
	}
}

func (f *ingressFeed) rebuild() {
	backends := make([]ingress.Backend, 0, len(f.pods))
	podNode := make(map[string]string, len(f.pods))
	for id, p := range f.pods {
		b := ingress.FromPod(p, f.statuses[id])
		backends = append(backends, b)
		podNode[id] = b.Node
	}
	if f.nodes != nil {
		f.nodes.podNode.Store(&podNode)
	}
	t := ingress.Build(ingress.Config{Domain: f.domain, Verified: f.verified}, backends)
	f.proxy.SetTable(t)
	f.syncTCP(t)
}

// refreshDomains reads the verified custom domains; it reports a change.
// (Domains change seldom: a read a second is cheaper than another watch.)
func (f *ingressFeed) refreshDomains(ctx context.Context) bool {
	v, err := f.st.VerifiedDomains(ctx)
	if err != nil {
		f.log.Warn("custom domains", "err", err)
		return false
	}
	if reflect.DeepEqual(v, f.verified) {
		return false
	}
	f.verified = v
	return true
}

// refreshTenants reads the tenants' default suspend rules (a read a
// second, as for domains).
func (f *ingressFeed) refreshTenants(ctx context.Context) {
	ts, err := f.st.Tenants(ctx)
	if err != nil {
		f.log.Warn("tenants", "err", err)
		return
	}
	m := map[string]time.Duration{}
	for _, t := range ts {
		if t.SuspendAfter > 0 {
			m[t.Name] = t.SuspendAfter
		}
	}
	f.suspend = m
	if servers, err := f.st.Servers(ctx); err == nil {
		f.servers = servers
	}
}

// suspends tells whether this server's suspender looks after the pods of
// node: its own node's, and those of nodes that run no server when it is
// the live server of the lowest name (one server each, so their idle
// records need no merge; the node adds the traffic other servers sent).
func (f *ingressFeed) suspends(node string) bool {
	if f.nodes == nil {
		return false
	}
	if node == f.nodes.local {
		return node != ""
	}
	if _, isServer := f.servers[node]; isServer || node == "" {
		return false
	}
	if f.nodes.local == "" {
		return false // no node of our own: no name among the servers' nodes
	}
	for name := range f.servers {
		if name < f.nodes.local {
			return false
		}
	}
	return true
}

// syncTCP listens on the public TCP ports routes claim, and stops
// listening on those no route claims any more.
func (f *ingressFeed) syncTCP(t *ingress.Table) {
	f.tcpMu.Lock()
	defer f.tcpMu.Unlock()
	for port, l := range f.tcp {
		if t.TCP(port) == nil {
			l.Close()
			delete(f.tcp, port)
		}
	}
	for _, port := range t.TCPPorts() {
		if _, ok := f.tcp[port]; ok {
			continue
		}
		l, err := net.Listen("tcp", ":"+strconv.Itoa(port))
		if err != nil {
			f.log.Warn("tcp ingress port", "port", port, "err", err)
			continue
		}
		f.tcp[port] = l
		go f.proxy.ServeTCP(l, port)
	}
}

func (f *ingressFeed) closeTCP() {
	f.tcpMu.Lock()
	defer f.tcpMu.Unlock()
	for port, l := range f.tcp {
		l.Close()
		delete(f.tcp, port)
	}
}

func (f *ingressFeed) suspendIdle(ctx context.Context) {
	var cands []ingress.Candidate
	for id, p := range f.pods {
		after, err := ingress.ParseSuspend(p.Spec.Labels, f.suspend[p.Tenant])
		if err != nil || after == 0 || !f.suspends(p.Node) {
			continue
		}
		st := f.statuses[id]
		cands = append(cands, ingress.Candidate{
			Tenant: p.Tenant, Pod: id, After: after, StartedAt: st.StartedAt, WokeAt: st.Suspend.Woke,
			Running: st.Phase == types.PhaseRunning && !st.Suspended() && p.Desired.State == types.PhaseRunning,
		})
	}
	if len(cands) > 0 {
		f.suspender.Check(ctx, cands)
	}
}

// resolverAt is a resolver that asks the DNS server at addr; nil (the
// system's) when addr is empty.
func resolverAt(addr string) *net.Resolver {
	if addr == "" {
		return nil
	}
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
}
