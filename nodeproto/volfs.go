package nodeproto

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"

	"github.com/macro-cloud/macro/volume/volfs"
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

// VolumeReplicas is what a node that keeps replicas serves to primaries
// (agent.Agent): the writes of a volume whose replica it keeps (volfs
// operations with a sequence number), and GET .../seq, the number of the
// last one it applied.
type VolumeReplicas interface {
	VolumeReplicaFS(tenant, name string) http.Handler
}

// VolumeRoute is where a volume's operations go (volfs.Route).
type VolumeRoute = volfs.Route

// VolumeDirectory is the servers' side of volume replication (the store):
// where a volume's operations go, promoting a replica when the primary's
// node is dead; and the replica states the primary reports.
type VolumeDirectory interface {
	// Route answers where the volume's operations go; an error (no
	// such volume, not a network volume) refuses the request.
	Route(ctx context.Context, tenant, name string) (VolumeRoute, error)
	// CheckReplica admits a write that the primary of epoch sends to
	// replica node.
	CheckReplica(ctx context.Context, tenant, name, node string, epoch int64) error
	// SetReplicaState records a replica's state, if epoch is still the
	// volume's.
	SetReplicaState(ctx context.Context, tenant, name, node, state string, epoch int64) error
	// Admit lets node ask for the volume's data when it has business
	// with it: a pod assigned to it mounts the volume, it keeps a copy,
	// or it is a server's (WebDAV and S3); ErrNoBusiness otherwise.
	Admit(ctx context.Context, tenant, name, node string) error
}

// ErrNoBusiness refuses a node a volume that none of its pods uses and of
// which it keeps no copy: answered 404, as a volume it cannot see.
var ErrNoBusiness = errors.New("no such volume for this node: none of its pods uses it")

// admit answers a node's request for a volume's data: only a credential
// bound to a node (identity.go) with business with the volume passes.
func (h *Handler) admit(w http.ResponseWriter, r *http.Request, tenant, name string) bool {
	node, ok := NodeOf(r.Context())
	if !ok {
		writeJSONError(w, http.StatusForbidden, ErrNotBound)
		return false
	}
	err := h.cfg.Volumes.Admit(r.Context(), tenant, name, node)
	switch {
	case err == nil:
		return true
	case errors.Is(err, ErrNoBusiness):
		h.log.Warn("volume refused to a node", "node", node, "tenant", tenant, "volume", name)
		writeJSONError(w, http.StatusNotFound, fmt.Errorf("volume %s: %w", name, err))
	default:
		writeJSONError(w, http.StatusServiceUnavailable, err)
	}
	return false
}

// volfsRoutes serves the volfs operations of the node's own volumes on its
// tunnel, and the writes of the volumes it keeps replicas of.
func volfsRoutes(m *http.ServeMux, ops Ops) {
	if vf, ok := ops.(VolumeFiles); ok {
		m.HandleFunc("/volfs/{tenant}/{name}/{op}", func(w http.ResponseWriter, r *http.Request) {
			vf.VolumeFS(r.PathValue("tenant"), r.PathValue("name")).ServeHTTP(w, r)
		})
	}
	if vr, ok := ops.(VolumeReplicas); ok {
		m.HandleFunc("/volrep/{tenant}/{name}/{op}", func(w http.ResponseWriter, r *http.Request) {
			vr.VolumeReplicaFS(r.PathValue("tenant"), r.PathValue("name")).ServeHTTP(w, r)
		})
	}
}

