package access

import (
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"golang.org/x/net/webdav"

	"github.com/macro-cloud/macro/auth"
)

// DAVPrefix is where WebDAV serves on the API port: /dav/<volume>/...
const DAVPrefix = "/dav/"

// davRealm is the basic-auth realm that WebDAV clients are challenged with.
const davRealm = `Basic realm="macro volumes", charset="UTF-8"`

// WebDAV serves /dav/<volume>/... . Credentials: a per-volume key as basic
// auth (key ID and secret), or the tenant's token (bearer, or the password
// of basic auth with any user name), or its client certificate.
func (s *Server) WebDAV() http.Handler {
	return http.HandlerFunc(s.serveDAV)
}

// davReadMethods are what a read-only key may do.
var davReadMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodOptions: true, "PROPFIND": true,
}

func (s *Server) serveDAV(w http.ResponseWriter, r *http.Request) {
	g, err := s.davAuth(r)
	if err != nil {
		var ae *auth.Error
		if errors.Is(err, errBadKey) || errors.As(err, &ae) && ae.Status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", davRealm)
			http.Error(w, "401 unauthorized: "+err.Error(), http.StatusUnauthorized)
			return
		}
		if errors.As(err, &ae) {
			auth.WriteError(w, err)
			return
		}
		s.log.Warn("webdav: authenticate", "err", err)
		http.Error(w, "500 internal server error", http.StatusInternalServerError)
		return
	}
	rest := strings.TrimPrefix(r.URL.Path, DAVPrefix)
	name, _, _ := strings.Cut(rest, "/")
	if name == "" {
		s.davVolumes(w, r, g)
		return
	}
	dir, err := s.root(r.Context(), g, name)
	if errors.Is(err, errNoVolume) {
		http.Error(w, "404 not found: no such volume: "+name, http.StatusNotFound)
		return
	}
	if err != nil {
		s.log.Warn("webdav: volume", "volume", name, "err", err)
		http.Error(w, "500 internal server error", http.StatusInternalServerError)
		return
	}
	if g.readOnly && !davReadMethods[r.Method] {
		http.Error(w, "403 forbidden: this access key is read-only", http.StatusForbidden)
		return
	}
	if r.URL.Path == DAVPrefix+name && r.Method != "PROPFIND" && r.Method != http.MethodOptions {
		http.Redirect(w, r, r.URL.Path+"/", http.StatusMovedPermanently)
		return
	}
	h := &webdav.Handler{
		Prefix:     DAVPrefix + name,
		FileSystem: rootFS{dir: dir},
		LockSystem: s.lockSystem(g.tenant, name),
		Logger: func(r *http.Request, err error) {
			if err != nil {
				s.log.Debug("webdav", "method", r.Method, "path", r.URL.Path, "err", err)
			}
		},
	}
	h.ServeHTTP(w, r)
}

// davAuth is the caller of a WebDAV request.
func (s *Server) davAuth(r *http.Request) (grant, error) {
	if user, pass, ok := r.BasicAuth(); ok && IsKeyID(user) {
		return s.keyGrant(r.Context(), user, pass)
	}
	id, err := s.tokens.Authenticate(r)
	if err != nil {
		return grant{}, err
	}
	return grant{tenant: id.Tenant}, nil
}

// davVolumes answers /dav/ itself: a read-only collection whose members
// are the volumes the caller reaches, so that a client pointed at /dav/
// lists them.
func (s *Server) davVolumes(w http.ResponseWriter, r *http.Request, g grant) {
	switch r.Method {
	case http.MethodOptions:
		w.Header().Set("Allow", "OPTIONS, PROPFIND")
		w.Header().Set("DAV", "1, 2")
		return
	case "PROPFIND":
	default:
		w.Header().Set("Allow", "OPTIONS, PROPFIND")
		http.Error(w, "405 method not allowed: "+DAVPrefix+" lists your volumes; their files are under "+DAVPrefix+"<volume>/", http.StatusMethodNotAllowed)
		return
	}
	io.Copy(io.Discard, io.LimitReader(r.Body, 1<<16))
	type collection struct {
		Href     string `xml:"D:href"`
		Name     string `xml:"D:propstat>D:prop>D:displayname"`
		Type     string `xml:"D:propstat>D:prop>D:resourcetype>D:collection"`
		Modified string `xml:"D:propstat>D:prop>D:getlastmodified"`
		Status   string `xml:"D:propstat>D:status"`
	}
	ms := struct {
		XMLName   xml.Name     `xml:"D:multistatus"`
		NS        string       `xml:"xmlns:D,attr"`
		Responses []collection `xml:"D:response"`
	}{NS: "DAV:"}
	add := func(href, name string, t time.Time) {
		ms.Responses = append(ms.Responses, collection{Href: href, Name: name, Modified: t.UTC().Format(http.TimeFormat), Status: "HTTP/1.1 200 OK"})
	}
	add(DAVPrefix, "", time.Unix(0, 0))
	if r.Header.Get("Depth") != "0" {
		vs, err := s.visibleVolumes(r.Context(), g)
		if err != nil {
			s.log.Warn("webdav: list volumes", "err", err)
			http.Error(w, "500 internal server error", http.StatusInternalServerError)
			return
		}
		for _, v := range vs {
			add(DAVPrefix+v.Name+"/", v.Name, v.Created)
		}
	}
	w.Header().Set("Content-Type", "application/xml; charset=utf-8")
	w.WriteHeader(http.StatusMultiStatus)
	io.WriteString(w, xml.Header)
	xml.NewEncoder(w).Encode(ms)
}
