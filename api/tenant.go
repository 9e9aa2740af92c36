package api

import (
	"errors"
	"net/http"
	"sort"
	"time"

	"github.com/macro-cloud/macro/auth"
	"github.com/macro-cloud/macro/store"
	"github.com/macro-cloud/macro/types"
)

// GET /ca: the cluster CA certificate, for clients to pin.
func (s *Server) getCA(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/x-pem-file")
	w.Write(s.ca.CertPEM)
	return nil
}

// Identity is the answer of GET /whoami.
type Identity struct {
	Tenant  string `json:"tenant"`
	Cluster string `json:"cluster,omitempty"`
	Auth    string `json:"auth"` // "token" or "certificate"
}

func (s *Server) whoami(w http.ResponseWriter, r *http.Request) error {
	id := caller(r)
	writeJSON(w, http.StatusOK, Identity{Tenant: id.Tenant, Cluster: s.cluster, Auth: id.Method})
	return nil
}

// Certs is the answer of POST /certs: a new client certificate of the
// caller's tenant, its key and the CA, in PEM.
type Certs struct {
	CA      string    `json:"ca"`
	Cert    string    `json:"cert"`
	Key     string    `json:"key"`
	Cluster string    `json:"cluster,omitempty"`
	Tenant  string    `json:"tenant"`
	Expires time.Time `json:"expires"`
}

// POST /certs. Only an access token may ask: a certificate does not renew
// itself, so that revoking a tenant's tokens ends its supply of
// certificates.
func (s *Server) createCerts(w http.ResponseWriter, r *http.Request) error {
	id := caller(r)
	if id.Method != auth.MethodToken {
		return errorf(http.StatusForbidden, "client certificates are issued for an access token only: send Authorization: Bearer kr_...")
	}
	var body struct{}
	if err := decodeBody(r, &body); err != nil {
		return err
	}
	c, err := s.ca.IssueClient(id.Tenant, s.now())
	if err != nil {
		return err
	}
	// Recorded under its token, so that revoking the token (or removing
	// the tenant) revokes it; a token revoked meanwhile gets nothing.
	rec := types.Cert{Serial: c.Serial, Tenant: id.Tenant, TokenID: id.TokenID, Issued: s.now().UTC(), Expires: c.Expires.UTC()}
	if err := s.store.RecordCert(r.Context(), rec); err != nil {
		if errors.Is(err, store.ErrTokenGone) {
			return auth.ErrBadToken
		}
		return err
	}
	s.log.Info("client certificate issued", "tenant", id.Tenant, "token", id.TokenID, "expires", c.Expires)
	writeJSON(w, http.StatusCreated, Certs{
		CA: string(s.ca.CertPEM), Cert: string(c.CertPEM), Key: string(c.KeyPEM),
		Cluster: s.cluster, Tenant: id.Tenant, Expires: c.Expires.UTC(),
	})
	return nil
}

// Namespace is a namespace as the API shows it.
type Namespace struct {
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
	Pods    int       `json:"pods"`
}

// namespaces returns the tenant's namespaces by name: the explicitly
// created ones, those its pods name, and the default one.
func (s *Server) namespaces(r *http.Request, tenant string) (map[string]*Namespace, error) {
	ctx := r.Context()
	stored, err := s.store.Namespaces(ctx, tenant)
	if err != nil {
		return nil, err
	}
	pods, err := s.store.Pods(ctx, tenant)
	if err != nil {
		return nil, err
	}
	out := map[string]*Namespace{}
	for _, n := range stored {
		out[n.Name] = &Namespace{Name: n.Name, Created: n.Created.UTC()}
	}
	for _, p := range pods {
		name := p.Namespace
		if name == "" {
			name = types.DefaultNamespace
		}
		n := out[name]
		if n == nil {
			n = &Namespace{Name: name, Created: p.Created.UTC()}
			out[name] = n
		}
		if !p.Created.IsZero() && (n.Created.IsZero() || p.Created.Before(n.Created)) {
			n.Created = p.Created.UTC()
		}
		n.Pods++
	}
	if out[types.DefaultNamespace] == nil {
		t, err := s.store.Tenant(ctx, tenant)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		out[types.DefaultNamespace] = &Namespace{Name: types.DefaultNamespace, Created: t.Created.UTC()}
	}
	return out, nil
}

func (s *Server) listNamespaces(w http.ResponseWriter, r *http.Request) error {
	m, err := s.namespaces(r, caller(r).Tenant)
	if err != nil {
		return err
	}
	list := make([]Namespace, 0, len(m))
	for _, n := range m {
		list = append(list, *n)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	writeJSON(w, http.StatusOK, list)
	return nil
}

func (s *Server) getNamespace(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	m, err := s.namespaces(r, caller(r).Tenant)
	if err != nil {
		return err
	}
	n := m[name]
	if n == nil {
		return errorf(http.StatusNotFound, "namespace %q not found", name)
	}
	writeJSON(w, http.StatusOK, n)
	return nil
}

func (s *Server) createNamespace(w http.ResponseWriter, r *http.Request) error {
	tenant := caller(r).Tenant
	var body struct {
		Name string `json:"name"`
	}
	if err := decodeBody(r, &body); err != nil {
		return err
	}
	if err := ValidNamespaceName(body.Name); err != nil {
		return err
	}
	m, err := s.namespaces(r, tenant)
	if err != nil {
		return err
	}
	if m[body.Name] != nil {
		return errorf(http.StatusConflict, "namespace %q already exists", body.Name)
	}
	n := types.Namespace{Name: body.Name, Tenant: tenant, Created: s.now().UTC()}
	if err := s.store.CreateNamespace(r.Context(), &n); err != nil {
		switch {
		case errors.Is(err, store.ErrExists):
			return errorf(http.StatusConflict, "namespace %q already exists", body.Name)
		case errors.Is(err, store.ErrNotFound):
			return errorf(http.StatusForbidden, "tenant %q does not exist", tenant)
		}
		return err
	}
	writeJSON(w, http.StatusCreated, Namespace{Name: n.Name, Created: n.Created})
	return nil
}

func (s *Server) deleteNamespace(w http.ResponseWriter, r *http.Request) error {
	tenant, name := caller(r).Tenant, r.PathValue("name")
	m, err := s.namespaces(r, tenant)
	if err != nil {
		return err
	}
	n := m[name]
	switch {
	case n == nil:
		return errorf(http.StatusNotFound, "namespace %q not found", name)
	case n.Pods > 0:
		return errorf(http.StatusConflict, "namespace %q still has %d pods: remove them first (docker compose -p %s down)", name, n.Pods, name)
	case name == types.DefaultNamespace:
		return errorf(http.StatusConflict, "the %q namespace cannot be deleted", name)
	}
	if err := s.store.DeleteNamespace(r.Context(), tenant, name); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return errorf(http.StatusNotFound, "namespace %q not found", name)
		}
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
