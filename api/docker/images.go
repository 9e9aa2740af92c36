package docker

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"

	units "github.com/docker/go-units"
	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	imagetypes "github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/registry"

	"github.com/macro-cloud/macro/image"
	"github.com/macro-cloud/macro/types"
)

// Images is what the API needs from the node's image store (*image.Store).
// Every image endpoint works in the caller's tenant: Tenant(tenantOf(r)),
// through s.tenantImages(r).
type Images interface {
	Tenant(name string) *image.TenantView
	Login(ctx context.Context, server string, auth authn.AuthConfig) error
}

var _ Images = (*image.Store)(nil)

// tenantImages is the image store as the caller's tenant sees it. The
// host:port the client reached us by serves our registry too, so
// "HOST:PORT/foo:1" names the tenant's own "foo:1" (a name pushed there).
func (s *Server) tenantImages(r *http.Request) *image.TenantView {
	v := s.images.Tenant(tenantOf(r))
	if r.TLS != nil || strings.Contains(r.Host, ":") {
		v = v.WithRegistryHost(r.Host)
	}
	return v
}

// lookupImage finds an image of the caller's tenant by name or ID, as
// `docker run` and `docker create` name it.
func (s *Server) lookupImage(r *http.Request, ref string) (image.Image, error) {
	return s.tenantImages(r).Lookup(r.Context(), ref)
}

// findImage is lookupImage for what runs an image (create, inspect): an
// image this server lacks is asked of the cluster's other servers, which
// keep the images they were given (Config.FetchImage), and then found here.
func (s *Server) findImage(r *http.Request, ref string) (image.Image, error) {
	s.here(r, ref)
	img, err := s.lookupImage(r, ref)
	if !errors.Is(err, image.ErrNotFound) || s.fetchImage == nil {
		return img, err
	}
	if ferr := s.fetchImage(r.Context(), tenantOf(r), ref); ferr != nil {
		s.log.Debug("image from the other servers", "image", ref, "err", ferr)
		return img, err
	}
	return s.lookupImage(r, ref)
}

func (s *Server) routeImages(mux *http.ServeMux) {
	s.handle(mux, "POST /images/create", s.pullImage)
	s.handle(mux, "GET /images/json", s.listImages)
	s.handle(mux, "GET /images/get", s.saveImages)
	s.handle(mux, "POST /images/load", s.loadImages)
	s.handle(mux, "POST /images/prune", s.pruneImages)
	s.handle(mux, "GET /images/{name...}", s.getImage)
	s.handle(mux, "POST /images/{name...}", s.postImage)
	s.handle(mux, "DELETE /images/{name...}", s.deleteImage)
	s.handle(mux, "POST /auth", s.login)
}

// getImage dispatches GET /images/<name>/{json,history,get}: names contain
// slashes, so the operation is the last path element.
func (s *Server) getImage(w http.ResponseWriter, r *http.Request) error {
	name, op := splitImageOp(r.PathValue("name"))
	switch op {
	case "json":
		return s.inspectImage(w, r, name)
	case "history":
		return s.imageHistory(w, r, name)
	case "get":
		return s.saveRefs(w, r, []string{name})
	}
	return notFound("page not found")
}

func (s *Server) postImage(w http.ResponseWriter, r *http.Request) error {
	name, op := splitImageOp(r.PathValue("name"))
	switch op {
	case "tag":
		return s.tagImage(w, r, name)
	case "push":
		return s.pushImage(w, r, name)
	}
	return notFound("page not found")
}

func splitImageOp(p string) (name, op string) {
	i := strings.LastIndex(p, "/")
	if i < 0 {
		return p, ""
	}
	return p[:i], p[i+1:]
}

// imageError maps errors of the store (which carry their status) to the
// API's, keeping Docker's "No such image: ..." messages.
func imageError(err error) error {
	if errors.Is(err, image.ErrNotFound) {
		return errorf(http.StatusNotFound, "%s", err.Error())
	}
	return err
}

// --- pull ---

