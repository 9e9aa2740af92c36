package main

// The local docker engine as a source of images: DOCKER_HOST (unix:// or
// tcp:// without TLS), /var/run/docker.sock, or rootless docker's
// $XDG_RUNTIME_DIR/docker.sock when there is no system one (never the
// docker CLI's current context, which may well be macro itself), asked through the Engine
// API as `docker save` asks (GET /images/get), into a temporary file that
// is then read as any docker save archive.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

const defaultDockerHost = "unix:///var/run/docker.sock"

// dockerEngine is a local docker engine.
type dockerEngine struct {
	host string // as DOCKER_HOST names it
	base string // http://... the requests go to
	http *http.Client
}

// engineError says the docker engine could not be asked.
type engineError struct {
	host string
	err  error
}

func (e *engineError) Error() string {
	return fmt.Sprintf("cannot reach the docker engine at %s (DOCKER_HOST): %v\n  push a saved image instead: kra push --archive FILE (docker save -o FILE IMAGE), or --oci DIR", e.host, e.err)
}

func (e *engineError) Unwrap() error { return e.err }

// newDockerEngine is the engine DOCKER_HOST names.
func newDockerEngine() (*dockerEngine, error) {
	host := os.Getenv("DOCKER_HOST")
	if host == "" {
		host = defaultDockerHost
		// Rootless docker, when there is no system one.
		if rt := os.Getenv("XDG_RUNTIME_DIR"); rt != "" {
			if _, err := os.Stat(strings.TrimPrefix(defaultDockerHost, "unix://")); err != nil {
				if _, err := os.Stat(rt + "/docker.sock"); err == nil {
					host = "unix://" + rt + "/docker.sock"
				}
			}
		}
	}
	if os.Getenv("DOCKER_TLS_VERIFY") != "" {
		return nil, fmt.Errorf("the docker engine at %s wants TLS, which kra push does not speak: save the image (docker save -o FILE IMAGE) and push it with --archive FILE", host)
	}
	u, err := url.Parse(host)
	if err != nil {
		return nil, fmt.Errorf("DOCKER_HOST %q: %w", host, err)
	}
	tr := &http.Transport{ResponseHeaderTimeout: 5 * time.Minute}
	d := &dockerEngine{host: host}
	switch u.Scheme {
	case "unix":
		sock := u.Path
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dl net.Dialer
			return dl.DialContext(ctx, "unix", sock)
		}
		d.base = "http://docker"
	case "tcp", "http":
		d.base = "http://" + u.Host
	default:
		return nil, fmt.Errorf("DOCKER_HOST %q: kra push speaks to unix:// and tcp:// engines", host)
	}
	d.http = &http.Client{Transport: tr}
	return d, nil
}

func (d *dockerEngine) get(ctx context.Context, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.base+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := d.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, &engineError{host: d.host, err: err}
	}
	return resp, nil
}

// engineMessage is the message of an Engine API error answer.
func engineMessage(resp *http.Response) string {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var m struct{ Message string }
	if json.Unmarshal(b, &m) == nil && m.Message != "" {
		return m.Message
	}
	return strings.TrimSpace(string(b))
}

// save writes the docker save archive of image ref into a new temporary
// file in dir and returns its path. An image the engine does not have is
// an *imageNotFoundError.
func (d *dockerEngine) save(ctx context.Context, ref, dir string, progress func(n int64)) (string, error) {
	resp, err := d.get(ctx, "/images/"+ref+"/json")
	if err != nil {
		return "", err
	}
	if resp.StatusCode == http.StatusNotFound {
		resp.Body.Close()
		return "", &imageNotFoundError{name: ref, where: "the docker engine at " + d.host}
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return "", fmt.Errorf("the docker engine at %s: %s", d.host, engineMessage(resp))
	}
	resp.Body.Close()

	resp, err = d.get(ctx, "/images/get?"+url.Values{"names": {ref}}.Encode())
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("docker save %s at %s: %s", ref, d.host, engineMessage(resp))
	}
	f, err := os.CreateTemp(dir, "kra-save-*.tar")
	if err != nil {
		return "", err
	}
	pr := &countingReader{r: resp.Body, report: progress}
	if _, err := io.Copy(f, pr); err != nil {
		f.Close()
		os.Remove(f.Name())
		return "", fmt.Errorf("docker save %s at %s: %w", ref, d.host, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// countingReader reports how much was read, at most every 100 ms.
type countingReader struct {
	r      io.Reader
	n      int64
	last   time.Time
	report func(int64)
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	if c.report != nil {
		if now := time.Now(); now.Sub(c.last) >= 100*time.Millisecond || err == io.EOF {
			c.last = now
			c.report(c.n)
		}
	}
	return n, err
}
