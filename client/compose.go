package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/moby/moby/api/types/container"
)

// The Docker API calls that `kra up` and `kra down` make (package
// client/compose): containers, networks, volumes and archives of a compose
// project, with the request bodies the caller builds.

// Filters is a Docker API filter: {"label": ["a=b"], "name": ["x"]}.
type Filters map[string][]string

func (f Filters) query(q url.Values) url.Values {
	if q == nil {
		q = url.Values{}
	}
	if len(f) > 0 {
		b, _ := json.Marshal(f)
		q.Set("filters", string(b))
	}
	return q
}

// dockerCall sends a Docker API request with a JSON body (when body is not
// nil) and decodes a JSON answer into out (when out is not nil). An answer
// 304 Not Modified (start or stop of a container already so) is no error.
func (c *Client) dockerCall(ctx context.Context, method, path string, q url.Values, body, out any) error {
	return c.dockerCallTimeout(ctx, method, path, q, body, out, false)
}

// dockerCallTimeout is dockerCall without the client's timeout when long:
// stopping a container waits for its stop timeout.
func (c *Client) dockerCallTimeout(ctx context.Context, method, path string, q url.Values, body, out any, long bool) error {
	if c.opts.ClientCert == nil {
		return ErrNoClientCert
	}
	p := "/v" + DockerAPIVersion + path
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	err := c.call(ctx, request{method: method, path: p, body: body, stream: long}, out)
	var e *Error
	if errors.As(err, &e) && e.Status == http.StatusNotModified {
		return nil
	}
	return err
}

