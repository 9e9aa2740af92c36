package api

// The servers of a cluster: joining (tenant side of the API port,
// authenticated by a server join token, not by a tenant) and the member
// list (admin side).

import (
	"errors"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/macro-cloud/macro/auth"
	"github.com/macro-cloud/macro/store"
	"github.com/macro-cloud/macro/types"
)

// JoinRequest is the body of POST /cluster/join: a server that wants to
// become a member of the cluster.
type JoinRequest struct {
	// Name of the new member (its node name), unique in the cluster.
	Name string `json:"name"`
	// PeerURL is where the other members reach its etcd member,
	// https://IP:PORT.
	PeerURL string `json:"peerURL"`
}

// JoinResponse is what a server needs to start its member and serve.
type JoinResponse struct {
	Cluster string             `json:"cluster"`
	Members []store.MemberInfo `json:"members"`
	// CACert and CAKey are the cluster CA, in PEM: the new server signs
	// its API port's and its peer certificate, and tenants' client
	// certificates, with it.
	CACert string `json:"caCert"`
	CAKey  string `json:"caKey"`
}

var memberNameRE = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9._-]{0,61}[a-zA-Z0-9])?$`)

// validPeerURL checks a peer URL: https, a host, a port, nothing else.
func validPeerURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Hostname() == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return errorf(http.StatusBadRequest, "peer url %q: want https://HOST:PORT", s)
	}
	if p, err := strconv.Atoi(u.Port()); err != nil || p < 1 || p > 65535 {
		return errorf(http.StatusBadRequest, "peer url %q: want https://HOST:PORT", s)
	}
	if ip := net.ParseIP(u.Hostname()); ip != nil && (ip.IsLoopback() || ip.IsUnspecified()) {
		return errorf(http.StatusBadRequest, "peer url %q: give an address the other servers reach, not %s", s, ip)
	}
	return nil
}

// POST /cluster/join (API port, bearer server join token).
func (s *Server) joinCluster(w http.ResponseWriter, r *http.Request) error {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return &auth.Error{Status: http.StatusUnauthorized, Message: "joining the cluster needs a server join token (Authorization: Bearer kj_...)"}
	}
	jt, err := auth.CheckJoinToken(r.Context(), s.store, types.JoinServer, token)
	if err != nil {
		if errors.Is(err, auth.ErrJoinTokenShape) || errors.Is(err, auth.ErrJoinTokenUnknown) || errors.Is(err, auth.ErrJoinTokenExpired) || errors.Is(err, auth.ErrJoinTokenKind) {
			s.log.Info("join refused", "remote", r.RemoteAddr, "err", err)
			return &auth.Error{Status: http.StatusUnauthorized, Message: err.Error()}
		}
		return err
	}
	var req JoinRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if !memberNameRE.MatchString(req.Name) {
		return errorf(http.StatusBadRequest, "member name %q: use 1 to 63 letters, digits, '.', '_' and '-' (the server's --node-name)", req.Name)
	}
	if err := validPeerURL(req.PeerURL); err != nil {
		return err
	}
	if s.ca == nil {
		return errors.New("this server has no CA")
	}
	key, err := s.ca.KeyPEM()
	if err != nil {
		return err
	}
	ms, err := s.store.AddMember(r.Context(), req.Name, req.PeerURL)
	switch {
	case errors.Is(err, store.ErrNotClustered):
		return errorf(http.StatusConflict, "%v", err)
	case errors.Is(err, store.ErrExists):
		return errorf(http.StatusConflict, "%v", err)
	case err != nil:
		return err
	}
	s.log.Info("server joins the cluster", "member", req.Name, "peer", req.PeerURL, "token", jt.ID, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, JoinResponse{Cluster: s.cluster, Members: ms, CACert: string(s.ca.CertPEM), CAKey: string(key)})
	return nil
}

// GET /members (admin): the servers that hold the state, with the one
// that leads the control loop.
func (s *Server) listMembers(w http.ResponseWriter, r *http.Request) error {
	ms, err := s.store.Members(r.Context())
	if err != nil {
		return err
	}
	type member struct {
		store.MemberInfo
		Control bool `json:"control,omitempty"` // runs the control loop
	}
	leader, _ := s.store.Leader(r.Context(), "control")
	out := make([]member, 0, len(ms))
	for _, m := range ms {
		out = append(out, member{MemberInfo: m, Control: m.Name != "" && m.Name == leader})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// DELETE /members/{name} (admin).
func (s *Server) removeMember(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	m, err := s.store.RemoveMember(r.Context(), name)
	if errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusNotFound, "no member %q (macro admin members ls lists them)", name)
	}
	if err != nil {
		return errorf(http.StatusConflict, "%v", err)
	}
	s.log.Info("member removed", "member", m.Name, "id", m.ID)
	writeJSON(w, http.StatusOK, m)
	return nil
}
