package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/macro-cloud/macro/store"
	"github.com/macro-cloud/macro/types"
)

// VolumeKeyMaker mints per-volume access keys: the secret to show once and
// the record to store (access.Keys).
type VolumeKeyMaker interface {
	New(v types.Volume, readOnly bool, description string, now time.Time) (string, types.VolumeKey, error)
}

// VolumeKey is an access key of a volume in the answers of /volumekeys.
// Secret is there once, in the answer that creates the key.
type VolumeKey struct {
	ID string `json:"id"`
	// Volume is "" for a key of all the tenant's volumes.
	Volume      string    `json:"volume"`
	ReadOnly    bool      `json:"readOnly"`
	Description string    `json:"description,omitempty"`
	Created     time.Time `json:"created"`
	Secret      string    `json:"secret,omitempty"`
}

func volumeKeyOf(k types.VolumeKey) VolumeKey {
	return VolumeKey{ID: k.ID, Volume: k.Volume, ReadOnly: k.ReadOnly, Description: k.Description, Created: k.Created}
}

// GET /volumekeys[?volume=NAME]: the caller's volume access keys, of one
// volume or of all.
func (s *Server) listVolumeKeys(w http.ResponseWriter, r *http.Request) error {
	tenant := caller(r).Tenant
	name := r.URL.Query().Get("volume")
	if name != "" {
		if _, err := s.store.Volume(r.Context(), tenant, name); errors.Is(err, store.ErrNotFound) {
			return errorf(http.StatusNotFound, "no such volume: %s", name)
		} else if err != nil {
			return err
		}
	}
	keys, err := s.store.VolumeKeys(r.Context(), tenant, name)
	if err != nil {
		return err
	}
	out := []VolumeKey{}
	for _, k := range keys {
		out = append(out, volumeKeyOf(k))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// POST /volumekeys {"volume": "data", "readOnly": true, "description": ""}:
// a new access key of a volume ("volume": "" or absent with "all": true
// for all the caller's volumes); the answer holds its secret, which is
// not shown again.
func (s *Server) createVolumeKey(w http.ResponseWriter, r *http.Request) error {
	if s.volumeKeys == nil {
		return errorf(http.StatusNotImplemented, "this server does not serve volume access")
	}
	var body struct {
		Volume      string `json:"volume"`
		All         bool   `json:"all"`
		ReadOnly    bool   `json:"readOnly"`
		Description string `json:"description"`
	}
	if err := decodeBody(r, &body); err != nil {
		return err
	}
	if len(body.Description) > 256 {
		return errorf(http.StatusBadRequest, "the description is longer than 256 bytes")
	}
	tenant := caller(r).Tenant
	v := types.Volume{Tenant: tenant}
	switch {
	case body.All && body.Volume != "":
		return errorf(http.StatusBadRequest, "name a volume or ask for all, not both")
	case !body.All && body.Volume == "":
		return errorf(http.StatusBadRequest, "name the volume the key is for (\"volume\"), or ask for a key of all volumes (\"all\": true)")
	case body.Volume != "":
		var err error
		if v, err = s.store.Volume(r.Context(), tenant, body.Volume); errors.Is(err, store.ErrNotFound) {
			return errorf(http.StatusNotFound, "no such volume: %s", body.Volume)
		} else if err != nil {
			return err
		}
	}
	secret, k, err := s.volumeKeys.New(v, body.ReadOnly, body.Description, s.now().UTC())
	if err != nil {
		return err
	}
	if err := s.store.CreateVolumeKey(r.Context(), &k); errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusNotFound, "no such volume: %s", body.Volume)
	} else if err != nil {
		return err
	}
	out := volumeKeyOf(k)
	out.Secret = secret
	writeJSON(w, http.StatusCreated, out)
	return nil
}

// DELETE /volumekeys/{id}: revoke an access key of the caller's.
func (s *Server) deleteVolumeKey(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := s.store.DeleteVolumeKey(r.Context(), caller(r).Tenant, id); errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusNotFound, "no such volume key: %s", id)
	} else if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
