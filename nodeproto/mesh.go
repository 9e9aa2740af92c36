package nodeproto

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/macro-cloud/macro/types"
)

// MeshBackend is the control plane's view of the VPC mesh
// (control.NodeAPI.Mesh); a Backend without it serves no mesh.
type MeshBackend interface {
	Mesh(ctx context.Context, node string) (types.MeshView, error)
}

// meshPoll is how often the server looks for a change of a node's mesh
// view: a moved pod or a new key is routed within about this long.
const meshPoll = time.Second

// mesh streams the node's mesh view as JSON lines, a new line whenever it
// changes, and an empty one every few seconds to keep the stream alive.
func (h *Handler) mesh(w http.ResponseWriter, r *http.Request) {
	mb, ok := h.cfg.Backend.(MeshBackend)
	if !ok {
		writeJSONError(w, http.StatusNotFound, errors.New("this server has no mesh"))
		return
	}
	node := r.URL.Query().Get("node")
	if err := validNodeName(node); err != nil {
		writeJSONError(w, http.StatusBadRequest, err)
		return
	}
	if !h.sameNode(w, r, node) {
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	rc.Flush()
	var last []byte
	sent := time.Now()
	tick := time.NewTicker(meshPoll)
	defer tick.Stop()
	for {
		v, err := mb.Mesh(r.Context(), node)
		if err != nil {
			h.log.Warn("mesh view", "node", node, "err", err)
		} else if b, err := json.Marshal(v); err == nil && !bytes.Equal(b, last) {
			if _, err := w.Write(append(b, '\n')); err != nil {
				return
			}
			last, sent = b, time.Now()
		} else if time.Since(sent) >= 5*time.Second {
			if _, err := io.WriteString(w, "\n"); err != nil {
				return
			}
			sent = time.Now()
		}
		if rc.Flush() != nil {
			return
		}
		select {
		case <-tick.C:
		case <-r.Context().Done():
			return
		}
	}
}

// WatchMesh follows the node's mesh view, from one server after another
// as they fail; every (re)connection starts with the whole view, and only
// the latest view waits for the reader.
func (c *Client) WatchMesh(ctx context.Context, node string) <-chan types.MeshView {
	return follow[types.MeshView](ctx, c, "mesh", url.Values{"node": {node}}, true)
}
