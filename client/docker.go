package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/image"
)

// DockerAPIVersion is the Engine API version the Docker calls name in their
// path; macro serves 1.24 to 1.50.
const DockerAPIVersion = "1.44"

// NamespaceLabel is the label that names a container's namespace (its
// compose project); containers without it are in namespace "default".
const NamespaceLabel = "com.docker.compose.project"

// docker sends a Docker API request, which authenticates with the client
// certificate instead of the token.
func (c *Client) docker(ctx context.Context, method, path string, q url.Values, stream bool) (*http.Response, context.CancelFunc, error) {
	if c.opts.ClientCert == nil {
		return nil, nil, ErrNoClientCert
	}
	p := "/v" + DockerAPIVersion + path
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	return c.do(ctx, request{method: method, path: p, stream: stream})
}

func (c *Client) dockerJSON(ctx context.Context, path string, q url.Values, out any) error {
	if c.opts.ClientCert == nil {
		return ErrNoClientCert
	}
	p := "/v" + DockerAPIVersion + path
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	return c.call(ctx, request{method: http.MethodGet, path: p}, out)
}

// Containers lists the tenant's containers (pods): the running ones, or
// all of them.
func (c *Client) Containers(ctx context.Context, all bool) ([]container.Summary, error) {
	q := url.Values{}
	if all {
		q.Set("all", "1")
	}
	var out []container.Summary
	if err := c.dockerJSON(ctx, "/containers/json", q, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Container inspects one container by name or ID.
func (c *Client) Container(ctx context.Context, id string) (*container.InspectResponse, error) {
	var out container.InspectResponse
	if err := c.dockerJSON(ctx, "/containers/"+url.PathEscape(id)+"/json", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// LogsOptions selects what Logs prints.
type LogsOptions struct {
	Follow     bool
	Timestamps bool
	Tail       string // "all" or a number of lines; "" is all
	Since      string // as docker logs --since: RFC 3339 or a Unix time
}

// Logs copies a container's output to stdout and stderr, until the end of
// what was logged, or with Follow until the container stops or ctx ends.
// tty says whether the container has a TTY (its stream is then raw, not
// multiplexed); Logs finds out itself when the server says so in the
// Content-Type.
func (c *Client) Logs(ctx context.Context, id string, o LogsOptions, stdout, stderr io.Writer) error {
	q := url.Values{"stdout": {"1"}, "stderr": {"1"}}
	if o.Follow {
		q.Set("follow", "1")
	}
	if o.Timestamps {
		q.Set("timestamps", "1")
	}
	if o.Tail != "" {
		q.Set("tail", o.Tail)
	}
	if o.Since != "" {
		q.Set("since", o.Since)
	}
	// Whether the stream is multiplexed depends on the container's TTY;
	// API 1.42+ servers say so in the Content-Type, older ones do not.
	inspect, err := c.Container(ctx, id)
	if err != nil {
		return err
	}
	resp, cancel, err := c.docker(ctx, http.MethodGet, "/containers/"+url.PathEscape(id)+"/logs", q, true)
	if err != nil {
		return err
	}
	defer cancel()
	defer resp.Body.Close()
	raw := inspect.Config != nil && inspect.Config.Tty
	switch resp.Header.Get("Content-Type") {
	case "application/vnd.docker.raw-stream":
		raw = true
	case "application/vnd.docker.multiplexed-stream":
		raw = false
	}
	if raw {
		_, err = io.Copy(stdout, resp.Body)
	} else {
		_, err = stdcopy.StdCopy(stdout, stderr, resp.Body)
	}
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("logs of %s: %w", id, err)
	}
	return nil
}

// Images lists the tenant's images.
func (c *Client) Images(ctx context.Context, all bool) ([]image.Summary, error) {
	q := url.Values{}
	if all {
		q.Set("all", strconv.FormatBool(all))
	}
	var out []image.Summary
	if err := c.dockerJSON(ctx, "/images/json", q, &out); err != nil {
		return nil, err
	}
	return out, nil
}
