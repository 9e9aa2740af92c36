// Package clienttest is a fake macro API port for tests of the client and
// of kra: an httptest TLS server with its own CA that answers the native API
// (whoami, ca, certs, namespaces, nodes) with a bearer token and a few Docker API
// paths (ping, containers, logs, images) with a client certificate it
// issued, from fixed data that a test may change; /v2/ is an in-memory
// registry per tenant (registry.go).
package clienttest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/image"

	"github.com/macro-cloud/macro/client"
)

// Cluster is the name the fake server gives its cluster in /whoami.
const Cluster = "testcloud"

// ThrottledToken is answered 429 with Retry-After: 7, as a server answers
// an address with too many failed attempts.
const ThrottledToken = "throttled-token"

// Server is a fake macro API port.
type Server struct {
	URL   string // https://127.0.0.1:PORT
	CAPEM []byte // the CA that signs the server's and the clients' certificates

	srv    *httptest.Server
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	serial int64

	mu      sync.Mutex
	Tokens  map[string]string // token -> tenant; tenants not here are refused
	tenants map[string]*Tenant
	revoked map[string]bool // serials of client certificates refused
	// Requests counts the requests per "METHOD path" (path without the
	// Docker API version).
	Requests map[string]int
	// registries are the tenants' registries (/v2/, registry.go).
	registries   map[string]http.Handler
	registryBusy bool
	// Nodes are the cloud's nodes (their Pods: see Tenant.NodePods);
	// a test may change them before it calls.
	Nodes []client.Node
}

// Tenant is the fake data of one tenant.
type Tenant struct {
	Namespaces []client.Namespace
	Containers []container.Summary
	Inspect    map[string]container.InspectResponse // by ID
	Logs       map[string]string                    // by ID: "1 stdout line\n" and "2 stderr line\n"
	Images     []image.Summary
	NodePods   map[string]int // the tenant's pods by node name
}

// NewServer starts a fake server with tenant "alice" (token "alice-token")
// holding two namespaces, two pods (one running) and an image, and tenant
// "bob" (token "bob-token") with nothing. Close stops it.
func NewServer() *Server {
	s := &Server{
		Tokens:   map[string]string{"alice-token": "alice", "bob-token": "bob"},
		tenants:  map[string]*Tenant{"alice": aliceData(), "bob": {Namespaces: []client.Namespace{{Name: "default", Created: created}}}},
		revoked:  map[string]bool{},
		Requests: map[string]int{},
	}
	s.Nodes = []client.Node{
		{Name: "n2", Zone: "eu-2", Labels: map[string]string{"zone": "eu-2"}, Arch: "arm64", CPUs: 2, MemoryBytes: 2 << 30},
		{Name: "n1", Zone: "eu-1", Labels: map[string]string{"zone": "eu-1", "ssd": "yes"}, Arch: "amd64", CPUs: 4, MemoryBytes: 8 << 30, Ready: true},
	}
	s.newCA()
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	pool := x509.NewCertPool()
	pool.AddCert(s.ca)
	s.srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{s.serverCert()},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    pool,
	}
	// Refused handshakes are what some tests are about.
	s.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.srv.StartTLS()
	s.URL = s.srv.URL
	return s
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// Tenant returns the data of a tenant, to change under Lock.
func (s *Server) Tenant(name string) *Tenant {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tenants[name]
	if t == nil {
		t = &Tenant{}
		s.tenants[name] = t
	}
	return t
}

// RevokeToken makes the server refuse token.
func (s *Server) RevokeToken(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.Tokens, token)
}

// RevokeCerts makes the server refuse every client certificate issued so far.
func (s *Server) RevokeCerts() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := int64(2); i <= s.serial; i++ {
		s.revoked[fmt.Sprint(i)] = true
	}
}

// Count returns how many times "METHOD /path" was requested.
func (s *Server) Count(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.Requests[key]
}

var created = time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)

