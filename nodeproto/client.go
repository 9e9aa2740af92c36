package nodeproto

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/macro-cloud/macro/types"
)

// ClientConfig wires the agent's side of the node protocol.
type ClientConfig struct {
	// Servers are the API ports of the cluster's servers
	// (https://host:7443); the agent follows its pods from one and keeps a
	// tunnel to each, so that every server reaches it.
	Servers []string
	// Token is a node join token.
	Token string
	// RootCAs verify the servers (the cluster CA).
	RootCAs *x509.CertPool
	// CAPEM is RootCAs as PEM, for Credentials (optional).
	CAPEM []byte
	// ResponseHeaderTimeout, if set, bounds the wait for an answer once
	// a request is sent.
	ResponseHeaderTimeout time.Duration
	Log                   *slog.Logger
	// Peer: the client is a server of the cluster (its own node): the
	// images it asks for are answered from the other server's store
	// alone (FromPeer), so two servers never ask each other in a circle.
	Peer bool
}

// Client is the control plane as a remote agent sees it. It implements
// agent.Server.
type Client struct {
	cfg     ClientConfig
	hc      *http.Client // requests that end
	stream  *http.Client // long streams: no overall timeout
	tlsConf *tls.Config
	log     *slog.Logger

	mu  sync.Mutex
	cur int // the server requests go to first
}

// NewClient checks the configuration and returns a Client.
func NewClient(cfg ClientConfig) (*Client, error) {
	if len(cfg.Servers) == 0 {
		return nil, errors.New("no server to join: give --server https://HOST:PORT")
	}
	for i, s := range cfg.Servers {
		u, err := url.Parse(s)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return nil, fmt.Errorf("server %q: want https://HOST:PORT", s)
		}
		cfg.Servers[i] = strings.TrimSuffix(s, "/")
	}
	if !strings.HasPrefix(cfg.Token, "kj_") {
		return nil, errors.New("a node join token (kj_...) is needed: macro admin join-token node, on a server")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	tc := &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	tr := &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: false, MaxIdleConnsPerHost: 8, IdleConnTimeout: 60 * time.Second,
		DialContext: (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 15 * time.Second}).DialContext}
	tr.ResponseHeaderTimeout = cfg.ResponseHeaderTimeout
	return &Client{
		cfg:     cfg,
		hc:      &http.Client{Transport: tr, Timeout: 30 * time.Second},
		stream:  &http.Client{Transport: tr},
		tlsConf: tc,
		log:     cfg.Log.With("subsystem", "nodeproto"),
	}, nil
}

// server is the server to ask now; next moves on after a failure.
func (c *Client) server() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cfg.Servers[c.cur]
}

func (c *Client) next(failed string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cfg.Servers[c.cur] == failed {
		c.cur = (c.cur + 1) % len(c.cfg.Servers)
	}
}

func (c *Client) request(ctx context.Context, hc *http.Client, method, path string, q url.Values, body []byte) (*http.Response, error) {
	srv := c.server()
	u := srv + Prefix + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		c.next(srv)
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		if resp.StatusCode >= 500 {
			c.next(srv)
		}
		return nil, fmt.Errorf("%s: %w", srv, readError(resp))
	}
	return resp, nil
}

