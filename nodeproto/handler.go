package nodeproto

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/macro-cloud/macro/types"
)

// Backend is the control plane's side of the node protocol (control.NodeAPI).
type Backend interface {
	RegisterNode(ctx context.Context, n types.Node) error
	WatchPods(ctx context.Context, node string) <-chan types.Assignment
	ReportStatus(ctx context.Context, tenant string, st types.PodStatus) error
	// FollowTenantNets follows what a node's router needs of the tenants
	// (store.FollowTenantNets).
	FollowTenantNets(ctx context.Context) <-chan types.TenantNets
}

// ImageSaver writes an image as a docker-archive (image.TenantView.Save).
type ImageSaver interface {
	SaveImage(ctx context.Context, tenant, id string, w io.Writer) error
}

// HandlerConfig wires a Handler.
type HandlerConfig struct {
	Backend Backend
	Images  ImageSaver
	// Check admits a node's token (a node join token or credential,
	// identity.go) and says which node a credential is bound to ("" for
	// a join token); nil admits none.
	Check func(ctx context.Context, token string) (node string, err error)
	// Credential makes a credential bound to node (ErrCredentialTaken
	// when the name has one).
	Credential func(ctx context.Context, node string) (string, error)
	// ImageAdmit lets node fetch a tenant's image (ErrNoBusiness: 404);
	// nil admits every credential.
	ImageAdmit func(ctx context.Context, tenant, id, node string) error
	// Credentialed says whether node has a credential: then a join token
	// no longer speaks for it (nil: no node has one).
	Credentialed func(ctx context.Context, node string) (bool, error)
	// Tunnels keeps the nodes' tunnels for the API's operations.
	Tunnels *Tunnels
	// Cluster is the cluster's name (a node's VPC addresses derive from
	// it); NodeTTL how long a node lives without a heartbeat.
	Cluster string
	NodeTTL time.Duration
	Log     *slog.Logger
	// Volumes finds the node of a volume that another node mounts and
	// keeps its replicas' states (volfs.go); LocalNode and LocalOps are
	// this server's own agent, reached in process.
	Volumes   VolumeDirectory
	LocalNode string
	LocalOps  Ops
}

// ClusterInfo is what a joining node learns first.
type ClusterInfo struct {
	Cluster string `json:"cluster"`
	// HeartbeatMillis is how often the node must renew its lease.
	HeartbeatMillis int64 `json:"heartbeatMillis"`
}

// Handler serves the node protocol under Prefix.
type Handler struct {
	cfg HandlerConfig
	mux *http.ServeMux
	log *slog.Logger
}

// NewHandler returns the server side of the node protocol.
func NewHandler(cfg HandlerConfig) *Handler {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	h := &Handler{cfg: cfg, mux: http.NewServeMux(), log: cfg.Log.With("subsystem", "nodeproto")}
	h.mux.HandleFunc("GET "+Prefix+"cluster", h.cluster)
	h.mux.HandleFunc("POST "+Prefix+"register", h.register)
	h.mux.HandleFunc("GET "+Prefix+"pods", h.pods)
	h.mux.HandleFunc("GET "+Prefix+"tenants", h.tenants)
	h.mux.HandleFunc("POST "+Prefix+"status", h.status)
	h.mux.HandleFunc("GET "+Prefix+"images/{tenant}/{id...}", h.image)
	h.mux.HandleFunc("GET "+Prefix+"tunnel", h.tunnel)
	h.mux.HandleFunc("GET "+Prefix+"mesh", h.mesh)
	h.mux.HandleFunc(Prefix+"volfs/{tenant}/{name}/{op}", h.volfs)
	h.mux.HandleFunc(Prefix+"volrep/{tenant}/{name}/{node}/{op}", h.volrep)
	h.mux.HandleFunc("POST "+Prefix+"credential", h.credential)
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || h.cfg.Check == nil {
		writeJSONError(w, http.StatusUnauthorized, errors.New("the node protocol needs a node join token (Authorization: Bearer kj_...)"))
		return
	}
	node, err := h.cfg.Check(r.Context(), tok)
	if err != nil {
		writeJSONError(w, http.StatusUnauthorized, fmt.Errorf("node token refused: %w", err))
		return
	}
	h.mux.ServeHTTP(w, r.WithContext(withNode(r.Context(), node)))
}

// maxBody bounds the JSON bodies nodes send.
const maxBody = 4 << 20

func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("bad request body: %w", err)
	}
	return nil
}

func (h *Handler) cluster(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(ClusterInfo{Cluster: h.cfg.Cluster, HeartbeatMillis: (h.cfg.NodeTTL / 3).Milliseconds()})
}

