package nodeproto

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
)

// Remote volumes (package volume/volfs): a pod on node B mounts an nfs or
// gfs volume whose primary is node A through FUSE; B's operations go
// B -> a server (HTTPS, POST|GET|PUT /node/v1/volfs/{tenant}/{name}/{op})
// -> A's tunnel to that server (/volfs/{tenant}/{name}/{op}) -> A's
// volfs.Handler over the volume's directory. The server finds A in the
// volume's record; nodes never reach each other directly.

// VolumeFiles is what a node that holds volumes serves to other nodes'
// mounts (agent.Agent): the volfs handler of one of its volumes.
type VolumeFiles interface {
	VolumeFS(tenant, name string) http.Handler
}

// VolumeLocator tells a server which node holds a volume's primary copy;
// an error (no such volume, not a network volume) refuses the request.
type VolumeLocator func(ctx context.Context, tenant, name string) (node string, err error)

// volfsRoutes serves the volfs operations of the node's own volumes on its
// tunnel.
func volfsRoutes(m *http.ServeMux, ops Ops) {
	vf, ok := ops.(VolumeFiles)
	if !ok {
		return
	}
	m.HandleFunc("/volfs/{tenant}/{name}/{op}", func(w http.ResponseWriter, r *http.Request) {
		vf.VolumeFS(r.PathValue("tenant"), r.PathValue("name")).ServeHTTP(w, r)
	})
}

// volfs (on a server) passes a node's volume operation on to the node that
// holds the volume: through its tunnel, or to this server's own agent.
func (h *Handler) volfs(w http.ResponseWriter, r *http.Request) {
	tenant, name, op := r.PathValue("tenant"), r.PathValue("name"), r.PathValue("op")
	if h.cfg.Volumes == nil {
		writeJSONError(w, http.StatusNotImplemented, errors.New("this server does not serve remote volumes"))
		return
	}
	node, err := h.cfg.Volumes(r.Context(), tenant, name)
	if err != nil {
		writeJSONError(w, http.StatusNotFound, err)
		return
	}
	r.Header.Del("Authorization")
	if h.cfg.LocalNode != "" && node == h.cfg.LocalNode {
		vf, ok := h.cfg.LocalOps.(VolumeFiles)
		if !ok {
			writeJSONError(w, http.StatusNotImplemented, fmt.Errorf("node %s serves no volumes", node))
			return
		}
		vf.VolumeFS(tenant, name).ServeHTTP(w, r)
		return
	}
	if h.cfg.Tunnels == nil {
		writeJSONError(w, http.StatusBadGateway, fmt.Errorf("node %s is not reachable from this server", node))
		return
	}
	remote := h.cfg.Tunnels.Remote(node)
	target := "/volfs/" + url.PathEscape(tenant) + "/" + url.PathEscape(name) + "/" + url.PathEscape(op)
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = "http", "node"
			pr.Out.URL.Path, pr.Out.URL.RawPath = target, ""
			pr.Out.Host = "node"
		},
		Transport: remote.hc.Transport,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			writeJSONError(w, http.StatusBadGateway, fmt.Errorf("node %s: %w", node, err))
		},
	}
	rp.ServeHTTP(w, r)
}

// VolumeTransport carries a volfs client's requests to the servers: a
// request for http://volfs/{tenant}/{name}/{op} goes to the server's
// /node/v1/volfs/{tenant}/{name}/{op} with the node's token, to the next
// server after a failure.
func (c *Client) VolumeTransport() http.RoundTripper { return volumeTransport{c} }

type volumeTransport struct{ c *Client }

func (t volumeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	srv := t.c.server()
	u, err := url.Parse(srv)
	if err != nil {
		return nil, err
	}
	out := req.Clone(req.Context())
	out.URL.Scheme, out.URL.Host = u.Scheme, u.Host
	out.URL.Path = strings.TrimSuffix(u.Path, "/") + Prefix + "volfs" + req.URL.Path
	out.URL.RawPath = ""
	out.Host = u.Host
	out.Header.Set("Authorization", "Bearer "+t.c.cfg.Token)
	resp, err := t.c.stream.Transport.RoundTrip(out)
	if err != nil {
		t.c.next(srv)
		return nil, err
	}
	if resp.StatusCode == http.StatusBadGateway || resp.StatusCode == http.StatusServiceUnavailable {
		t.c.next(srv)
	}
	return resp, nil
}