// jsonMessage is a line of dockerd's JSON progress streams.
type jsonMessage struct {
	Stream         string          `json:"stream,omitempty"`
	Status         string          `json:"status,omitempty"`
	ProgressDetail *progressDetail `json:"progressDetail,omitempty"`
	Progress       string          `json:"progress,omitempty"`
	ID             string          `json:"id,omitempty"`
	ErrorDetail    *errorDetail    `json:"errorDetail,omitempty"`
	Error          string          `json:"error,omitempty"`
	Aux            any             `json:"aux,omitempty"`
}

type progressDetail struct {
	Current int64 `json:"current,omitempty"`
	Total   int64 `json:"total,omitempty"`
}

type errorDetail struct {
	Code    int    `json:"code,omitempty"`
	Message string `json:"message"`
}

// jsonStream writes a JSON message stream whose status line (200) is only
// sent with the first message: an error before it still gets a status.
type jsonStream struct {
	w       http.ResponseWriter
	mu      sync.Mutex
	started bool
}

func (js *jsonStream) send(m jsonMessage) {
	js.mu.Lock()
	defer js.mu.Unlock()
	if !js.started {
		js.w.Header().Set("Content-Type", "application/json")
		js.w.WriteHeader(http.StatusOK)
		js.started = true
	}
	b, _ := json.Marshal(m)
	js.w.Write(append(b, '\r', '\n'))
	if f, ok := js.w.(http.Flusher); ok {
		f.Flush()
	}
}

// finish reports err: as an HTTP error before the stream started, as an
// error message in it after.
func (js *jsonStream) finish(err error) error {
	if err == nil {
		return nil
	}
	js.mu.Lock()
	started := js.started
	js.mu.Unlock()
	if !started {
		return err
	}
	js.send(jsonMessage{ErrorDetail: &errorDetail{Message: err.Error()}, Error: err.Error()})
	return nil
}

// progressMessage renders a store progress event as dockerd does.
func progressMessage(e image.ProgressEvent) jsonMessage {
	m := jsonMessage{Status: e.Status, ID: e.ID}
	if e.ID != "" && !strings.HasPrefix(e.Status, "Pulling from ") {
		m.ProgressDetail = &progressDetail{}
	}
	if e.Total > 0 || e.Current > 0 {
		m.ProgressDetail = &progressDetail{Current: e.Current, Total: e.Total}
		m.Progress = progressBar(e.Current, e.Total)
	}
	return m
}

// progressBar is jsonmessage.JSONProgress.String() at dockerd's width.
func progressBar(current, total int64) string {
	if total <= 0 {
		return fmt.Sprintf("%8v", units.HumanSize(float64(current)))
	}
	percentage := int(float64(current)/float64(total)*100) / 2
	percentage = min(percentage, 50)
	bar := fmt.Sprintf("[%s>%s] ", strings.Repeat("=", percentage), strings.Repeat(" ", 50-percentage))
	numbers := fmt.Sprintf("%8v/%v", units.HumanSize(float64(current)), units.HumanSize(float64(total)))
	if current > total {
		numbers = fmt.Sprintf("%8v", units.HumanSize(float64(current)))
	}
	return bar + numbers
}

func (s *Server) pullImage(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	if q.Get("fromSrc") != "" {
		return errorf(http.StatusNotImplemented, "docker import is not supported by macro: use docker load")
	}
	ref := q.Get("fromImage")
	if ref == "" {
		return badRequest("fromImage is required")
	}
	if tag := q.Get("tag"); tag != "" {
		switch {
		case strings.HasPrefix(tag, "sha256:"):
			ref += "@" + tag
		case !strings.Contains(ref[strings.LastIndex(ref, "/")+1:], ":") && !strings.Contains(ref, "@"):
			ref += ":" + tag
		}
	}
	opts := image.PullOptions{}
	if p := q.Get("platform"); p != "" {
		plat, err := v1.ParsePlatform(p)
		if err != nil {
			return badRequest("%v", err)
		}
		opts.Platform = plat
	}
	auth, err := registryAuth(r)
	if err != nil {
		return err
	}
	opts.Auth = auth
	js := &jsonStream{w: w}
	opts.Progress = func(e image.ProgressEvent) { js.send(progressMessage(e)) }
	img, err := s.tenantImages(r).Pull(r.Context(), ref, opts)
	if err != nil {
		return js.finish(imageError(err))
	}
	s.publish(r.Context(), types.Event{Tenant: tenantOf(r), Type: "image", Action: "pull", ID: ref, Attrs: map[string]string{"name": ref}})
	_ = img
	return nil
}

