package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/macro-cloud/macro/auth"
	"github.com/macro-cloud/macro/store"
	"github.com/macro-cloud/macro/types"
)

// NewJoinToken is the answer of POST /join-tokens (admin): the only time
// the token itself is shown.
type NewJoinToken struct {
	JoinTokenInfo
	Token string `json:"token"`
	// CAHash pins the cluster's CA for the machine that joins with the
	// token: "sha256:<hex of the CA certificate's DER>".
	CAHash string `json:"caHash"`
}

// JoinTokenInfo is what GET /join-tokens shows of a join token.
type JoinTokenInfo struct {
	ID      string     `json:"id"`
	Kind    string     `json:"kind"`
	Created time.Time  `json:"created"`
	Expires *time.Time `json:"expires,omitempty"`
	// Node: the token is that node's credential (types.JoinToken.Node).
	Node string `json:"node,omitempty"`
}

func joinTokenInfo(t types.JoinToken) JoinTokenInfo {
	i := JoinTokenInfo{ID: t.ID, Kind: t.Kind, Created: t.Created.UTC(), Node: t.Node}
	if !t.Expires.IsZero() {
		e := t.Expires.UTC()
		i.Expires = &e
	}
	return i
}

// maxJoinTTL bounds a join token's life; 0 (never expires) is allowed.
const maxJoinTTL = 10 * 365 * 24 * time.Hour

// POST /join-tokens {"kind": "server"|"node", "ttl": "24h"} (admin).
func (s *Server) createJoinToken(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Kind string `json:"kind"`
		TTL  string `json:"ttl"`
	}
	if err := decodeBody(r, &body); err != nil {
		return err
	}
	if body.Kind != types.JoinServer && body.Kind != types.JoinNode {
		return errorf(http.StatusBadRequest, "join token kind %q: want server or node", body.Kind)
	}
	var ttl time.Duration
	if body.TTL != "" {
		d, err := time.ParseDuration(body.TTL)
		if err != nil || d < 0 || d > maxJoinTTL {
			return errorf(http.StatusBadRequest, "ttl %q: give a duration such as 30m or 24h (0: never expires)", body.TTL)
		}
		ttl = d
	}
	text, rec, err := auth.NewJoinToken(body.Kind, ttl, s.now().UTC().Truncate(time.Second))
	if err != nil {
		return err
	}
	if err := s.store.CreateJoinToken(r.Context(), &rec); err != nil {
		return err
	}
	s.log.Info("join token created", "token", rec.ID, "kind", rec.Kind, "expires", rec.Expires)
	out := NewJoinToken{JoinTokenInfo: joinTokenInfo(rec), Token: text}
	if s.ca != nil {
		out.CAHash = auth.CAHash(s.ca.Cert)
	}
	writeJSON(w, http.StatusCreated, out)
	return nil
}

// GET /join-tokens (admin).
func (s *Server) listJoinTokens(w http.ResponseWriter, r *http.Request) error {
	ts, err := s.store.JoinTokens(r.Context())
	if err != nil {
		return err
	}
	out := make([]JoinTokenInfo, 0, len(ts))
	for _, t := range ts {
		out = append(out, joinTokenInfo(t))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// DELETE /join-tokens/{id} (admin).
func (s *Server) deleteJoinToken(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := s.store.DeleteJoinToken(r.Context(), id); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return errorf(http.StatusNotFound, "no join token %q", id)
		}
		return err
	}
	s.log.Info("join token removed", "token", id)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