// RegisterNode registers the node or renews its lease (the heartbeat).
func (c *Client) RegisterNode(ctx context.Context, n types.Node) error {
	b, _ := json.Marshal(n)
	resp, err := c.request(ctx, c.hc, "POST", "register", nil, b)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// ReportStatus records what the agent observed of a pod.
func (c *Client) ReportStatus(ctx context.Context, tenant string, st types.PodStatus) error {
	b, _ := json.Marshal(st)
	resp, err := c.request(ctx, c.hc, "POST", "status", url.Values{"tenant": {tenant}}, b)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// streamIdle is how long a stream may stay silent (the server writes
// a keep-alive line every 5 s) before the agent takes it for dead and
// follows another server.
const streamIdle = 20 * time.Second

// WatchPods follows the node's assignments, from one server after another
// as they fail: every (re)connection starts with a full set.
func (c *Client) WatchPods(ctx context.Context, node string) <-chan types.Assignment {
	return follow[types.Assignment](ctx, c, "pods", url.Values{"node": {node}}, false)
}

// FollowTenantNets follows the tenants' network settings the same way:
// every (re)connection starts with a Sync.
func (c *Client) FollowTenantNets(ctx context.Context) <-chan types.TenantNets {
	return follow[types.TenantNets](ctx, c, "tenants", nil, false)
}

// follow reads the JSON lines of the stream at path from one server after
// another as they fail, until ctx ends. With latest, each line is a whole
// state and only the newest matters: one the reader has not taken yet is
// replaced.
func follow[T any](ctx context.Context, c *Client, path string, q url.Values, latest bool) <-chan T {
	size := 64
	if latest {
		size = 1
	}
	out := make(chan T, size)
	go func() {
		defer close(out)
		for ctx.Err() == nil {
			err := followOnce(ctx, c, path, q, latest, out)
			if ctx.Err() != nil {
				return
			}
			c.log.Warn("stream ended; reconnecting", "stream", path, "err", err)
			sleep(ctx, time.Second)
		}
	}()
	return out
}

func followOnce[T any](ctx context.Context, c *Client, path string, q url.Values, latest bool, out chan T) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	resp, err := c.request(ctx, c.stream, "GET", path, q, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	alive := make(chan struct{}, 1)
	go func() {
		t := time.NewTimer(streamIdle)
		defer t.Stop()
		for {
			select {
			case <-alive:
				t.Reset(streamIdle)
			case <-t.C:
				c.next(c.server())
				cancel()
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		select {
		case alive <- struct{}{}:
		default:
		}
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var v T
		if err := json.Unmarshal(line, &v); err != nil {
			return fmt.Errorf("%s stream: %w", path, err)
		}
		if latest {
			select {
			case <-out:
			default:
			}
		}
		select {
		case out <- v:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return fmt.Errorf("the server closed the %s stream", path)
}

// Cluster asks the servers for the cluster's name and the heartbeat.
func (c *Client) Cluster(ctx context.Context) (ClusterInfo, error) {
	var ci ClusterInfo
	resp, err := c.request(ctx, c.hc, "GET", "cluster", nil, nil)
	if err != nil {
		return ci, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&ci)
	return ci, err
}

// FetchImage reads an image of tenant from the servers as a docker-archive.
// A server that does not hold the image copies it from another first;
// each server is asked in turn until one answers.
func (c *Client) FetchImage(ctx context.Context, tenant, id string) (io.ReadCloser, error) {
	var last error
	for _, srv := range c.cfg.Servers {
		rc, err := c.FetchImageFrom(ctx, srv, tenant, id)
		if err == nil {
			return rc, nil
		}
		last = err
	}
	return nil, last
}

// FetchImageFrom reads an image of tenant, by name or ID, from the server
// at srv as a docker-archive (with its tags when named).
func (c *Client) FetchImageFrom(ctx context.Context, srv, tenant, ref string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", srv+Prefix+"images/"+url.PathEscape(tenant)+"/"+url.PathEscape(ref), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	if c.cfg.Peer {
		req.Header.Set(peerHeader, "1")
	}
	resp, err := c.stream.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", srv, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, fmt.Errorf("%s: %w", srv, readError(resp))
	}
	return resp.Body, nil
}

// RunTunnels keeps a tunnel to every server open until ctx ends, serving
// ops on each.
func (c *Client) RunTunnels(ctx context.Context, node string, ops Ops) {
	var wg sync.WaitGroup
	for _, srv := range c.cfg.Servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.KeepTunnel(ctx, srv, node, ops)
		}()
	}
	wg.Wait()
}

// KeepTunnel keeps a tunnel to the server at srv (https://HOST:PORT) open
// until ctx ends, reconnecting after failures, serving ops on it.
func (c *Client) KeepTunnel(ctx context.Context, srv, node string, ops Ops) {
	for ctx.Err() == nil {
		err := c.tunnel(ctx, srv, node, ops)
		if ctx.Err() != nil {
			return
		}
		c.log.Warn("tunnel ended; reconnecting", "server", srv, "err", err)
		sleep(ctx, time.Second)
	}
}

func (c *Client) tunnel(ctx context.Context, srv, node string, ops Ops) error {
	u, err := url.Parse(srv)
	if err != nil {
		return err
	}
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 15 * time.Second}, Config: c.tlsConf.Clone()}
	d.Config.ServerName = u.Hostname()
	conn, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(15 * time.Second))
	fmt.Fprintf(conn, "GET %stunnel?node=%s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n",
		Prefix, url.QueryEscape(node), u.Host, c.cfg.Token, tunnelProto)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer resp.Body.Close()
		return readError(resp)
	}
	conn.SetDeadline(time.Time{})
	sess, err := yamux.Server(&bufferedConn{Conn: conn, r: br}, yamuxConfig())
	if err != nil {
		return err
	}
	defer sess.Close()
	c.log.Info("tunnel up", "server", srv)
	return ServeOps(sess, ops)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
