package docker

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/moby/moby/api/types/registry"
)

// `docker login` to this cloud's own registry, through the Docker API (a
// tenant's docker context). The registry is served on the host:port the
// client reached the API by, behind a certificate of the cluster's own CA
// that the server has no reason to trust as a client of itself: rather
// than calling itself over the network, the server checks the credentials
// as its registry would. The password must be an access token of the
// caller's tenant (the user name is free, as for the registry); a token of
// another tenant is refused as any wrong password is.

// ownRegistry says whether a login's server address names this cloud's
// registry as the caller reached it, and returns its host[:port].
func (s *Server) ownRegistry(r *http.Request, server string) (string, bool) {
	host := strings.TrimSpace(server)
	if u, err := url.Parse(host); err == nil && u.Host != "" {
		host = u.Host
	}
	host, _, _ = strings.Cut(host, "/")
	if host == "" {
		return "", false
	}
	_, ok := s.tenantImages(r).Local(host + "/login")
	return host, ok
}

func (s *Server) loginOwnRegistry(w http.ResponseWriter, r *http.Request, host string, ac registry.AuthConfig) error {
	password := ac.Password
	if password == "" && ac.IdentityToken != "" {
		password = ac.IdentityToken
	}
	if password == "" {
		return errorf(http.StatusUnauthorized, "login to %s: give an access token of your tenant as the password (docker login %s -u any --password-stdin)", host, host)
	}
	if s.localLogin == nil {
		return errorf(http.StatusUnauthorized, "login to %s: this server checks no registry credentials", host)
	}
	ok, err := s.localLogin(r.Context(), tenantOf(r), password)
	if err != nil {
		return err
	}
	if !ok {
		return errorf(http.StatusUnauthorized, "login to %s failed: unauthorized: the password is not a valid access token of your tenant (invalid or revoked token)", host)
	}
	writeJSON(w, http.StatusOK, registry.AuthResponse{Status: "Login Succeeded"})
	return nil
}
