package compose

import (
	"archive/tar"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"

	"github.com/macro-cloud/macro/client"
)

// fakeEngine is a Docker Engine API over HTTPS with state in memory: enough
// of containers, networks, volumes, images and archives for up and down,
// recording every request that changes something. Containers with the
// label fake.exit=N exit with N when started; fake.health=unhealthy makes
// a healthcheck fail; every other healthcheck passes.
type fakeEngine struct {
	t   *testing.T
	srv *httptest.Server

	mu         sync.Mutex
	log        []string // "METHOD /path?query" and the JSON body of changes
	seq        int
	containers map[string]*fakeContainer    // by ID
	networks   map[string]client.Network    // by name
	volumes    map[string]client.Volume     // by name
	files      map[string]map[string]string // volume -> path -> contents
	images     map[string]string            // ref -> ID
	pulls      map[string]string            // ref -> ID a pull gives; absent: pull fails
	noNetworks bool                         // answer /networks and /volumes 404, as macro before them
}

type fakeContainer struct {
	id, name string
	req      CreateRequest
	state    container.ContainerState
	exit     int
	created  time.Time
}

func newFakeEngine(t *testing.T) (*fakeEngine, *client.Client) {
	f := &fakeEngine{
		t:          t,
		containers: map[string]*fakeContainer{},
		networks:   map[string]client.Network{},
		volumes:    map[string]client.Volume{},
		files:      map[string]map[string]string{},
		images:     map[string]string{"busybox:latest": "sha256:b0b0", "redis:test": "sha256:4ed15"},
		pulls:      map[string]string{},
	}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	f.srv.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert}
	f.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(f.srv.Certificate())
	c, err := client.New(f.srv.URL, client.Options{RootCAs: pool, ClientCert: clientCert(t)})
	if err != nil {
		t.Fatal(err)
	}
	return f, c
}

func clientCert(t *testing.T) *tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "alice"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// requests returns the recorded requests and forgets them.
func (f *fakeEngine) requests() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := strings.Join(f.log, "")
	f.log = nil
	return out
}

func (f *fakeEngine) record(r *http.Request, path string, body []byte) {
	line := r.Method + " " + path
	if q := r.URL.Query(); len(q) > 0 {
		line += "?" + q.Encode()
	}
	line += "\n"
	if len(body) > 0 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		var v any
		if err := json.Unmarshal(body, &v); err != nil {
			f.t.Errorf("%s: invalid JSON body: %v", line, err)
		}
		b, _ := json.MarshalIndent(v, "  ", "  ")
		line += "  " + string(b) + "\n"
	}
	f.log = append(f.log, line)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, status int, format string, args ...any) {
	writeJSON(w, status, map[string]string{"message": fmt.Sprintf(format, args...)})
}

var versionRE = regexp.MustCompile(`^/v[0-9.]+`)

// matches applies the label and name filters of a list request.
func matches(q url.Values, name string, labels map[string]string) bool {
	var fl map[string][]string
	if s := q.Get("filters"); s != "" {
		json.Unmarshal([]byte(s), &fl)
	}
	for _, l := range fl["label"] {
		k, v, hasV := strings.Cut(l, "=")
		got, ok := labels[k]
		if !ok || (hasV && got != v) {
			return false
		}
	}
	for _, n := range fl["name"] {
		if !strings.Contains(name, n) {
			return false
		}
	}
	return true
}

