package api

// Copying a volume into another of the same tenant with the delta-sync
// engine (kra volume copy):
//
//	POST /volumes/{name}/copy   {"to": "DST", "driver": "", "size": "", "zone": "", "verify": false}
//
// DST is made when it does not exist (the source's driver and options,
// with driver, size and zone as given), or brought up to date in place:
// only the chunks it lacks cross, from the source's node through this
// server to DST's node (the node tunnels), and DST switches to the new
// files at once, verified, at the end. A copy cut short leaves DST as it
// was; run it again and what arrived is not sent again. Refused with 409
// while a running container mounts DST; another tenant's volumes are 404.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/macro-cloud/macro/delta"
	"github.com/macro-cloud/macro/store"
	"github.com/macro-cloud/macro/types"
)

// VolumeNodes reach the volume data of other nodes (cmd/macro: the node
// tunnels). RemoteVolume is nil for a volume of this server's own node
// (or one that no node holds yet: a local volume), which VolumeFiles
// reaches.
type VolumeNodes interface {
	RemoteVolume(node, tenant, name string) *delta.Remote
}

// SetVolumeNodes wires the other nodes' volume data.
func (s *Server) SetVolumeNodes(v VolumeNodes) { s.volumeNodes = v }

// CopyRequest is the body of POST /volumes/{name}/copy.
type CopyRequest struct {
	To     string `json:"to"`
	Driver string `json:"driver,omitempty"`
	Size   string `json:"size,omitempty"`
	Zone   string `json:"zone,omitempty"`
	// Verify builds DST by reading and hashing every chunk, those it
	// already held included, instead of trusting its index for them.
	Verify bool `json:"verify,omitempty"`
}

// CopyResult says what a copy did.
type CopyResult struct {
	From       string  `json:"from"`
	To         string  `json:"to"`
	Created    bool    `json:"created"`
	Node       string  `json:"node,omitempty"` // DST's
	Files      int     `json:"files"`
	Bytes      int64   `json:"bytes"`
	Chunks     int     `json:"chunks"`
	SentChunks int     `json:"sentChunks"`
	SentBytes  int64   `json:"sentBytes"`
	Seconds    float64 `json:"seconds"`
}

func (s *Server) routeVolumeCopy(m *mux) {
	m.handle("POST /volumes/{name}/copy", s.authed(s.copyVolume))
}

func (s *Server) copyVolume(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	tenant, name := caller(r).Tenant, r.PathValue("name")
	var req CopyRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	src, err := s.store.Volume(ctx, tenant, name)
	if errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusNotFound, "no such volume: %s", name)
	} else if err != nil {
		return err
	}
	if req.To == "" {
		return errorf(http.StatusBadRequest, "copy %s: name the volume to copy into (\"to\")", name)
	}
	if req.To == name {
		return errorf(http.StatusBadRequest, "copy %s: a volume cannot be copied into itself", name)
	}
	res := CopyResult{From: name, To: req.To}
	dst, err := s.store.Volume(ctx, tenant, req.To)
	switch {
	case errors.Is(err, store.ErrNotFound):
		if dst, err = s.createCopyTarget(ctx, tenant, src, req); err != nil {
			return err
		}
		res.Created = true
	case err != nil:
		return err
	default:
		if req.Driver != "" || req.Size != "" || req.Zone != "" {
			return errorf(http.StatusBadRequest, "copy %s: volume %s exists: --driver, --size and --zone only make a new one (remove it first, or copy into another name)", name, req.To)
		}
		if err := s.checkVolumeIdle(ctx, tenant, req.To); err != nil {
			return err
		}
	}
	res.Node = dst.Node
	from, _, err := s.volumeEnds(ctx, src)
	if err != nil {
		return err
	}
	_, to, err := s.volumeEnds(ctx, dst)
	if err != nil {
		return err
	}
	if req.Verify {
		switch r := to.(type) {
		case *delta.TreeReceiver:
			r.VerifyAll = true
		case *delta.Remote:
			r.VerifyAll = true
		}
	}
	start := time.Now()
	st, err := delta.Sync(ctx, from, to)
	if err != nil {
		s.log.Warn("volume copy failed", "tenant", tenant, "from", name, "to", req.To, "err", err)
		return copyError(name, req.To, err)
	}
	res.Files, res.Bytes, res.Chunks = st.Files, st.Bytes, st.Chunks
	res.SentChunks, res.SentBytes = st.SentChunks, st.SentBytes
	res.Seconds = time.Since(start).Seconds()
	s.log.Info("volume copied", "tenant", tenant, "from", name, "to", req.To, "files", st.Files, "bytes", st.Bytes, "sentBytes", st.SentBytes)
	writeJSON(w, http.StatusOK, res)
	return nil
}

