// Package client is the Go client of macro's tenant-facing API port: the
// native API under /apis/macro/v1 (bearer token) and the few Docker Engine
// API paths that kra shows (mutual TLS with the tenant's client
// certificate). kra, the end-to-end tests and the console use it.
//
// Every error it returns reads well on its own: the server's own message
// for an answer with an error status (*Error, which matches ErrUnauthorized,
// ErrForbidden, ErrNotFound and ErrConflict with errors.Is), *UnreachableError when nothing answers,
// *UntrustedError when the server's certificate is not signed by a trusted
// CA.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// APIPrefix is the path of the native API.
const APIPrefix = "/apis/macro/v1"

// DefaultHost is where kra looks for macro when nothing else says.
const DefaultHost = "https://localhost:7443"

// Options configures a Client.
type Options struct {
	// Token is the tenant's access token, sent as a bearer token to the
	// native API. Calls that need it fail with ErrNoToken when it is empty.
	Token string
	// RootCAs are the CAs that may sign the server's certificate; nil means
	// the system's pool.
	RootCAs *x509.CertPool
	// InsecureSkipVerify accepts any server certificate. kra uses it for
	// one call only: fetching the CA bundle it then pins.
	InsecureSkipVerify bool
	// ClientCert is the tenant's client certificate for the Docker API.
	// Docker API calls fail with ErrNoClientCert when it is nil.
	ClientCert *tls.Certificate
	// Timeout bounds a call that does not stream; 30 s when zero.
	Timeout time.Duration
	// UserAgent is sent with every request.
	UserAgent string
}

// Client talks to one macro host. It is safe for concurrent use.
type Client struct {
	host  string // scheme://host:port, no trailing slash
	opts  Options
	http  *http.Client // without a deadline: streams (logs -f) use it too
	tls   *tls.Config
	agent string
}

// New returns a client for host, a URL such as "https://macro.example:7443"
// (see NormalizeHost).
func New(host string, opts Options) (*Client, error) {
	h, err := NormalizeHost(host)
	if err != nil {
		return nil, err
	}
	if opts.Timeout == 0 {
		opts.Timeout = 30 * time.Second
	}
	cfg := &tls.Config{
		RootCAs:            opts.RootCAs,
		InsecureSkipVerify: opts.InsecureSkipVerify,
		MinVersion:         tls.VersionTLS12,
	}
	if opts.ClientCert != nil {
		cert := *opts.ClientCert
		cfg.Certificates = []tls.Certificate{cert}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = cfg
	tr.Proxy = http.ProxyFromEnvironment
	agent := opts.UserAgent
	if agent == "" {
		agent = "macro-client"
	}
	return &Client{host: h, opts: opts, http: &http.Client{Transport: tr}, tls: cfg, agent: agent}, nil
}

// Host is the URL the client talks to, normalized.
func (c *Client) Host() string { return c.host }

// HasToken reports whether the client has an access token.
func (c *Client) HasToken() bool { return c.opts.Token != "" }

// NormalizeHost turns what a user typed into the base URL of a macro host:
// "https" is assumed when no scheme is given, a trailing slash is dropped.
// A URL with a path, a query or a scheme other than https is refused.
func NormalizeHost(host string) (string, error) {
	h := strings.TrimSpace(host)
	if h == "" {
		return "", errors.New("empty host: expected https://HOST:PORT")
	}
	if !strings.Contains(h, "://") {
		h = "https://" + h
	}
	u, err := url.Parse(h)
	if err != nil {
		return "", fmt.Errorf("invalid host %q: expected https://HOST:PORT", host)
	}
	if u.Scheme != "https" {
		return "", fmt.Errorf("invalid host %q: macro's API port speaks https only", host)
	}
	if u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return "", fmt.Errorf("invalid host %q: expected https://HOST:PORT", host)
	}
	return "https://" + u.Host, nil
}

// request describes one call.
type request struct {
	method  string
	path    string    // absolute path, with query
	body    any       // JSON-encoded when not nil
	raw     io.Reader // sent as it is when body is nil, with rawType as Content-Type
	rawType string
	token   bool // send the bearer token (and require one)
	stream  bool // no deadline: the caller reads the body as it comes
}

// do sends r and returns the response when its status is 2xx, or an error
// that says what went wrong. The caller closes the body.
func (c *Client) do(ctx context.Context, r request) (*http.Response, context.CancelFunc, error) {
	if r.token && c.opts.Token == "" {
		return nil, nil, ErrNoToken
	}
	cancel := context.CancelFunc(func() {})
	if !r.stream {
		ctx, cancel = context.WithTimeout(ctx, c.opts.Timeout)
	}
	var body io.Reader
	if r.body != nil {
		b, err := json.Marshal(r.body)
		if err != nil {
			cancel()
			return nil, nil, err
		}
		body = bytes.NewReader(b)
	} else if r.raw != nil {
		body = r.raw
	}
	req, err := http.NewRequestWithContext(ctx, r.method, c.host+r.path, body)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	req.Header.Set("User-Agent", c.agent)
	req.Header.Set("Accept", "application/json")
	if r.body != nil {
		req.Header.Set("Content-Type", "application/json")
	} else if r.raw != nil {
		req.Header.Set("Content-Type", r.rawType)
	}
	if r.token {
		req.Header.Set("Authorization", "Bearer "+c.opts.Token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		cancel()
		return nil, nil, c.transportError(err)
	}
	if resp.StatusCode/100 != 2 {
		defer cancel()
		defer resp.Body.Close()
		return nil, nil, responseError(c.host, req, resp)
	}
	return resp, cancel, nil
}

// call sends r and decodes a JSON answer into out (when out is not nil).
func (c *Client) call(ctx context.Context, r request, out any) error {
	resp, cancel, err := c.do(ctx, r)
	if err != nil {
		return err
	}
	defer cancel()
	defer resp.Body.Close()
	if out == nil {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(out); err != nil {
		return fmt.Errorf("%s %s: reading the answer of %s: %w", r.method, r.path, c.host, err)
	}
	return nil
}

// responseError turns an answer with an error status into an *Error with
// the server's message: {"message": "..."} (the Docker API's shape and the
// native API's), or the body's first line when it is not JSON.
func responseError(host string, req *http.Request, resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	e := &Error{Status: resp.StatusCode, Method: req.Method, Path: req.URL.Path, Host: host}
	if n, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && n > 0 {
		e.RetryAfter = n
	}
	var m struct {
		Message string `json:"message"`
		Error   string `json:"error"`
	}
	if json.Unmarshal(b, &m) == nil {
		e.Message = m.Message
		if e.Message == "" {
			e.Message = m.Error
		}
	}
	if e.Message == "" {
		s := strings.TrimSpace(string(b))
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			s = s[:i]
		}
		e.Message = s
	}
	return e
}

func readAllLimit(resp *http.Response, n int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(resp.Body, n+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > n {
		return nil, fmt.Errorf("%s: answer larger than %d bytes", resp.Request.URL, n)
	}
	return b, nil
}
