package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/macro-cloud/macro/store"
)

// ParseSuspendRule reads a tenant's default suspend rule: a duration of at
// least a second (10m, 1h30m), or off.
func ParseSuspendRule(v string) (time.Duration, error) {
	if v == "off" || v == "0" || v == "never" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < time.Second {
		return 0, errorf(http.StatusBadRequest, "suspend rule %q: want a duration of 1s or more, such as 10m, or off", v)
	}
	return d, nil
}

// PUT /tenants/{name}/suspend {"after": "10m"|"off"}: the tenant's default
// auto-suspend rule, for its pods without a kr.suspend label.
func (s *Server) setSuspend(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		After *string `json:"after"`
	}
	if err := decodeBody(r, &body); err != nil {
		return err
	}
	if body.After == nil {
		return errorf(http.StatusBadRequest, `missing "after": a duration such as "10m", or "off"`)
	}
	after, err := ParseSuspendRule(*body.After)
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	t, err := s.store.SetTenantSuspend(r.Context(), name, after)
	if errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusNotFound, "tenant %q not found", name)
	}
	if err != nil {
		return err
	}
	s.log.Info("suspend rule set", "tenant", name, "after", after)
	writeJSON(w, http.StatusOK, t)
	return nil
}
