package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/macro-cloud/macro/access"
	"github.com/macro-cloud/macro/api"
	"github.com/macro-cloud/macro/auth"
	"github.com/macro-cloud/macro/nodeproto"
	"github.com/macro-cloud/macro/store"
	"github.com/macro-cloud/macro/types"
)

// apiPort routes the tenant-facing TLS port: the native API, the registry,
// WebDAV over volumes and the Docker API share it.
type apiPort struct {
	native   http.Handler // /apis/: token or client certificate (api checks)
	registry http.Handler // /v2/: the OCI registry; nil answers 404
	dav      http.Handler // /dav/: WebDAV over volumes (access checks); nil answers 404
	docker   http.Handler // everything else: a client certificate is required
	nodes    http.Handler // /node/v1/: the node protocol (node join tokens); nil answers 404
}

func (p *apiPort) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch path := r.URL.Path; {
	case strings.HasPrefix(path, "/apis/"):
		p.native.ServeHTTP(w, r)
	case strings.HasPrefix(path, nodeproto.Prefix) && p.nodes != nil:
		p.nodes.ServeHTTP(w, r)
	case path == "/v2" || strings.HasPrefix(path, "/v2/"):
		if p.registry == nil {
			auth.WriteError(w, &auth.Error{Status: http.StatusNotFound, Message: "this server has no registry yet"})
			return
		}
		p.registry.ServeHTTP(w, r)
	case path == "/dav" || strings.HasPrefix(path, access.DAVPrefix):
		if p.dav == nil {
			auth.WriteError(w, &auth.Error{Status: http.StatusNotFound, Message: "this server does not serve WebDAV"})
			return
		}
		p.dav.ServeHTTP(w, r)
	default:
		p.docker.ServeHTTP(w, r)
	}
}

// apiTLSConfig is the TLS side of the API port: a server certificate from
// the cluster CA for hosts, and client certificates of that CA verified
// when given (the Docker API then requires one, the native API takes a
// token instead).
func apiTLSConfig(ca *auth.CA, hosts []string) (*tls.Config, error) {
	cert, err := ca.ServerCert(hosts, time.Now())
	if err != nil {
		return nil, fmt.Errorf("server certificate: %w", err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    ca.Pool(),
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"http/1.1"}, // the Docker API hijacks connections (attach, exec)
	}, nil
}

// serverHosts are the names the API port's certificate is valid for:
// loopback, this machine's names and addresses, the --api-addr host, and
// the --api-san extras.
func serverHosts(apiAddr string, nodeName string, extra []string) []string {
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if h, err := os.Hostname(); err == nil {
		hosts = append(hosts, h)
	}
	hosts = append(hosts, nodeName)
	if h, _, err := net.SplitHostPort(apiAddr); err == nil && h != "" {
		if ip := net.ParseIP(h); ip == nil || !ip.IsUnspecified() {
			hosts = append(hosts, h)
		}
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && !n.IP.IsLinkLocalUnicast() {
				hosts = append(hosts, n.IP.String())
			}
		}
	}
	for _, e := range extra {
		hosts = append(hosts, splitList(e)...)
	}
	return hosts
}

// firstTokenName is the file in the data directory that keeps the token of
// the first tenant, made on first start (0600).
const firstTokenName = "first-token"

// firstStart makes tenant "default" and a token for it when the store holds
// no tenant at all, writes the token to DATA-DIR/first-token and returns
// it; "" when there were tenants already.
func firstStart(ctx context.Context, st *store.Store, native *api.Server, dataDir string) (string, error) {
	ts, err := st.Tenants(ctx)
	if err != nil {
		return "", fmt.Errorf("list tenants: %w", err)
	}
	if len(ts) > 0 {
		return "", nil
	}
	if _, err := native.CreateTenant(ctx, types.DefaultTenant, types.Quota{}); err != nil {
		if errors.Is(err, store.ErrExists) {
			return "", nil // another server of the cell was first
		}
		return "", fmt.Errorf("first tenant: %w", err)
	}
	tok, err := native.CreateToken(ctx, types.DefaultTenant, "first token, made by macro server on first start")
	if err != nil {
		return "", fmt.Errorf("first token: %w", err)
	}
	file := filepath.Join(dataDir, firstTokenName)
	os.Remove(file)
	if err := os.WriteFile(file, []byte(tok.Token+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write %s: %w", file, err)
	}
	return tok.Token, nil
}

// printFirstTenant tells the user what to type next: on first start the
// new token, later the file that keeps it (while it is still valid).
func printFirstTenant(ctx context.Context, w io.Writer, authn *auth.Authenticator, dataDir, apiAddr, token string) {
	login := "kra login"
	if h := kraHost(apiAddr); h != "" {
		login += " --host " + h
	}
	login += " --ca " + filepath.Join(dataDir, "ca", auth.CACertFile)
	if token != "" {
		fmt.Fprintf(w, "first tenant %q created; token: %s\nnext: %s %s && kra setup docker\n\n", types.DefaultTenant, token, login, token)
		return
	}
	file := filepath.Join(dataDir, firstTokenName)
	b, err := os.ReadFile(file)
	if err != nil {
		return
	}
	if _, err := authn.VerifyToken(ctx, strings.TrimSpace(string(b))); err != nil {
		return
	}
	fmt.Fprintf(w, "the token of tenant %q is in %s\nnext: %s \"$(cat %s)\" && kra setup docker\n\n", types.DefaultTenant, file, login, file)
}

// kraHost is the --host kra needs for apiAddr, "" for kra's default
// (https://localhost:7443).
func kraHost(apiAddr string) string {
	h, port, err := net.SplitHostPort(apiAddr)
	if err != nil {
		return ""
	}
	if h == "" || net.ParseIP(h) != nil && net.ParseIP(h).IsUnspecified() {
		h = "localhost"
	}
	if h == "localhost" && port == "7443" {
		return ""
	}
	return "https://" + net.JoinHostPort(h, port)
}