// pushImage is `docker push`. Pushing to this cloud's own registry (the
// host:port the client reached us by) is a no-op that dockerd's answers
// describe: the tenant's images are in that registry already. Other
// registries are not pushed to from here.
func (s *Server) pushImage(w http.ResponseWriter, r *http.Request, name string) error {
	v := s.tenantImages(r)
	repo, ok := v.Local(name)
	if !ok {
		return errorf(http.StatusNotImplemented, "push to other registries is not supported by macro: push with `kra push`, crane or skopeo, or to %s", r.Host)
	}
	var tags []string
	if tag := r.URL.Query().Get("tag"); tag != "" {
		tags = []string{tag}
	} else {
		all, err := v.Tags(r.Context(), repo)
		if err != nil {
			return notFound("An image does not exist locally with the tag: %s", name)
		}
		tags = all
	}
	var imgs []image.Image
	for _, tag := range tags {
		img, err := v.Lookup(r.Context(), repo+":"+tag)
		if err != nil {
			return notFound("An image does not exist locally with the tag: %s", name)
		}
		imgs = append(imgs, img)
	}
	js := &jsonStream{w: w}
	js.send(jsonMessage{Status: "The push refers to repository [" + name + "]"})
	for i, img := range imgs {
		for j := len(img.Layers) - 1; j >= 0; j-- {
			js.send(jsonMessage{Status: "Layer already exists", ID: shortHex(img.Layers[j]), ProgressDetail: &progressDetail{}})
		}
		body, _, digest, err := v.GetManifest(r.Context(), repo, tags[i])
		if err != nil {
			return js.finish(err)
		}
		js.send(jsonMessage{Status: fmt.Sprintf("%s: digest: %s size: %d", tags[i], digest, len(body))})
		js.send(jsonMessage{ProgressDetail: &progressDetail{}, Aux: map[string]any{"Tag": tags[i], "Digest": digest, "Size": len(body)}})
		s.publish(r.Context(), types.Event{Tenant: tenantOf(r), Type: "image", Action: "push", ID: name + ":" + tags[i], Attrs: map[string]string{"name": name + ":" + tags[i]}})
	}
	return nil
}

func shortHex(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// registryAuth decodes the X-Registry-Auth header: base64url JSON of an
// AuthConfig (some clients send standard base64).
func registryAuth(r *http.Request) (*authn.AuthConfig, error) {
	h := r.Header.Get(registry.AuthHeader)
	if h == "" {
		return nil, nil
	}
	var raw []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.URLEncoding, base64.RawURLEncoding, base64.StdEncoding, base64.RawStdEncoding} {
		if raw, err = enc.DecodeString(h); err == nil {
			break
		}
	}
	if err != nil {
		return nil, badRequest("invalid X-Registry-Auth header: %v", err)
	}
	var ac registry.AuthConfig
	if len(strings.TrimSpace(string(raw))) > 0 {
		if err := json.Unmarshal(raw, &ac); err != nil {
			return nil, badRequest("invalid X-Registry-Auth header: %v", err)
		}
	}
	return &authn.AuthConfig{
		Username: ac.Username, Password: ac.Password, Auth: ac.Auth,
		IdentityToken: ac.IdentityToken, RegistryToken: ac.RegistryToken,
	}, nil
}

// --- list, inspect, history ---