// ListContainers lists the tenant's containers that match filters, the
// stopped ones too with all.
func (c *Client) ListContainers(ctx context.Context, all bool, f Filters) ([]container.Summary, error) {
	q := url.Values{}
	if all {
		q.Set("all", "1")
	}
	var out []container.Summary
	if err := c.dockerCall(ctx, http.MethodGet, "/containers/json", f.query(q), nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// CreateContainer creates a container named name (empty: the server picks
// one) from body, the JSON of POST /containers/create, for the image's
// platform ("linux/amd64"; empty: the server's).
func (c *Client) CreateContainer(ctx context.Context, name, platform string, body any) (string, error) {
	q := url.Values{}
	if name != "" {
		q.Set("name", name)
	}
	if platform != "" {
		q.Set("platform", platform)
	}
	var out container.CreateResponse
	if err := c.dockerCall(ctx, http.MethodPost, "/containers/create", q, body, &out); err != nil {
		return "", err
	}
	return out.ID, nil
}

// StartContainer starts a container; one already running is no error.
func (c *Client) StartContainer(ctx context.Context, id string) error {
	return c.dockerCall(ctx, http.MethodPost, "/containers/"+url.PathEscape(id)+"/start", nil, nil, nil)
}

// StopContainer stops a container, killing it after timeout seconds
// (nil: the container's own stop timeout).
func (c *Client) StopContainer(ctx context.Context, id string, timeout *int) error {
	q := url.Values{}
	if timeout != nil {
		q.Set("t", strconv.Itoa(*timeout))
	}
	return c.dockerCallTimeout(ctx, http.MethodPost, "/containers/"+url.PathEscape(id)+"/stop", q, nil, nil, true)
}

// KillContainer sends a container signal (SIGKILL when empty).
func (c *Client) KillContainer(ctx context.Context, id, signal string) error {
	q := url.Values{}
	if signal != "" {
		q.Set("signal", signal)
	}
	return c.dockerCall(ctx, http.MethodPost, "/containers/"+url.PathEscape(id)+"/kill", q, nil, nil)
}

// RemoveContainer removes a container, a running one with force, and its
// anonymous volumes with volumes.
func (c *Client) RemoveContainer(ctx context.Context, id string, force, volumes bool) error {
	q := url.Values{}
	if force {
		q.Set("force", "1")
	}
	if volumes {
		q.Set("v", "1")
	}
	return c.dockerCallTimeout(ctx, http.MethodDelete, "/containers/"+url.PathEscape(id), q, nil, nil, force)
}

// PutArchive extracts a tar stream into the directory path of a
// container's filesystem (PUT /containers/{id}/archive); a path inside one
// of its volumes writes into the volume.
func (c *Client) PutArchive(ctx context.Context, id, path string, tar io.Reader) error {
	if c.opts.ClientCert == nil {
		return ErrNoClientCert
	}
	q := url.Values{"path": {path}}
	p := "/v" + DockerAPIVersion + "/containers/" + url.PathEscape(id) + "/archive?" + q.Encode()
	resp, cancel, err := c.do(ctx, request{method: http.MethodPut, path: p, raw: tar, rawType: "application/x-tar", stream: true})
	if err != nil {
		return err
	}
	defer cancel()
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	return nil
}

// ImageID returns the ID of the tenant's image ref, "" when there is none.
func (c *Client) ImageID(ctx context.Context, ref string) (string, error) {
	var out struct {
		ID string `json:"Id"`
	}
	err := c.dockerCall(ctx, http.MethodGet, "/images/"+ref+"/json", nil, nil, &out)
	if errors.Is(err, ErrNotFound) {
		return "", nil
	}
	return out.ID, err
}

// PullImage pulls ref (POST /images/create) and returns the error the
// server reports in its progress stream, if any.
func (c *Client) PullImage(ctx context.Context, ref string) error {
	if c.opts.ClientCert == nil {
		return ErrNoClientCert
	}
	q := url.Values{"fromImage": {ref}}
	p := "/v" + DockerAPIVersion + "/images/create?" + q.Encode()
	resp, cancel, err := c.do(ctx, request{method: http.MethodPost, path: p, stream: true})
	if err != nil {
		return err
	}
	defer cancel()
	defer resp.Body.Close()
	dec := json.NewDecoder(bufio.NewReader(resp.Body))
	for {
		var m struct {
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("pulling %s: %w", ref, err)
		}
		if m.ErrorDetail.Message != "" {
			return errors.New(m.ErrorDetail.Message)
		}
		if m.Error != "" {
			return errors.New(m.Error)
		}
	}
}

// Network is a network as GET /networks lists it.
type Network struct {
	ID     string            `json:"Id"`
	Name   string            `json:"Name"`
	Driver string            `json:"Driver"`
	Labels map[string]string `json:"Labels"`
}

// ListNetworks lists the tenant's networks that match filters.
func (c *Client) ListNetworks(ctx context.Context, f Filters) ([]Network, error) {
	var out []Network
	if err := c.dockerCall(ctx, http.MethodGet, "/networks", f.query(nil), nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// CreateNetwork creates a network from body, the JSON of POST
// /networks/create, and returns its ID.
func (c *Client) CreateNetwork(ctx context.Context, body any) (string, error) {
	var out struct {
		ID string `json:"Id"`
	}
	if err := c.dockerCall(ctx, http.MethodPost, "/networks/create", nil, body, &out); err != nil {
		return "", err
	}
	return out.ID, nil
}

// RemoveNetwork removes a network by name or ID.
func (c *Client) RemoveNetwork(ctx context.Context, id string) error {
	return c.dockerCall(ctx, http.MethodDelete, "/networks/"+url.PathEscape(id), nil, nil, nil)
}

// Volume is a volume as GET /volumes lists it.
type Volume struct {
	Name   string            `json:"Name"`
	Driver string            `json:"Driver"`
	Labels map[string]string `json:"Labels"`
}

// ListVolumes lists the tenant's volumes that match filters.
func (c *Client) ListVolumes(ctx context.Context, f Filters) ([]Volume, error) {
	var out struct {
		Volumes []Volume `json:"Volumes"`
	}
	if err := c.dockerCall(ctx, http.MethodGet, "/volumes", f.query(nil), nil, &out); err != nil {
		return nil, err
	}
	return out.Volumes, nil
}

// CreateVolume creates a volume from body, the JSON of POST
// /volumes/create.
func (c *Client) CreateVolume(ctx context.Context, body any) (Volume, error) {
	var out Volume
	err := c.dockerCall(ctx, http.MethodPost, "/volumes/create", nil, body, &out)
	return out, err
}

// RemoveVolume removes a volume by name.
func (c *Client) RemoveVolume(ctx context.Context, name string, force bool) error {
	q := url.Values{}
	if force {
		q.Set("force", "1")
	}
	return c.dockerCall(ctx, http.MethodDelete, "/volumes/"+url.PathEscape(name), q, nil, nil)
}