// VolumeSeq asks a node the sequence number of the last write it applied
// to its copy of a volume.
func (n *Remote) VolumeSeq(ctx context.Context, tenant, name string) (uint64, error) {
	resp, err := n.do(ctx, "GET", "/volrep/"+url.PathEscape(tenant)+"/"+url.PathEscape(name)+"/seq", nil, nil, nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var seq uint64
	if err := json.NewDecoder(resp.Body).Decode(&seq); err != nil {
		return 0, fmt.Errorf("node %s: volume seq: %w", n.node, err)
	}
	return seq, nil
}

// VolumeDirectWriters asks a node which of its pods bind its copy of a
// volume directly, or may (agent.DirectWriters).
func (n *Remote) VolumeDirectWriters(ctx context.Context, tenant, name string) ([]string, error) {
	resp, err := n.do(ctx, "GET", "/volrep/"+url.PathEscape(tenant)+"/"+url.PathEscape(name)+"/direct", nil, nil, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out []string
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("node %s: volume direct writers: %w", n.node, err)
	}
	return out, nil
}

// volfs (on a server) passes a node's volume operation on to the node that
// holds the volume: through its tunnel, or to this server's own agent.
func (h *Handler) volfs(w http.ResponseWriter, r *http.Request) {
	tenant, name, op := r.PathValue("tenant"), r.PathValue("name"), r.PathValue("op")
	if h.cfg.Volumes == nil {
		writeJSONError(w, http.StatusNotImplemented, errors.New("this server does not serve remote volumes"))
		return
	}
	if !h.admit(w, r, tenant, name) {
		return
	}
	rt, err := h.cfg.Volumes.Route(r.Context(), tenant, name)
	if err != nil {
		writeJSONError(w, http.StatusNotFound, err)
		return
	}
	if op == "route" {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(rt)
		return
	}
	r.Header.Del("Authorization")
	volfs.ClearRoute(r.Header)
	volfs.SetRoute(r.Header, rt)
	h.toNode(w, r, rt.Primary, "/volfs/"+url.PathEscape(tenant)+"/"+url.PathEscape(name)+"/"+url.PathEscape(op), func(o Ops) http.Handler {
		if vf, ok := o.(VolumeFiles); ok {
			return vf.VolumeFS(tenant, name)
		}
		return nil
	})
}

// volrep (on a server) passes a write that a volume's primary sends to one
// of its replicas on to that replica's node, if the primary's epoch is
// still the volume's (a deposed primary is fenced off); POST .../state
// records a replica's state.
func (h *Handler) volrep(w http.ResponseWriter, r *http.Request) {
	tenant, name, node, op := r.PathValue("tenant"), r.PathValue("name"), r.PathValue("node"), r.PathValue("op")
	if h.cfg.Volumes == nil {
		writeJSONError(w, http.StatusNotImplemented, errors.New("this server does not serve remote volumes"))
		return
	}
	if !h.admit(w, r, tenant, name) {
		return
	}
	epoch, err := strconv.ParseInt(r.Header.Get(volfs.HeaderEpoch), 10, 64)
	if err != nil {
		writeJSONError(w, http.StatusBadRequest, errors.New("volume replication: no epoch"))
		return
	}
	if op == "state" {
		state := r.URL.Query().Get("state")
		if err := h.cfg.Volumes.SetReplicaState(r.Context(), tenant, name, node, state, epoch); err != nil {
			writeJSONError(w, http.StatusConflict, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if err := h.cfg.Volumes.CheckReplica(r.Context(), tenant, name, node, epoch); err != nil {
		writeJSONError(w, http.StatusConflict, err)
		return
	}
	r.Header.Del("Authorization")
	h.toNode(w, r, node, "/volrep/"+url.PathEscape(tenant)+"/"+url.PathEscape(name)+"/"+url.PathEscape(op), func(o Ops) http.Handler {
		if vr, ok := o.(VolumeReplicas); ok {
			return vr.VolumeReplicaFS(tenant, name)
		}
		return nil
	})
}

// toNode passes a request on to node at path: to this server's own agent
// (local picks its handler) or through the node's tunnel.
func (h *Handler) toNode(w http.ResponseWriter, r *http.Request, node, target string, local func(Ops) http.Handler) {
	if h.cfg.LocalNode != "" && node == h.cfg.LocalNode && h.cfg.LocalOps != nil {
		lh := local(h.cfg.LocalOps)
		if lh == nil {
			writeJSONError(w, http.StatusNotImplemented, fmt.Errorf("node %s serves no volumes", node))
			return
		}
		lh.ServeHTTP(w, r)
		return
	}
	if h.cfg.Tunnels == nil {
		writeJSONError(w, http.StatusBadGateway, fmt.Errorf("node %s is not reachable from this server", node))
		return
	}
	remote := h.cfg.Tunnels.Remote(node)
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
// /node/v1/volfs/{tenant}/{name}/{op} with the node's token (and one for
// http://volrep/... to /node/v1/volrep/...), to the next server after a
// failure.
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
	route := req.URL.Host
	if route != "volfs" && route != "volrep" {
		return nil, fmt.Errorf("volume transport: no route %q", route)
	}
	out.URL.Path = strings.TrimSuffix(u.Path, "/") + Prefix + route + req.URL.Path
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