func (f *fakeEngine) serve(w http.ResponseWriter, r *http.Request) {
	path := versionRE.ReplaceAllString(r.URL.Path, "")
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Method != http.MethodGet {
		f.record(r, path, body)
	}
	q := r.URL.Query()
	switch {
	case f.noNetworks && (strings.HasPrefix(path, "/networks") || strings.HasPrefix(path, "/volumes")):
		writeErr(w, 404, "page not found")

	case r.Method == "GET" && strings.HasPrefix(path, "/images/") && strings.HasSuffix(path, "/json"):
		ref := strings.TrimSuffix(strings.TrimPrefix(path, "/images/"), "/json")
		id, ok := f.images[ref]
		if !ok {
			writeErr(w, 404, "No such image: %s", ref)
			return
		}
		writeJSON(w, 200, map[string]string{"Id": id})
	case r.Method == "POST" && path == "/images/create":
		ref := q.Get("fromImage")
		w.WriteHeader(200)
		if id, ok := f.pulls[ref]; ok {
			f.images[ref] = id
			fmt.Fprintf(w, "{\"status\":\"Pulled %s\"}\n", ref)
		} else {
			fmt.Fprintf(w, "{\"errorDetail\":{\"message\":\"pull access denied for %s\"},\"error\":\"pull access denied\"}\n", ref)
		}

	case r.Method == "GET" && path == "/networks":
		out := []client.Network{}
		for _, n := range f.networks {
			if matches(q, n.Name, n.Labels) {
				out = append(out, n)
			}
		}
		writeJSON(w, 200, out)
	case r.Method == "POST" && path == "/networks/create":
		var req NetworkCreate
		json.Unmarshal(body, &req)
		if _, ok := f.networks[req.Name]; ok {
			writeErr(w, 409, "network with name %s already exists", req.Name)
			return
		}
		f.seq++
		n := client.Network{ID: fmt.Sprintf("net%d", f.seq), Name: req.Name, Driver: req.Driver, Labels: req.Labels}
		f.networks[req.Name] = n
		writeJSON(w, 201, map[string]string{"Id": n.ID})
	case r.Method == "DELETE" && strings.HasPrefix(path, "/networks/"):
		id := strings.TrimPrefix(path, "/networks/")
		for name, n := range f.networks {
			if n.ID == id || n.Name == id {
				delete(f.networks, name)
				w.WriteHeader(204)
				return
			}
		}
		writeErr(w, 404, "network %s not found", id)

	case r.Method == "GET" && path == "/volumes":
		out := []client.Volume{}
		for _, v := range f.volumes {
			if matches(q, v.Name, v.Labels) {
				out = append(out, v)
			}
		}
		writeJSON(w, 200, map[string]any{"Volumes": out})
	case r.Method == "POST" && path == "/volumes/create":
		var req VolumeCreate
		json.Unmarshal(body, &req)
		v := client.Volume{Name: req.Name, Driver: "local", Labels: req.Labels}
		f.volumes[req.Name] = v
		writeJSON(w, 201, v)
	case r.Method == "DELETE" && strings.HasPrefix(path, "/volumes/"):
		name := strings.TrimPrefix(path, "/volumes/")
		if _, ok := f.volumes[name]; !ok {
			writeErr(w, 404, "get %s: no such volume", name)
			return
		}
		for _, c := range f.containers {
			for _, b := range c.req.HostConfig.Binds {
				if strings.HasPrefix(b, name+":") {
					writeErr(w, 409, "remove %s: volume is in use - [%s]", name, c.id)
					return
				}
			}
			for _, m := range c.req.HostConfig.Mounts {
				if m.Source == name {
					writeErr(w, 409, "remove %s: volume is in use - [%s]", name, c.id)
					return
				}
			}
		}
		delete(f.volumes, name)
		delete(f.files, name)
		w.WriteHeader(204)

	case r.Method == "GET" && path == "/containers/json":
		all := q.Get("all") == "1"
		out := []container.Summary{}
		for _, c := range f.sorted() {
			if (all || c.state == container.StateRunning) && matches(q, c.name, c.req.Labels) {
				out = append(out, container.Summary{ID: c.id, Names: []string{"/" + c.name}, Image: c.req.Image, Labels: c.req.Labels, State: c.state, Created: c.created.Unix()})
			}
		}
		writeJSON(w, 200, out)
	case r.Method == "POST" && path == "/containers/create":
		var req CreateRequest
		if err := json.Unmarshal(body, &req); err != nil {
			writeErr(w, 400, "invalid JSON: %v", err)
			return
		}
		name := q.Get("name")
		for _, c := range f.containers {
			if c.name == name {
				writeErr(w, 409, "Conflict. The container name \"/%s\" is already in use by container \"%s\".", name, c.id)
				return
			}
		}
		if _, ok := f.images[req.Image]; !ok {
			writeErr(w, 404, "No such image: %s", req.Image)
			return
		}
		for _, b := range req.HostConfig.Binds {
			if _, ok := f.volumes[strings.Split(b, ":")[0]]; !ok {
				writeErr(w, 404, "no such volume: %s", b)
				return
			}
		}
		f.seq++
		c := &fakeContainer{id: fmt.Sprintf("%064d", f.seq), name: name, req: req, state: container.StateCreated, created: time.Unix(int64(1700000000+f.seq), 0)}
		f.containers[c.id] = c
		writeJSON(w, 201, container.CreateResponse{ID: c.id, Warnings: []string{}})
	default:
		f.serveContainer(w, r, path, q, body)
	}
}