func (s *Server) listImages(w http.ResponseWriter, r *http.Request) error {
	f, err := parseFilters(r)
	if err != nil {
		return err
	}
	if err := f.only("dangling", "label", "label!", "reference", "before", "since", "until"); err != nil {
		return err
	}
	others, err := s.syncImages(r)
	if err != nil {
		return err
	}
	imgs, err := s.tenantImages(r).List(r.Context())
	if err != nil {
		return err
	}
	if len(others) > 0 {
		for _, c := range others {
			imgs = append(imgs, imageOfIndex(c))
		}
		sortImages(imgs)
	}
	var before, since *image.Image
	for _, key := range []string{"before", "since"} {
		for _, v := range f[key] {
			img, err := s.lookupImage(r, v)
			if err != nil {
				return imageError(err)
			}
			if key == "before" {
				before = &img
			} else {
				since = &img
			}
		}
	}
	danglingOnly := false
	if vs, ok := f["dangling"]; ok {
		for _, v := range vs {
			switch strings.ToLower(v) {
			case "true", "1":
				danglingOnly = true
			case "false", "0":
			default:
				return badRequest("invalid filter 'dangling=%s'", v)
			}
		}
	}
	old := versionLess(clientVersion(r), "1.44")
	sharedSize := boolValue(r, "shared-size")
	out := []any{}
	for _, img := range imgs {
		dangling := len(img.RepoTags) == 0
		if _, ok := f["dangling"]; ok && dangling != danglingOnly {
			continue
		}
		if !f.matchLabels(img.Config.Config.Labels) {
			continue
		}
		if before != nil && !img.Created.Before(before.Created) {
			continue
		}
		if since != nil && !img.Created.After(since.Created) {
			continue
		}
		if !f.untilOK(img.Created) {
			continue
		}
		tags, digests := img.RepoTags, img.RepoDigests
		if refs, ok := f["reference"]; ok {
			var kept []string
			for _, t := range tags {
				if matchReference(refs, t) {
					kept = append(kept, t)
				}
			}
			if len(kept) == 0 {
				continue
			}
			tags = kept
		}
		sum := imagetypes.Summary{
			ID:          img.ID,
			ParentID:    img.Parent,
			RepoTags:    nonNil(tags),
			RepoDigests: nonNil(digests),
			Created:     img.Created.Unix(),
			Size:        img.Size,
			SharedSize:  -1,
			Labels:      img.Config.Config.Labels,
			Containers:  -1,
		}
		if sharedSize {
			sum.SharedSize = img.SharedSize
		}
		if old && len(tags) == 0 && len(digests) == 0 {
			sum.RepoTags = []string{"<none>:<none>"}
			sum.RepoDigests = []string{"<none>@<none>"}
		}
		if old {
			out = append(out, struct {
				imagetypes.Summary
				VirtualSize int64 `json:"VirtualSize"`
			}{sum, img.Size})
		} else {
			out = append(out, sum)
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// matchReference is Docker's reference filter: a glob on the familiar
// name:tag, or on the name alone when the pattern has no tag.
func matchReference(patterns []string, tag string) bool {
	name := tag[:strings.LastIndex(tag, ":")]
	for _, p := range patterns {
		if ok, _ := path.Match(p, tag); ok {
			return true
		}
		if !strings.Contains(p[strings.LastIndex(p, "/")+1:], ":") {
			if ok, _ := path.Match(p, name); ok {
				return true
			}
		}
	}
	return false
}

// containerConfig is the image config in the shape of Docker's
// container.Config, as `docker image inspect` prints it.
type containerConfig struct {
	Hostname     string
	Domainname   string
	User         string
	AttachStdin  bool
	AttachStdout bool
	AttachStderr bool
	ExposedPorts map[string]struct{} `json:",omitempty"`
	Tty          bool
	OpenStdin    bool
	StdinOnce    bool
	Env          []string
	Cmd          []string
	Healthcheck  *v1.HealthConfig `json:",omitempty"`
	ArgsEscaped  bool             `json:",omitempty"`
	Image        string
	Volumes      map[string]struct{}
	WorkingDir   string
	Entrypoint   []string
	OnBuild      []string
	Labels       map[string]string
	StopSignal   string   `json:",omitempty"`
	Shell        []string `json:",omitempty"`
}

func dockerConfig(c v1.Config) containerConfig {
	return containerConfig{
		Hostname: c.Hostname, Domainname: c.Domainname, User: c.User,
		AttachStdin: c.AttachStdin, AttachStdout: c.AttachStdout, AttachStderr: c.AttachStderr,
		ExposedPorts: c.ExposedPorts, Tty: c.Tty, OpenStdin: c.OpenStdin, StdinOnce: c.StdinOnce,
		Env: c.Env, Cmd: c.Cmd, Healthcheck: c.Healthcheck, ArgsEscaped: c.ArgsEscaped,
		Image: c.Image, Volumes: c.Volumes, WorkingDir: c.WorkingDir, Entrypoint: c.Entrypoint,
		OnBuild: c.OnBuild, Labels: c.Labels, StopSignal: c.StopSignal, Shell: c.Shell,
	}
}

func (s *Server) inspectImage(w http.ResponseWriter, r *http.Request, name string) error {
	img, err := s.findImage(r, name)
	if err != nil {
		return imageError(err)
	}
	writeJSON(w, http.StatusOK, imageInspect(img, clientVersion(r)))
	return nil
}

// imageInspect is GET /images/{name}/json, in dockerd's shape for the
// client's API version.
func imageInspect(img image.Image, version string) map[string]any {
	c := img.Config
	layers := img.Layers
	if layers == nil {
		layers = []string{}
	}
	lastTag := "0001-01-01T00:00:00Z"
	if !img.LastTagTime.IsZero() {
		lastTag = img.LastTagTime.Format(time.RFC3339Nano)
	}
	out := map[string]any{
		"Id":            img.ID,
		"RepoTags":      nonNil(img.RepoTags),
		"RepoDigests":   nonNil(img.RepoDigests),
		"Parent":        img.Parent,
		"Comment":       img.Comment,
		"Created":       img.Created.UTC().Format(time.RFC3339Nano),
		"DockerVersion": c.DockerVersion,
		"Author":        c.Author,
		"Config":        dockerConfig(c.Config),
		"Architecture":  c.Architecture,
		"Os":            c.OS,
		"Size":          img.Size,
		"GraphDriver":   map[string]any{"Name": "overlay2", "Data": nil},
		"RootFS":        map[string]any{"Type": "layers", "Layers": layers},
		"Metadata":      map[string]any{"LastTagTime": lastTag},
	}
	if c.Variant != "" {
		out["Variant"] = c.Variant
	}
	if c.OSVersion != "" {
		out["OsVersion"] = c.OSVersion
	}
	if versionLess(version, "1.44") {
		out["VirtualSize"] = img.Size
	}
	if versionLess(version, "1.45") {
		out["Container"] = c.Container
		out["ContainerConfig"] = dockerConfig(img.ContainerConfig)
	}
	return out
}

func (s *Server) imageHistory(w http.ResponseWriter, r *http.Request, name string) error {
	s.here(r, name)
	hist, err := s.tenantImages(r).History(r.Context(), name)
	if err != nil {
		return imageError(err)
	}
	out := []imagetypes.HistoryResponseItem{}
	for _, h := range hist {
		out = append(out, imagetypes.HistoryResponseItem{
			ID: h.ID, Created: h.Created.Unix(), CreatedBy: h.CreatedBy,
			Tags: h.Tags, Size: h.Size, Comment: h.Comment,
		})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// --- tag, delete, prune ---

func (s *Server) tagImage(w http.ResponseWriter, r *http.Request, name string) error {
	repo, tag := r.URL.Query().Get("repo"), r.URL.Query().Get("tag")
	if repo == "" {
		return badRequest("repository name is required")
	}
	target := repo
	if tag != "" {
		target += ":" + tag
	}
	s.here(r, name)
	if err := s.tenantImages(r).Tag(r.Context(), name, target); err != nil {
		return imageError(err)
	}
	s.publish(r.Context(), types.Event{Tenant: tenantOf(r), Type: "image", Action: "tag", ID: name, Attrs: map[string]string{"name": target}})
	w.WriteHeader(http.StatusCreated)
	return nil
}

func (s *Server) deleteImage(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	if strings.TrimSpace(name) == "" {
		return badRequest("image name cannot be blank")
	}
	s.here(r, name)
	deleted, err := s.tenantImages(r).Remove(r.Context(), name, boolValue(r, "force"), boolValue(r, "noprune"))
	if err != nil {
		return imageError(err)
	}
	out := []imagetypes.DeleteResponse{}
	for _, d := range deleted {
		out = append(out, imagetypes.DeleteResponse{Untagged: d.Untagged, Deleted: d.Deleted})
		action, id := "untag", d.Untagged
		if d.Deleted != "" {
			action, id = "delete", d.Deleted
		}
		s.publish(r.Context(), types.Event{Tenant: tenantOf(r), Type: "image", Action: action, ID: id, Attrs: map[string]string{"name": id}})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) pruneImages(w http.ResponseWriter, r *http.Request) error {
	f, err := parseFilters(r)
	if err != nil {
		return err
	}
	all := false
	for k, vs := range f {
		switch k {
		case "dangling":
			for _, v := range vs {
				switch strings.ToLower(v) {
				case "false", "0":
					all = true
				case "true", "1":
				default:
					return badRequest("invalid filter 'dangling=%s'", v)
				}
			}
		case "label", "label!", "until":
		default:
			return badRequest("invalid filter '%s'", k)
		}
	}
	keep := func(img image.Image) bool {
		return !f.matchLabels(img.Config.Config.Labels) || !f.untilOK(img.Created)
	}
	if err := s.pruneHere(r, all); err != nil {
		return err
	}
	rep, err := s.tenantImages(r).Prune(r.Context(), all, keep)
	if err != nil {
		return err
	}
	var deleted []imagetypes.DeleteResponse
	for _, d := range rep.Deleted {
		deleted = append(deleted, imagetypes.DeleteResponse{Untagged: d.Untagged, Deleted: d.Deleted})
	}
	writeJSON(w, http.StatusOK, map[string]any{"ImagesDeleted": deleted, "SpaceReclaimed": rep.SpaceReclaimed})
	return nil
}

// --- save, load ---

func (s *Server) saveImages(w http.ResponseWriter, r *http.Request) error {
	names := r.URL.Query()["names"]
	if len(names) == 0 {
		return badRequest("no images given")
	}
	return s.saveRefs(w, r, names)
}

func (s *Server) saveRefs(w http.ResponseWriter, r *http.Request, names []string) error {
	for _, n := range names {
		s.here(r, n)
		if _, err := s.lookupImage(r, n); err != nil {
			return imageError(err)
		}
	}
	w.Header().Set("Content-Type", "application/x-tar")
	sw := &startedWriter{w: w}
	if err := s.tenantImages(r).Save(r.Context(), names, sw); err != nil {
		if !sw.started {
			return imageError(err)
		}
		s.log.Warn("save failed after the archive started", "err", err)
		panic(http.ErrAbortHandler) // the client must not take a cut archive for a whole one
	}
	if !sw.started {
		w.WriteHeader(http.StatusOK)
	}
	return nil
}

type startedWriter struct {
	w       http.ResponseWriter
	started bool
}

func (sw *startedWriter) Write(p []byte) (int, error) {
	if !sw.started {
		sw.started = true
		sw.w.WriteHeader(http.StatusOK)
	}
	return sw.w.Write(p)
}

func (s *Server) loadImages(w http.ResponseWriter, r *http.Request) error {
	quiet := boolValue(r, "quiet")
	js := &jsonStream{w: w}
	progress := func(e image.ProgressEvent) {
		if !quiet {
			js.send(progressMessage(e))
		}
	}
	loaded, err := s.tenantImages(r).Load(r.Context(), r.Body, progress)
	for _, l := range loaded {
		msg := "Loaded image: " + l + "\n"
		if strings.HasPrefix(l, "sha256:") {
			msg = "Loaded image ID: " + l + "\n"
		}
		js.send(jsonMessage{Stream: msg})
		s.publish(r.Context(), types.Event{Tenant: tenantOf(r), Type: "image", Action: "load", ID: l, Attrs: map[string]string{"name": l}})
	}
	if err != nil {
		return js.finish(imageError(err))
	}
	if !js.started {
		js.send(jsonMessage{Stream: ""})
	}
	return nil
}

// --- login ---

func (s *Server) login(w http.ResponseWriter, r *http.Request) error {
	var ac registry.AuthConfig
	if err := decodeBody(r, &ac); err != nil {
		return err
	}
	if host, ok := s.ownRegistry(r, ac.ServerAddress); ok {
		return s.loginOwnRegistry(w, r, host, ac)
	}
	err := s.images.Login(r.Context(), ac.ServerAddress, authn.AuthConfig{
		Username: ac.Username, Password: ac.Password, Auth: ac.Auth,
		IdentityToken: ac.IdentityToken, RegistryToken: ac.RegistryToken,
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, registry.AuthResponse{Status: "Login Succeeded"})
	return nil
}