func aliceData() *Tenant {
	web := container.Summary{
		ID: strings.Repeat("a1", 32), Names: []string{"/web"}, Image: "nginx:latest", Command: "nginx -g 'daemon off;'",
		Created: created.Add(time.Hour).Unix(), State: container.StateRunning, Status: "Up 2 hours",
		Labels: map[string]string{client.NamespaceLabel: "shop"},
	}
	db := container.Summary{
		ID: strings.Repeat("b2", 32), Names: []string{"/db"}, Image: "redis:7", Command: "redis-server",
		Created: created.Unix(), State: container.StateExited, Status: "Exited (0) 5 minutes ago",
		Labels: map[string]string{},
	}
	return &Tenant{
		Namespaces: []client.Namespace{{Name: "default", Created: created, Pods: 1}, {Name: "shop", Created: created.Add(time.Minute), Pods: 1}},
		Containers: []container.Summary{web, db},
		Inspect: map[string]container.InspectResponse{
			web.ID: {ID: web.ID, Name: "/web", Image: "sha256:" + strings.Repeat("c3", 32), Created: created.Add(time.Hour).Format(time.RFC3339Nano),
				State: &container.State{Status: container.StateRunning, Running: true}, Config: &container.Config{Image: "nginx:latest", Labels: web.Labels}},
			db.ID: {ID: db.ID, Name: "/db", Image: "sha256:" + strings.Repeat("d4", 32), Created: created.Format(time.RFC3339Nano),
				State: &container.State{Status: container.StateExited}, Config: &container.Config{Image: "redis:7", Tty: true}},
		},
		Logs: map[string]string{
			web.ID: "1 listening on :80\n2 warning: no index.html\n1 GET / 200\n",
			db.ID:  "1 Ready to accept connections\n",
		},
		NodePods: map[string]int{"n1": 1},
		Images: []image.Summary{
			{ID: "sha256:" + strings.Repeat("c3", 32), RepoTags: []string{"nginx:latest", "localhost:5000/nginx:1.25"}, Created: created.Unix(), Size: 187_654_321},
			{ID: "sha256:" + strings.Repeat("d4", 32), RepoTags: []string{"redis:7"}, Created: created.Add(-time.Hour).Unix(), Size: 117_000_000},
		},
	}
}