func (h *Handler) register(w http.ResponseWriter, r *http.Request) {
	var n types.Node
	if err := decodeBody(r, &n); err != nil {
		writeJSONError(w, http.StatusBadRequest, err)
		return
	}
	if err := validNodeName(n.Name); err != nil {
		writeJSONError(w, http.StatusBadRequest, err)
		return
	}
	if !h.sameNode(w, r, n.Name) {
		return
	}
	if err := h.cfg.Backend.RegisterNode(r.Context(), n); err != nil {
		writeJSONError(w, http.StatusServiceUnavailable, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// validNodeName keeps node names to what a key path and a DNS label take.
func validNodeName(name string) error {
	if name == "" || len(name) > 63 {
		return fmt.Errorf("invalid node name %q: 1 to 63 characters", name)
	}
	for i, c := range name {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case (c == '-' || c == '.' || c == '_') && i > 0:
		default:
			return fmt.Errorf("invalid node name %q: letters, digits, '-', '.', '_'", name)
		}
	}
	return nil
}

// pods streams the node's assignments as JSON lines until the node goes.
func (h *Handler) pods(w http.ResponseWriter, r *http.Request) {
	node := r.URL.Query().Get("node")
	if err := validNodeName(node); err != nil {
		writeJSONError(w, http.StatusBadRequest, err)
		return
	}
	if !h.sameNode(w, r, node) {
		return
	}
	streamLines(w, r, h.cfg.Backend.WatchPods(r.Context(), node))
}

// tenants streams the tenants' network settings as JSON lines, their
// names keyed with a key of the stream's own (KeyedName): a node, an
// outpost in a tenant's office included, never learns the other tenants'
// names.
func (h *Handler) tenants(w http.ResponseWriter, r *http.Request) {
	key := make([]byte, 16)
	rand.Read(key)
	in := h.cfg.Backend.FollowTenantNets(r.Context())
	out := make(chan types.TenantNets)
	go func() {
		defer close(out)
		for m := range in {
			k := types.TenantNets{Sync: m.Sync, Key: key, Tenants: make([]types.TenantNet, len(m.Tenants))}
			for i, t := range m.Tenants {
				t.Name = KeyedName(key, t.Name)
				k.Tenants[i] = t
			}
			select {
			case out <- k:
			case <-r.Context().Done():
				return
			}
		}
	}()
	streamLines(w, r, out)
}

// KeyedName is a tenant's name as the tenants' stream gives it under key:
// a node that runs a pod of the tenant finds it there, and reads nothing
// from the others'.
func KeyedName(key []byte, name string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(name))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// streamLines writes what ch delivers as JSON lines until ch closes or the
// node goes. An empty line every few seconds keeps idle connections (and
// the proxies on their way) alive.
func streamLines[T any](w http.ResponseWriter, r *http.Request, ch <-chan T) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	rc.Flush()
	enc := json.NewEncoder(w)
	keep := time.NewTicker(5 * time.Second)
	defer keep.Stop()
	for {
		select {
		case a, ok := <-ch:
			if !ok {
				return
			}
			if err := enc.Encode(a); err != nil {
				return
			}
		case <-keep.C:
			if _, err := io.WriteString(w, "\n"); err != nil {
				return
			}
		case <-r.Context().Done():
			return
		}
		if rc.Flush() != nil {
			return
		}
	}
}

func (h *Handler) status(w http.ResponseWriter, r *http.Request) {
	var st types.PodStatus
	if err := decodeBody(r, &st); err != nil {
		writeJSONError(w, http.StatusBadRequest, err)
		return
	}
	if !h.sameNode(w, r, st.Node) {
		return
	}
	if err := h.cfg.Backend.ReportStatus(r.Context(), r.URL.Query().Get("tenant"), st); err != nil {
		writeJSONError(w, http.StatusConflict, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) image(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Images == nil {
		writeJSONError(w, http.StatusNotFound, errors.New("this server has no images"))
		return
	}
	// Only a node that runs the image, or a server, gets it.
	node, ok := NodeOf(r.Context())
	if !ok {
		writeJSONError(w, http.StatusForbidden, ErrNotBound)
		return
	}
	if h.cfg.ImageAdmit != nil {
		switch err := h.cfg.ImageAdmit(r.Context(), r.PathValue("tenant"), r.PathValue("id"), node); {
		case errors.Is(err, ErrNoBusiness):
			h.log.Warn("image refused to a node", "node", node, "tenant", r.PathValue("tenant"), "image", r.PathValue("id"))
			writeJSONError(w, http.StatusNotFound, fmt.Errorf("image %s: no pod of this node runs it", r.PathValue("id")))
			return
		case err != nil:
			writeJSONError(w, http.StatusServiceUnavailable, err)
			return
		}
	}
	// Buffer the start, so that a missing image still answers 404.
	bw := &lazyWriter{w: w}
	ctx := r.Context()
	if r.Header.Get(peerHeader) != "" {
		ctx = context.WithValue(ctx, peerKey{}, true)
	}
	err := h.cfg.Images.SaveImage(ctx, r.PathValue("tenant"), r.PathValue("id"), bw)
	if err != nil && !bw.started {
		writeJSONError(w, http.StatusNotFound, err)
		return
	}
	if err != nil {
		h.log.Warn("send image", "image", r.PathValue("id"), "err", err)
		// The archive is cut: the node's load fails on it and retries.
		panic(http.ErrAbortHandler)
	}
}

type lazyWriter struct {
	w       http.ResponseWriter
	started bool
}

func (l *lazyWriter) Write(p []byte) (int, error) {
	if !l.started {
		l.started = true
		l.w.Header().Set("Content-Type", "application/x-tar")
		l.w.WriteHeader(http.StatusOK)
	}
	return l.w.Write(p)
}

// tunnelProto is the Upgrade token of the node tunnel.
const tunnelProto = "macro-node-tunnel"

// tunnel takes over the connection and keeps it as the node's tunnel: the
// server opens streams on it, the node serves the operations on them.
func (h *Handler) tunnel(w http.ResponseWriter, r *http.Request) {
	node := r.URL.Query().Get("node")
	if err := validNodeName(node); err != nil {
		writeJSONError(w, http.StatusBadRequest, err)
		return
	}
	if !h.sameNode(w, r, node) {
		return
	}
	if !strings.EqualFold(r.Header.Get("Upgrade"), tunnelProto) || h.cfg.Tunnels == nil {
		writeJSONError(w, http.StatusBadRequest, errors.New("the tunnel needs Upgrade: "+tunnelProto))
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		writeJSONError(w, http.StatusInternalServerError, err)
		return
	}
	conn.SetDeadline(time.Time{})
	io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+tunnelProto+"\r\n\r\n")
	sess, err := yamux.Client(&bufferedConn{Conn: conn, r: brw.Reader}, yamuxConfig())
	if err != nil {
		conn.Close()
		return
	}
	h.log.Info("node tunnel up", "node", node, "remote", r.RemoteAddr)
	h.cfg.Tunnels.put(node, sess)
	<-sess.CloseChan()
	h.cfg.Tunnels.drop(node, sess)
	h.log.Info("node tunnel down", "node", node)
}

func yamuxConfig() *yamux.Config {
	c := yamux.DefaultConfig()
	c.LogOutput = io.Discard
	c.KeepAliveInterval = 5 * time.Second
	c.ConnectionWriteTimeout = 30 * time.Second
	c.MaxStreamWindowSize = 1 << 20
	return c
}

// Tunnels are the open tunnels of the nodes connected to this server.
type Tunnels struct {
	mu      sync.Mutex
	m       map[string]*yamux.Session
	wait    chan struct{} // closed and replaced when a tunnel comes
	remotes map[string]*Remote
	// known are the nodes that had a tunnel here: only for those is a
	// missing tunnel worth waiting for (being re-established).
	known map[string]bool
}

// NewTunnels returns an empty set.
func NewTunnels() *Tunnels {
	return &Tunnels{m: map[string]*yamux.Session{}, wait: make(chan struct{}), remotes: map[string]*Remote{}, known: map[string]bool{}}
}

func (t *Tunnels) put(node string, s *yamux.Session) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if old := t.m[node]; old != nil && old != s {
		old.Close()
	}
	t.m[node] = s
	t.known[node] = true
	close(t.wait)
	t.wait = make(chan struct{})
}

func (t *Tunnels) drop(node string, s *yamux.Session) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m[node] == s {
		delete(t.m, node)
	}
}

