package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/macro-cloud/macro/auth"
	"github.com/macro-cloud/macro/sched"
	"github.com/macro-cloud/macro/store"
	"github.com/macro-cloud/macro/types"
	"github.com/macro-cloud/macro/volume"
)

// CreateTenant validates and stores a new tenant.
func (s *Server) CreateTenant(ctx context.Context, name string, quota types.Quota) (types.Tenant, error) {
	if err := ValidTenantName(name); err != nil {
		return types.Tenant{}, err
	}
	if err := validQuota(quota); err != nil {
		return types.Tenant{}, err
	}
	t := types.Tenant{Name: name, Created: s.now().UTC().Truncate(time.Second), Quota: quota}
	if err := s.store.CreateTenant(ctx, &t); err != nil {
		if errors.Is(err, store.ErrExists) {
			return t, errorf(http.StatusConflict, "tenant %q already exists", name)
		}
		return t, err
	}
	s.log.Info("tenant created", "tenant", name)
	return t, nil
}

// NewToken is the answer of POST /tenants/{name}/tokens: the only time the
// token itself is shown.
type NewToken struct {
	TokenInfo
	Token string `json:"token"`
}

// TokenInfo is what GET /tenants/{name}/tokens shows of a token.
type TokenInfo struct {
	ID          string     `json:"id"`
	Tenant      string     `json:"tenant"`
	Created     time.Time  `json:"created"`
	LastUsed    *time.Time `json:"lastUsed,omitempty"`
	Description string     `json:"description,omitempty"`
}

func tokenInfo(t types.Token) TokenInfo {
	i := TokenInfo{ID: t.ID, Tenant: t.Tenant, Created: t.Created.UTC(), Description: t.Description}
	if !t.LastUsed.IsZero() {
		u := t.LastUsed.UTC()
		i.LastUsed = &u
	}
	return i
}

// CreateToken makes and stores a new access token of an existing tenant
// and returns it: the only time its text exists outside the caller.
func (s *Server) CreateToken(ctx context.Context, tenant, description string) (NewToken, error) {
	if len(description) > 200 {
		return NewToken{}, errorf(http.StatusBadRequest, "description longer than 200 characters")
	}
	text, rec, err := auth.NewToken(tenant, s.now().UTC().Truncate(time.Second))
	if err != nil {
		return NewToken{}, err
	}
	rec.Description = description
	if err := s.store.CreateToken(ctx, &rec); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return NewToken{}, errorf(http.StatusNotFound, "tenant %q not found", tenant)
		}
		return NewToken{}, err
	}
	s.log.Info("token created", "tenant", tenant, "token", rec.ID)
	return NewToken{TokenInfo: tokenInfo(rec), Token: text}, nil
}

func (s *Server) createTenant(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Name  string      `json:"name"`
		Quota types.Quota `json:"quota"`
	}
	if err := decodeBody(r, &body); err != nil {
		return err
	}
	t, err := s.CreateTenant(r.Context(), body.Name, body.Quota)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, t)
	return nil
}

func (s *Server) listTenants(w http.ResponseWriter, r *http.Request) error {
	ts, err := s.store.Tenants(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ts)
	return nil
}

// tenant reads the tenant of the path's {name}, 404 when there is none.
func (s *Server) tenant(r *http.Request) (types.Tenant, error) {
	name := r.PathValue("name")
	t, err := s.store.Tenant(r.Context(), name)
	if errors.Is(err, store.ErrNotFound) {
		return t, errorf(http.StatusNotFound, "tenant %q not found", name)
	}
	return t, err
}

func (s *Server) getTenant(w http.ResponseWriter, r *http.Request) error {
	t, err := s.tenant(r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, t)
	return nil
}

