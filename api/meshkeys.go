package api

import (
	"errors"
	"net/http"

	"github.com/macro-cloud/macro/store"
)

// RotatedKey is the answer of POST /nodes/{name}/rotate-key (admin).
type RotatedKey struct {
	Name string `json:"name"`
	// Generation is the key generation the node is asked for; it makes a
	// new key and registers its public half within about a second (when
	// it is up), and the other nodes follow.
	Generation int64 `json:"generation"`
}

// POST /nodes/{name}/rotate-key (admin): the node makes a new mesh key.
func (s *Server) rotateNodeKey(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	gen, err := s.store.RotateMeshKey(r.Context(), name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return errorf(http.StatusNotFound, "no node %q", name)
	case err != nil:
		return err
	}
	s.log.Info("mesh key rotation asked", "node", name, "generation", gen)
	writeJSON(w, http.StatusOK, RotatedKey{Name: name, Generation: gen})
	return nil
}