// Has tells whether node has a tunnel to this server.
func (t *Tunnels) Has(node string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.m[node]
	return s != nil && !s.IsClosed()
}

// unknownWait is how long a stream waits for a node that never had a
// tunnel to this server (one that is joining now), where one that had a
// tunnel gets the whole wait of open.
const unknownWait = 3 * time.Second

// open opens a stream to node, waiting up to wait for a tunnel that is
// being re-established.
func (t *Tunnels) open(ctx context.Context, node string, wait time.Duration) (*yamux.Stream, error) {
	t.mu.Lock()
	if !t.known[node] {
		wait = min(wait, unknownWait)
	}
	t.mu.Unlock()
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		t.mu.Lock()
		s, ch := t.m[node], t.wait
		t.mu.Unlock()
		if s != nil && !s.IsClosed() {
			st, err := s.OpenStream()
			if err == nil {
				return st, nil
			}
		}
		select {
		case <-ch:
		case <-deadline.C:
			return nil, fmt.Errorf("node %s has no tunnel to this server", node)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Close closes every tunnel.
func (t *Tunnels) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range t.m {
		s.Close()
	}
}

// bufferedConn reads first what the HTTP server had buffered.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// peerHeader marks an image request of another server (ClientConfig.Peer).
const peerHeader = "Macro-Peer"

type peerKey struct{}

// FromPeer says whether an image request (the ctx of SaveImage) comes
// from another server of the cluster, which must be answered from this
// server's store alone; an agent's may be answered with an image fetched
// from the others.
func FromPeer(ctx context.Context) bool { b, _ := ctx.Value(peerKey{}).(bool); return b }
