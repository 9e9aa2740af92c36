package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// api is a minimal Docker Engine API client over a unix socket: the
// requests `docker run -d` makes, nothing more, so that what is timed is
// the server.
type api struct {
	c *http.Client
}

func newAPI(sock string) *api {
	return &api{c: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
		MaxIdleConnsPerHost: 4,
	}}}
}

func (a *api) call(method, path string, body, out any) error {
	var buf bytes.Buffer
	if body != nil {
		if err := json.NewEncoder(&buf).Encode(body); err != nil {
			return err
		}
	}
	req, err := http.NewRequest(method, "http://docker/v1.50"+path, &buf)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// create creates a busybox container running cmd and returns its ID.
func (a *api) create(image string, cmd ...string) (string, error) {
	var cr struct{ Id string }
	err := a.call("POST", "/containers/create", map[string]any{"Image": image, "Cmd": cmd}, &cr)
	return cr.Id, err
}

func (a *api) start(id string) error {
	return a.call("POST", "/containers/"+id+"/start", nil, nil)
}

func (a *api) remove(id string) error {
	return a.call("DELETE", "/containers/"+id+"?force=1", nil, nil)
}

type containerState struct {
	Running bool
	Pid     int
}

func (a *api) state(id string) (containerState, error) {
	var ci struct{ State containerState }
	err := a.call("GET", "/containers/"+id+"/json", nil, &ci)
	return ci.State, err
}

// ids lists every container (running or not).
func (a *api) ids() ([]string, error) {
	var cs []struct{ Id string }
	err := a.call("GET", "/containers/json?all=1", nil, &cs)
	ids := make([]string, len(cs))
	for i, c := range cs {
		ids[i] = c.Id
	}
	return ids, err
}

// removeAll removes every container and waits until the list is empty and
// the node had a moment to tear them down, so that the next timed start does
// not share the machine with the teardown of the last ones.
func (a *api) removeAll() error {
	ids, err := a.ids()
	if err != nil {
		return err
	}
	for _, id := range ids {
		if err := a.remove(id); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ids, err := a.ids()
		if err != nil {
			return err
		}
		if len(ids) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d containers still listed 30s after removal", len(ids))
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	return nil
}

// ranAt returns when the container's process was first seen running want
// (its command, exec'd): returned, the time the start request was answered,
// if it already ran want then, or the moment it was seen to. The API may
// answer a start before the process has exec'd: runc start returns once it
// released the init process, which then calls execve when it is scheduled.
func (a *api) ranAt(id, want string, returned time.Time) (end time.Time, late bool, pid int, err error) {
	st, err := a.state(id)
	if err != nil {
		return returned, false, 0, err
	}
	if !st.Running || st.Pid <= 0 {
		return returned, false, 0, fmt.Errorf("container %.12s: not running after start (%+v)", id, st)
	}
	deadline := time.Now().Add(5 * time.Second)
	for first := true; ; first = false {
		comm, err := readComm(st.Pid)
		if err != nil {
			return returned, false, 0, fmt.Errorf("container %.12s: %w", id, err)
		}
		if comm == want {
			if first {
				return returned, false, st.Pid, nil
			}
			return time.Now(), true, st.Pid, nil
		}
		if time.Now().After(deadline) {
			return returned, false, 0, fmt.Errorf("container %.12s: pid %d still runs %q 5s after start", id, st.Pid, comm)
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// checkRunning verifies that the container runs and that its process is
// the command asked for (it has exec'd, not a runtime's init).
// It returns the process's pid.
func (a *api) checkRunning(id, want string) (int, error) {
	st, err := a.state(id)
	if err != nil {
		return 0, err
	}
	if !st.Running || st.Pid <= 0 {
		return 0, fmt.Errorf("container %.12s: not running after start (%+v)", id, st)
	}
	comm, err := readComm(st.Pid)
	if err != nil {
		return 0, fmt.Errorf("container %.12s: %w", id, err)
	}
	if comm != want {
		return 0, fmt.Errorf("container %.12s: pid %d runs %q, not %q", id, st.Pid, comm, want)
	}
	return st.Pid, nil
}