// createCopyTarget makes DST as the source is, but for what the request
// changes.
func (s *Server) createCopyTarget(ctx context.Context, tenant string, src types.Volume, req CopyRequest) (types.Volume, error) {
	vs, err := s.volumeService()
	if err != nil {
		return types.Volume{}, err
	}
	driver := src.Driver
	opts := maps.Clone(src.Options)
	if req.Driver != "" && req.Driver != driver {
		driver = req.Driver
		opts = nil // the source's options are its driver's
	}
	if opts == nil {
		opts = map[string]string{}
	}
	if req.Size != "" {
		opts["size"] = req.Size
	}
	if req.Zone != "" {
		opts["zone"] = req.Zone
	}
	if driver == "local" {
		opts = nil // local takes no options
	}
	labels := maps.Clone(src.Labels)
	delete(labels, "com.docker.volume.anonymous") // DST has a name
	return vs.CreateVolume(ctx, tenant, req.To, driver, opts, labels)
}

// volumeEnds are a volume's files as the engine's source and receiver, on
// this server's node or through the tunnel of the node that holds it.
func (s *Server) volumeEnds(ctx context.Context, v types.Volume) (delta.Source, delta.Receiver, error) {
	if s.volumeNodes != nil {
		if rem := s.volumeNodes.RemoteVolume(v.Node, v.Tenant, v.Name); rem != nil {
			return rem, rem, nil
		}
	}
	if s.volumeFiles == nil {
		return nil, nil, errorf(http.StatusServiceUnavailable, "this server reaches no volume's files")
	}
	root, err := s.volumeFiles.VolumeRoot(ctx, v.Tenant, v.Name)
	if err != nil {
		return nil, nil, err
	}
	state := filepath.Join(filepath.Dir(root), ".delta")
	return delta.SharedSource(root, state), delta.SharedReceiver(root, state, false, false), nil
}

// copyError gives an engine's error its status and says what to do.
func copyError(from, to string, err error) error {
	status := delta.StatusOf(err)
	msg := err.Error()
	var he *delta.HTTPError
	if errors.As(err, &he) {
		msg = he.Message
	}
	if status >= 500 || status == http.StatusConflict {
		msg += fmt.Sprintf(" (volume %s is as it was, or complete: run the copy again; what arrived is not sent twice)", to)
	}
	if status < 400 || status > 599 {
		status = http.StatusInternalServerError
	}
	return errorf(status, "copy %s to %s: %s", from, to, strings.TrimSpace(msg))
}

// proxyVolumeData relays one request of the engine's transport to the node
// that holds the volume (export and import of a volume of another node).
func proxyVolumeData(w http.ResponseWriter, r *http.Request, rem *delta.Remote, op string) error {
	u := strings.TrimRight(rem.URL, "/") + "/" + op
	if r.URL.RawQuery != "" {
		u += "?" + r.URL.RawQuery
	}
	req, err := http.NewRequestWithContext(r.Context(), r.Method, u, r.Body)
	if err != nil {
		return err
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	if r.Method == http.MethodGet {
		req.Body = nil
	}
	hc := rem.Client
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return errorf(http.StatusBadGateway, "the volume's node: %v", err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		w.Header().Set("Content-Type", ct)
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
	return nil
}