func (s *Server) newCA() {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "clienttest CA", Organization: []string{"macro"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	s.ca, _ = x509.ParseCertificate(der)
	s.caKey = key
	s.serial = 1
	s.CAPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// issue signs a certificate; the caller holds mu or is in NewServer.
func (s *Server) issue(tmpl *x509.Certificate) (certPEM, keyPEM []byte) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	s.serial++
	tmpl.SerialNumber = big.NewInt(s.serial)
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.ca, &key.PublicKey, s.caKey)
	if err != nil {
		panic(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

func (s *Server) serverCert() tls.Certificate {
	c, k := s.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "localhost"},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	cert, err := tls.X509KeyPair(c, k)
	if err != nil {
		panic(err)
	}
	return cert
}

var dockerVersion = regexp.MustCompile(`^/v[0-9]+\.[0-9]+/`)

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	if m := dockerVersion.FindString(path); m != "" {
		path = path[len(m)-1:]
	}
	s.mu.Lock()
	s.Requests[r.Method+" "+path]++
	s.mu.Unlock()
	if strings.HasPrefix(path, client.APIPrefix+"/") {
		s.native(w, r, strings.TrimPrefix(path, client.APIPrefix))
		return
	}
	if path == "/v2" || strings.HasPrefix(path, "/v2/") {
		s.registry(w, r)
		return
	}
	s.docker(w, r, path)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, format string, args ...any) {
	writeJSON(w, status, map[string]string{"message": fmt.Sprintf(format, args...)})
}

func (s *Server) native(w http.ResponseWriter, r *http.Request, path string) {
	if r.Method == http.MethodGet && path == "/ca" {
		w.Header().Set("Content-Type", "application/x-pem-file")
		w.Write(s.CAPEM)
		return
	}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	defer s.mu.Unlock()
	tenant := s.Tokens[token]
	if token == ThrottledToken {
		w.Header().Set("Retry-After", "7")
		writeError(w, http.StatusTooManyRequests, "too many failed attempts")
		return
	}
	if !ok || tenant == "" {
		writeError(w, http.StatusUnauthorized, "invalid or revoked token")
		return
	}
	t := s.tenants[tenant]
	switch {
	case r.Method == http.MethodGet && path == "/whoami":
		writeJSON(w, http.StatusOK, client.Identity{Tenant: tenant, Cluster: Cluster, Auth: "token"})
	case r.Method == http.MethodPost && path == "/certs":
		c, k := s.issue(&x509.Certificate{
			Subject:     pkix.Name{CommonName: tenant},
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		})
		writeJSON(w, http.StatusCreated, client.Certs{CA: string(s.CAPEM), Cert: string(c), Key: string(k),
			Cluster: Cluster, Tenant: tenant, Expires: time.Now().Add(24 * time.Hour).UTC().Truncate(time.Second)})
	case r.Method == http.MethodGet && path == "/nodes":
		list := append([]client.Node{}, s.Nodes...)
		for i := range list {
			list[i].Pods = t.NodePods[list[i].Name]
		}
		writeJSON(w, http.StatusOK, list)
	case r.Method == http.MethodGet && path == "/namespaces":
		list := append([]client.Namespace{}, t.Namespaces...)
		writeJSON(w, http.StatusOK, list)
	case r.Method == http.MethodPost && path == "/namespaces":
		var n client.Namespace
		if err := json.NewDecoder(r.Body).Decode(&n); err != nil || n.Name == "" {
			writeError(w, http.StatusBadRequest, "invalid namespace: a name is required")
			return
		}
		for _, o := range t.Namespaces {
			if o.Name == n.Name {
				writeError(w, http.StatusConflict, "namespace %q already exists", n.Name)
				return
			}
		}
		n.Created = created.Add(time.Duration(len(t.Namespaces)) * time.Hour)
		t.Namespaces = append(t.Namespaces, n)
		writeJSON(w, http.StatusCreated, n)
	case strings.HasPrefix(path, "/namespaces/"):
		name := strings.TrimPrefix(path, "/namespaces/")
		i := slices.IndexFunc(t.Namespaces, func(n client.Namespace) bool { return n.Name == name })
		if i < 0 {
			writeError(w, http.StatusNotFound, "namespace %q not found", name)
			return
		}
		switch r.Method {
		case http.MethodGet:
			writeJSON(w, http.StatusOK, t.Namespaces[i])
		case http.MethodDelete:
			if n := t.Namespaces[i]; n.Pods > 0 {
				writeError(w, http.StatusConflict, "namespace %q still has %d pods: remove them first (docker compose -p %s down)", name, n.Pods, name)
				return
			}
			if name == "default" {
				writeError(w, http.StatusConflict, "the %q namespace cannot be deleted", name)
				return
			}
			t.Namespaces = append(t.Namespaces[:i], t.Namespaces[i+1:]...)
			w.WriteHeader(http.StatusNoContent)
		default:
			writeError(w, http.StatusMethodNotAllowed, "method not allowed")
		}
	default:
		writeError(w, http.StatusNotFound, "page not found: %s %s", r.Method, r.URL.Path)
	}
}

func (s *Server) docker(w http.ResponseWriter, r *http.Request, path string) {
	w.Header().Set("Api-Version", "1.50")
	if path == "/_ping" {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("OK"))
		return
	}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		writeError(w, http.StatusUnauthorized, "the Docker API needs a client certificate: run kra setup docker")
		return
	}
	cert := r.TLS.PeerCertificates[0]
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.revoked[cert.SerialNumber.String()] {
		writeError(w, http.StatusUnauthorized, "certificate revoked")
		return
	}
	t := s.tenants[cert.Subject.CommonName]
	if t == nil {
		t = &Tenant{}
	}
	switch {
	case r.Method == http.MethodGet && path == "/containers/json":
		all := r.URL.Query().Get("all")
		out := []container.Summary{}
		for _, c := range t.Containers {
			if c.State == container.StateRunning || (all != "" && all != "0" && all != "false") {
				out = append(out, c)
			}
		}
		writeJSON(w, http.StatusOK, out)
	case r.Method == http.MethodGet && path == "/images/json":
		writeJSON(w, http.StatusOK, append([]image.Summary{}, t.Images...))
	case r.Method == http.MethodGet && strings.HasPrefix(path, "/containers/"):
		rest := strings.TrimPrefix(path, "/containers/")
		name, what, _ := strings.Cut(rest, "/")
		id := ""
		for _, c := range t.Containers {
			if c.ID == name || strings.HasPrefix(c.ID, name) || (len(c.Names) > 0 && c.Names[0] == "/"+name) {
				id = c.ID
				break
			}
		}
		if id == "" {
			writeError(w, http.StatusNotFound, "No such container: %s", name)
			return
		}
		switch what {
		case "json":
			writeJSON(w, http.StatusOK, t.Inspect[id])
		case "logs":
			tty := t.Inspect[id].Config != nil && t.Inspect[id].Config.Tty
			if tty {
				w.Header().Set("Content-Type", "application/vnd.docker.raw-stream")
			} else {
				w.Header().Set("Content-Type", "application/vnd.docker.multiplexed-stream")
			}
			w.WriteHeader(http.StatusOK)
			for _, line := range strings.SplitAfter(t.Logs[id], "\n") {
				if line == "" {
					continue
				}
				stream, text, _ := strings.Cut(line, " ")
				switch {
				case tty:
					w.Write([]byte(text))
				case stream == "2":
					writeFrame(w, stdcopy.Stderr, text)
				default:
					writeFrame(w, stdcopy.Stdout, text)
				}
			}
		default:
			writeError(w, http.StatusNotFound, "page not found")
		}
	default:
		writeError(w, http.StatusNotFound, "page not found: %s %s", r.Method, r.URL.Path)
	}
}

// writeFrame writes one frame of the Docker API's multiplexed stream.
func writeFrame(w http.ResponseWriter, stream stdcopy.StdType, text string) {
	hdr := make([]byte, 8)
	hdr[0] = byte(stream)
	binary.BigEndian.PutUint32(hdr[4:], uint32(len(text)))
	w.Write(append(hdr, text...))
}