func (f *fakeEngine) sorted() []*fakeContainer {
	var out []*fakeContainer
	for _, c := range f.containers {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

func (f *fakeEngine) find(ref string) *fakeContainer {
	for _, c := range f.containers {
		if c.id == ref || c.name == ref {
			return c
		}
	}
	return nil
}

func (f *fakeEngine) serveContainer(w http.ResponseWriter, r *http.Request, path string, q url.Values, body []byte) {
	rest, ok := strings.CutPrefix(path, "/containers/")
	if !ok {
		writeErr(w, 404, "page not found")
		return
	}
	ref, verb, _ := strings.Cut(rest, "/")
	c := f.find(ref)
	if c == nil {
		writeErr(w, 404, "No such container: %s", ref)
		return
	}
	switch {
	case r.Method == "GET" && verb == "json":
		st := &container.State{Status: c.state, Running: c.state == container.StateRunning, ExitCode: c.exit}
		if c.req.Healthcheck != nil && c.state == container.StateRunning {
			st.Health = &container.Health{Status: container.Healthy}
			if c.req.Labels["fake.health"] == "unhealthy" {
				st.Health.Status = container.Unhealthy
			}
		}
		writeJSON(w, 200, container.InspectResponse{ID: c.id, Name: "/" + c.name, State: st, Config: &c.req.Config})
	case r.Method == "GET" && verb == "logs":
		w.Header().Set("Content-Type", "application/vnd.docker.multiplexed-stream")
		w.WriteHeader(200)
		for _, line := range []string{"hello from " + c.name + "\n", "partial"} {
			hdr := make([]byte, 8)
			hdr[0] = 1
			binary.BigEndian.PutUint32(hdr[4:], uint32(len(line)))
			w.Write(append(hdr, line...))
		}
	case r.Method == "POST" && verb == "start":
		if c.state == container.StateRunning {
			w.WriteHeader(304)
			return
		}
		c.state = container.StateRunning
		if code, ok := c.req.Labels["fake.exit"]; ok {
			c.state = container.StateExited
			c.exit, _ = strconv.Atoi(code)
		}
		w.WriteHeader(204)
	case r.Method == "POST" && verb == "kill":
		if c.state != container.StateRunning {
			writeErr(w, 409, "Cannot kill container: %s: Container %s is not running", ref, c.id)
			return
		}
		c.state = container.StateExited
		c.exit = 137
		w.WriteHeader(204)
	case r.Method == "POST" && verb == "stop":
		if c.state != container.StateRunning {
			w.WriteHeader(304)
			return
		}
		c.state = container.StateExited
		w.WriteHeader(204)
	case r.Method == "DELETE" && verb == "":
		if c.state == container.StateRunning && q.Get("force") != "1" {
			writeErr(w, 409, "cannot remove a running container")
			return
		}
		delete(f.containers, c.id)
		w.WriteHeader(204)
	case r.Method == "PUT" && verb == "archive":
		dir := q.Get("path")
		vol := ""
		for _, b := range c.req.HostConfig.Binds {
			parts := strings.Split(b, ":")
			if parts[1] == dir {
				vol = parts[0]
			}
		}
		if vol == "" {
			writeErr(w, 400, "fake: %s is not a volume of %s", dir, c.name)
			return
		}
		tr := tar.NewReader(bytes.NewReader(body))
		if f.files[vol] == nil {
			f.files[vol] = map[string]string{}
		}
		for {
			hdr, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				writeErr(w, 400, "bad tar: %v", err)
				return
			}
			data, _ := io.ReadAll(tr)
			f.files[vol][hdr.Name] = fmt.Sprintf("%c %o %s", hdr.Typeflag, hdr.Mode, data)
		}
		w.WriteHeader(200)
	default:
		writeErr(w, 404, "page not found")
	}
}

var containerHostConfig = container.HostConfig{}
