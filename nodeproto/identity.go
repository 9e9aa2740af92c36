package nodeproto

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// Node identity. A node join token admits any machine, under any name; it
// is exchanged once, at a node's first start, for a node credential: a
// token bound to the node's name (POST credential, {"node": NAME} ->
// {"token": ...}), which the agent keeps in its data dir and uses from then
// on. A request made with a credential speaks for that node alone (its
// registration, assignments, tunnel, mesh), and only a credential may ask
// for a volume's data, which the servers give a node only when one of its
// pods uses the volume or it keeps a copy (VolumeDirectory.Admit). A name
// that has a credential is not given another: the admin removes the old
// one first (macro admin join-token rm), as for a machine that is gone.

type nodeKey struct{}

// NodeOf is the node the request's credential is bound to; ok is false for
// a join token, which binds none.
func NodeOf(ctx context.Context) (node string, ok bool) {
	node, ok = ctx.Value(nodeKey{}).(string)
	return node, ok && node != ""
}

func withNode(ctx context.Context, node string) context.Context {
	return context.WithValue(ctx, nodeKey{}, node)
}

// ErrNotBound refuses a volume's data to a request made with a join token.
var ErrNotBound = errors.New("a node credential is needed (the agent gets one with its join token at its first start): a join token speaks for no node")

// sameNode refuses (403) a request bound to one node that speaks for
// another, and a join token's request that speaks for a node that has a
// credential: a join token admits a new machine, it does not take the
// place of one that joined (its registration, pods and their secrets).
func (h *Handler) sameNode(w http.ResponseWriter, r *http.Request, name string) bool {
	if bound, ok := NodeOf(r.Context()); ok {
		if bound != name {
			writeJSONError(w, http.StatusForbidden, fmt.Errorf("this credential is node %s's, not node %s's", bound, name))
			return false
		}
		return true
	}
	if h.cfg.Credentialed == nil {
		return true
	}
	has, err := h.cfg.Credentialed(r.Context(), name)
	if err != nil {
		writeJSONError(w, http.StatusServiceUnavailable, err)
		return false
	}
	if has {
		writeJSONError(w, http.StatusForbidden, fmt.Errorf("node %s joined with a credential of its own; a join token does not speak for it (for a machine that is gone: macro admin join-token rm, then join again)", name))
		return false
	}
	return true
}

// credentialRequest and credentialReply are the bodies of POST credential.
type credentialRequest struct {
	Node string `json:"node"`
}

type credentialReply struct {
	Token string `json:"token"`
}

// credential exchanges a join token for a credential of the node named.
func (h *Handler) credential(w http.ResponseWriter, r *http.Request) {
	var q credentialRequest
	if err := decodeBody(r, &q); err != nil {
		writeJSONError(w, http.StatusBadRequest, err)
		return
	}
	if err := validNodeName(q.Node); err != nil {
		writeJSONError(w, http.StatusBadRequest, err)
		return
	}
	if bound, ok := NodeOf(r.Context()); ok {
		writeJSONError(w, http.StatusForbidden, fmt.Errorf("node %s already has a credential; a join token gets one", bound))
		return
	}
	if h.cfg.Credential == nil {
		writeJSONError(w, http.StatusNotImplemented, errors.New("this server gives no node credentials"))
		return
	}
	tok, err := h.cfg.Credential(r.Context(), q.Node)
	if errors.Is(err, ErrCredentialTaken) {
		writeJSONError(w, http.StatusConflict, err)
		return
	}
	if err != nil {
		writeJSONError(w, http.StatusServiceUnavailable, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(credentialReply{Token: tok})
}

// ErrCredentialTaken: the node name has a credential already.
var ErrCredentialTaken = errors.New("the node name has a credential already")

// NodeCredential asks the servers for a credential of node in exchange
// for the client's join token.
func (c *Client) NodeCredential(ctx context.Context, node string) (string, error) {
	b, _ := json.Marshal(credentialRequest{Node: node})
	resp, err := c.request(ctx, c.hc, "POST", "credential", nil, b)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var rep credentialReply
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		return "", fmt.Errorf("node credential: %w", err)
	}
	if rep.Token == "" {
		return "", errors.New("node credential: empty answer")
	}
	return rep.Token, nil
}