func (s *Server) createTokenHandler(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Description string `json:"description"`
	}
	if err := decodeBody(r, &body); err != nil {
		return err
	}
	t, err := s.tenant(r)
	if err != nil {
		return err
	}
	tok, err := s.CreateToken(r.Context(), t.Name, body.Description)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, tok)
	return nil
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) error {
	t, err := s.tenant(r)
	if err != nil {
		return err
	}
	toks, err := s.store.Tokens(r.Context(), t.Name)
	if err != nil {
		return err
	}
	out := make([]TokenInfo, 0, len(toks))
	for _, tok := range toks {
		out = append(out, tokenInfo(tok))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) deleteToken(w http.ResponseWriter, r *http.Request) error {
	t, err := s.tenant(r)
	if err != nil {
		return err
	}
	id := r.PathValue("id")
	revoked, err := s.store.RevokeToken(r.Context(), t.Name, id, s.now())
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return errorf(http.StatusNotFound, "tenant %q has no token %q", t.Name, id)
		}
		return err
	}
	s.noteRevoked(revoked)
	s.log.Info("token revoked", "tenant", t.Name, "token", id, "certificates", len(revoked))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func validQuota(q types.Quota) error {
	if q.MemoryBytes < 0 || q.Pods < 0 || q.ImageBytes < 0 || q.VolumeBytes < 0 || q.Volumes < 0 {
		return errorf(http.StatusBadRequest, "invalid quota: limits cannot be negative (0 means no limit)")
	}
	return nil
}

// PUT /tenants/{name}/quota: the body is the whole new quota (a zero
// field lifts that limit). Lowering a limit below what the tenant uses
// takes nothing away: it refuses what would add to it.
func (s *Server) setQuota(w http.ResponseWriter, r *http.Request) error {
	var q types.Quota
	if err := decodeBody(r, &q); err != nil {
		return err
	}
	if err := validQuota(q); err != nil {
		return err
	}
	name := r.PathValue("name")
	t, err := s.store.SetTenantQuota(r.Context(), name, q)
	if errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusNotFound, "tenant %q not found", name)
	}
	if err != nil {
		return err
	}
	s.log.Info("quota set", "tenant", name, "pods", q.Pods, "memory", q.MemoryBytes, "images", q.ImageBytes, "volumeBytes", q.VolumeBytes, "volumes", q.Volumes)
	writeJSON(w, http.StatusOK, t)
	return nil
}

// PUT /tenants/{name}/egress {"egress": bool}: the tenant's pods may
// reach outside the VPC, or not. Every node's router follows the change
// (store.FollowTenantNets, through the node protocol on agents).
func (s *Server) setEgress(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Egress *bool `json:"egress"`
	}
	if err := decodeBody(r, &body); err != nil {
		return err
	}
	if body.Egress == nil {
		return errorf(http.StatusBadRequest, `missing "egress": true or false`)
	}
	name := r.PathValue("name")
	t, err := s.store.SetTenantEgress(r.Context(), name, *body.Egress)
	if errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusNotFound, "tenant %q not found", name)
	}
	if err != nil {
		return err
	}
	s.log.Info("egress set", "tenant", name, "egress", *body.Egress)
	writeJSON(w, http.StatusOK, t)
	return nil
}

// noteRevoked tells this server's authentication at once about
// certificates it revoked (other servers learn it from their watch).
func (s *Server) noteRevoked(rcs []types.RevokedCert) {
	if s.auth != nil && s.auth.Revocations() != nil && len(rcs) > 0 {
		s.auth.Revocations().Add(rcs...)
	}
}

// GET /tenants/{name}/usage: what the tenant uses of what its quota
// bounds, counted as the quota checks count it.
func (s *Server) getUsage(w http.ResponseWriter, r *http.Request) error {
	t, err := s.tenant(r)
	if err != nil {
		return err
	}
	tp, err := s.store.ReadTenantPods(r.Context(), t.Name)
	if err != nil {
		return err
	}
	u := types.Usage{Pods: len(tp.Pods)}
	for _, p := range tp.Pods {
		if types.HoldsMemory(p, tp.Status(p.ID)) {
			u.MemoryBytes += sched.PodMemory(p.Spec)
		}
	}
	if s.images != nil {
		u.ImageBytes = s.images.ImageBytes(r.Context(), t.Name)
	}
	vols, err := s.store.Volumes(r.Context(), t.Name)
	if err != nil {
		return err
	}
	u.Volumes = len(vols)
	for _, v := range vols {
		u.VolumeBytes += volume.QuotaSize(v)
	}
	writeJSON(w, http.StatusOK, u)
	return nil
}
