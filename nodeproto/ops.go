package nodeproto

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net"
	"net/http"
	"net/url"
	"sync"
	"syscall"
	"time"

	"github.com/macro-cloud/macro/image"
	"github.com/macro-cloud/macro/runtime"
	"github.com/macro-cloud/macro/runtime/logfile"
	"github.com/macro-cloud/macro/types"
	"github.com/macro-cloud/macro/volume"
)

// Ops are the operations a node serves to the API (what agent.Agent does).
type Ops interface {
	Logs(ctx context.Context, id string, opts logfile.Options) iter.Seq2[logfile.Entry, error]
	Stdin(ctx context.Context, id string) (io.WriteCloser, error)
	Resize(ctx context.Context, id string, s runtime.Size) error
	Exec(ctx context.Context, id string, p runtime.Process, stdio runtime.IO) (int, error)
	Signal(ctx context.Context, id string, sig syscall.Signal) error
	Top(ctx context.Context, id, psArgs string) ([]string, [][]string, error)
	Stats(ctx context.Context, id string) (runtime.Stats, error)
	Changes(ctx context.Context, id string) ([]image.Change, error)
	StatPath(ctx context.Context, id, path string) (image.PathStat, error)
	Archive(ctx context.Context, id, path string) (io.ReadCloser, image.PathStat, error)
	Extract(ctx context.Context, id, path string, r io.Reader) error
	Export(ctx context.Context, id string) (io.ReadCloser, error)
	Size(ctx context.Context, id string) (int64, error)
	RemoveVolume(ctx context.Context, tenant, name string) error
	VolumeSize(ctx context.Context, tenant, name string) (int64, error)
	Wake(ctx context.Context, id string) error
	Suspend(ctx context.Context, id string) error
	CreateVolume(ctx context.Context, v types.Volume) error
	VolumeSnapshots(ctx context.Context, tenant, name string) ([]volume.Snapshot, error)
	SnapshotVolume(ctx context.Context, tenant, name string, snap volume.Snapshot) error
	DeleteVolumeSnapshot(ctx context.Context, tenant, name, snap string) error
	RollbackVolume(ctx context.Context, tenant, name, snap string) error
	// SuspendIdle suspends a pod unless other servers' ingress traffic
	// reached it since since (auto-suspend).
	SuspendIdle(ctx context.Context, id string, since time.Time) error
	// DialPod connects to a port of a running pod of tenant on the node
	// (the ingress of another server reaches it so).
	DialPod(ctx context.Context, tenant, id string, port int) (net.Conn, error)
}

// OpsHandler serves ops to the servers, over the node's tunnel.
func OpsHandler(ops Ops) http.Handler {
	o := &opsServer{ops: ops}
	m := http.NewServeMux()
	m.HandleFunc("POST /pods/{id}/logs", o.logs)
	m.HandleFunc("POST /pods/{id}/stdin", o.stdin)
	m.HandleFunc("POST /pods/{id}/exec", o.exec)
	m.HandleFunc("GET /pods/{id}/archive", o.archive)
	m.HandleFunc("PUT /pods/{id}/archive", o.extract)
	m.HandleFunc("GET /pods/{id}/export", o.export)
	m.HandleFunc("POST /pods/{id}/dial", o.dial)
	m.HandleFunc("POST /call/{op}", o.call)
	m.HandleFunc("/volume-data/{tenant}/{name}/{op}", o.volumeData)
	volfsRoutes(m, ops)
	return m
}

type opsServer struct{ ops Ops }

// lockedWriter serialises frames from several goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) frame(kind byte, p []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return writeFrame(l.w, kind, p)
}

// wireEntry is one log entry on the wire.
type wireEntry struct {
	Stream string    `json:"s,omitempty"`
	Time   time.Time `json:"t"`
	Line   []byte    `json:"l,omitempty"`
	Err    *Error    `json:"err,omitempty"`
}

// wireLogOptions are logfile.Options without the channel: the request
// body stays open while the API's Done is open, and its end closes Done.
type wireLogOptions struct {
	Follow  bool      `json:"follow,omitempty"`
	Since   time.Time `json:"since,omitzero"`
	Until   time.Time `json:"until,omitzero"`
	Tail    int       `json:"tail"`
	Stdout  bool      `json:"stdout,omitempty"`
	Stderr  bool      `json:"stderr,omitempty"`
	HasDone bool      `json:"hasDone,omitempty"`
}

func (o *opsServer) logs(w http.ResponseWriter, r *http.Request) {
	var wo wireLogOptions
	if err := json.Unmarshal([]byte(r.Header.Get("X-Macro-Options")), &wo); err != nil {
		writeJSONError(w, http.StatusBadRequest, fmt.Errorf("log options: %w", err))
		return
	}
	rc := http.NewResponseController(w)
	rc.EnableFullDuplex()
	opts := logfile.Options{Follow: wo.Follow, Since: wo.Since, Until: wo.Until, Tail: wo.Tail, Stdout: wo.Stdout, Stderr: wo.Stderr}
	if wo.HasDone {
		done := make(chan struct{})
		go func() {
			io.Copy(io.Discard, r.Body)
			close(done)
		}()
		opts.Done = done
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc.Flush()
	enc := json.NewEncoder(w)
	for e, err := range o.ops.Logs(r.Context(), r.PathValue("id"), opts) {
		we := wireEntry{Stream: e.Stream, Time: e.Time, Line: e.Line}
		if err != nil {
			we = wireEntry{Err: wireError(err)}
		}
		if enc.Encode(we) != nil || rc.Flush() != nil {
			return
		}
		if err != nil {
			return
		}
	}
}

func (o *opsServer) stdin(w http.ResponseWriter, r *http.Request) {
	in, err := o.ops.Stdin(r.Context(), r.PathValue("id"))
	if err != nil {
		writeJSONError(w, http.StatusConflict, err)
		return
	}
	rc := http.NewResponseController(w)
	rc.EnableFullDuplex()
	w.WriteHeader(http.StatusOK)
	rc.Flush()
	_, err = io.Copy(in, r.Body)
	in.Close()
	json.NewEncoder(w).Encode(wireError(err))
}

// execResult ends an exec's output.
type execResult struct {
	Code int    `json:"code"`
	Err  *Error `json:"err,omitempty"`
}

func (o *opsServer) exec(w http.ResponseWriter, r *http.Request) {
	var p runtime.Process
	raw, _ := base64.StdEncoding.DecodeString(r.Header.Get("X-Macro-Process"))
	if err := json.Unmarshal(raw, &p); err != nil {
		writeJSONError(w, http.StatusBadRequest, fmt.Errorf("exec process: %w", err))
		return
	}
	hasStdin := r.Header.Get("X-Macro-Stdin") == "1"
	rc := http.NewResponseController(w)
	rc.EnableFullDuplex()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusOK)
	rc.Flush()
	out := &lockedWriter{w: w}
	resize := make(chan runtime.Size, 4)
	stdio := runtime.IO{Stdout: frameWriter{out, frameStdout}, Stderr: frameWriter{out, frameStderr}, Resize: resize}
	var pr *io.PipeReader
	if hasStdin {
		var pw *io.PipeWriter
		pr, pw = io.Pipe()
		stdio.Stdin = pr
		go func() {
			defer close(resize)
			var buf []byte
			for {
				kind, p, err := readFrame(r.Body, buf)
				if err != nil {
					pw.Close()
					return
				}
				buf = p[:0]
				switch kind {
				case frameStdin:
					if _, err := pw.Write(p); err != nil {
						io.Copy(io.Discard, r.Body)
						return
					}
				case frameResize:
					var s runtime.Size
					if json.Unmarshal(p, &s) == nil {
						select {
						case resize <- s:
						default:
						}
					}
				case frameClose:
					pw.Close()
				}
			}
		}()
	} else {
		close(resize)
	}
	code, err := o.ops.Exec(r.Context(), r.PathValue("id"), p, stdio)
	if pr != nil {
		pr.Close()
	}
	res, _ := json.Marshal(execResult{Code: code, Err: wireError(err)})
	out.frame(frameResult, res)
}

func (o *opsServer) archive(w http.ResponseWriter, r *http.Request) {
	rd, st, err := o.ops.Archive(r.Context(), r.PathValue("id"), r.URL.Query().Get("path"))
	if err != nil {
		writeJSONError(w, http.StatusNotFound, err)
		return
	}
	defer rd.Close()
	b, _ := json.Marshal(st)
	w.Header().Set("X-Macro-Stat", base64.StdEncoding.EncodeToString(b))
	w.Header().Set("Content-Type", "application/x-tar")
	io.Copy(w, rd)
}

func (o *opsServer) extract(w http.ResponseWriter, r *http.Request) {
	if err := o.ops.Extract(r.Context(), r.PathValue("id"), r.URL.Query().Get("path"), r.Body); err != nil {
		writeJSONError(w, http.StatusConflict, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (o *opsServer) export(w http.ResponseWriter, r *http.Request) {
	rd, err := o.ops.Export(r.Context(), r.PathValue("id"))
	if err != nil {
		writeJSONError(w, http.StatusConflict, err)
		return
	}
	defer rd.Close()
	w.Header().Set("Content-Type", "application/x-tar")
	io.Copy(w, rd)
}

// callArgs are the arguments of the small operations.
type callArgs struct {
	ID     string          `json:"id,omitempty"`
	Tenant string          `json:"tenant,omitempty"`
	Name   string          `json:"name,omitempty"`
	Path   string          `json:"path,omitempty"`
	PsArgs string          `json:"psArgs,omitempty"`
	Signal syscall.Signal  `json:"signal,omitempty"`
	Size   runtime.Size    `json:"size"`
	Volume types.Volume    `json:"volume"`
	Snap   volume.Snapshot `json:"snap"`
	Since  time.Time       `json:"since,omitzero"`
}

// topResult is what Top returns.
type topResult struct {
	Titles    []string   `json:"titles"`
	Processes [][]string `json:"processes"`
}

func (o *opsServer) call(w http.ResponseWriter, r *http.Request) {
	var a callArgs
	if err := decodeBody(r, &a); err != nil {
		writeJSONError(w, http.StatusBadRequest, err)
		return
	}
	ctx := r.Context()
	var res any
	var err error
	switch r.PathValue("op") {
	case "resize":
		err = o.ops.Resize(ctx, a.ID, a.Size)
	case "signal":
		err = o.ops.Signal(ctx, a.ID, a.Signal)
	case "top":
		var t topResult
		t.Titles, t.Processes, err = o.ops.Top(ctx, a.ID, a.PsArgs)
		res = t
	case "stats":
		res, err = o.ops.Stats(ctx, a.ID)
	case "changes":
		res, err = o.ops.Changes(ctx, a.ID)
	case "stat-path":
		res, err = o.ops.StatPath(ctx, a.ID, a.Path)
	case "size":
		res, err = o.ops.Size(ctx, a.ID)
	case "remove-volume":
		err = o.ops.RemoveVolume(ctx, a.Tenant, a.Name)
	case "volume-size":
		res, err = o.ops.VolumeSize(ctx, a.Tenant, a.Name)
	case "wake":
		err = o.ops.Wake(ctx, a.ID)
	case "suspend":
		err = o.ops.Suspend(ctx, a.ID)
	case "suspend-idle":
		err = o.ops.SuspendIdle(ctx, a.ID, a.Since)
	case "create-volume":
		err = o.ops.CreateVolume(ctx, a.Volume)
	case "volume-snapshots":
		res, err = o.ops.VolumeSnapshots(ctx, a.Tenant, a.Name)
	case "snapshot-volume":
		err = o.ops.SnapshotVolume(ctx, a.Tenant, a.Name, a.Snap)
	case "delete-volume-snapshot":
		err = o.ops.DeleteVolumeSnapshot(ctx, a.Tenant, a.Name, a.Snap.Name)
	case "rollback-volume":
		err = o.ops.RollbackVolume(ctx, a.Tenant, a.Name, a.Snap.Name)
	default:
		writeJSONError(w, http.StatusNotFound, fmt.Errorf("no operation %q", r.PathValue("op")))
		return
	}
	if err != nil {
		writeJSONError(w, http.StatusConflict, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(res)
}

// ServeOps serves ops on the streams the server opens in a tunnel until
// l closes.
func ServeOps(l net.Listener, ops Ops) error {
	srv := &http.Server{Handler: OpsHandler(ops), ReadHeaderTimeout: 30 * time.Second}
	err := srv.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Remote is a node reached through its tunnel: what the API asks of the
// node that runs a pod, when that node is not this process.
type Remote struct {
	node    string
	hc      *http.Client
	tunnels *Tunnels
}

// Remote returns the node's operations through its tunnel to this server.
func (t *Tunnels) Remote(node string) *Remote {
	t.mu.Lock()
	defer t.mu.Unlock()
	if r := t.remotes[node]; r != nil {
		return r
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return t.open(ctx, node, 10*time.Second)
		},
		// A stream per request: yamux streams are cheap, and the
		// full-duplex operations (logs, exec) must not share one.
		DisableKeepAlives: true,
	}
	r := &Remote{node: node, hc: &http.Client{Transport: tr}, tunnels: t}
	t.remotes[node] = r
	return r
}

var _ Ops = (*Remote)(nil)

func (n *Remote) url(path string, q url.Values) string {
	u := "http://node" + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

func (n *Remote) do(ctx context.Context, method, path string, q url.Values, body io.Reader, hdr http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, n.url(path, q), body)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := n.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", n.node, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, readError(resp)
	}
	return resp, nil
}

func (n *Remote) call(ctx context.Context, op string, a callArgs, res any) error {
	b, _ := json.Marshal(a)
	resp, err := n.do(ctx, "POST", "/call/"+op, nil, bytes.NewReader(b), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if res == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(res); err != nil {
		return fmt.Errorf("node %s: %s: %w", n.node, op, err)
	}
	return nil
}

// Logs follows the pod's log on the node.
func (n *Remote) Logs(ctx context.Context, id string, opts logfile.Options) iter.Seq2[logfile.Entry, error] {
	return func(yield func(logfile.Entry, error) bool) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		wo := wireLogOptions{Follow: opts.Follow, Since: opts.Since, Until: opts.Until, Tail: opts.Tail, Stdout: opts.Stdout, Stderr: opts.Stderr, HasDone: opts.Done != nil}
		hb, _ := json.Marshal(wo)
		pr, pw := io.Pipe()
		if opts.Done != nil {
			go func() {
				select {
				case <-opts.Done:
				case <-ctx.Done():
				}
				pw.Close()
			}()
		} else {
			pw.Close()
		}
		resp, err := n.do(ctx, "POST", "/pods/"+id+"/logs", nil, pr, http.Header{"X-Macro-Options": {string(hb)}})
		if err != nil {
			yield(logfile.Entry{}, err)
			return
		}
		defer resp.Body.Close()
		dec := json.NewDecoder(bufio.NewReader(resp.Body))
		for {
			var we wireEntry
			if err := dec.Decode(&we); err != nil {
				if errors.Is(err, io.EOF) || ctx.Err() != nil {
					return
				}
				yield(logfile.Entry{}, fmt.Errorf("node %s: logs: %w", n.node, err))
				return
			}
			if we.Err != nil {
				yield(logfile.Entry{}, we.Err)
				return
			}
			if !yield(logfile.Entry{Stream: we.Stream, Time: we.Time, Line: we.Line}, nil) {
				return
			}
		}
	}
}

// Stdin opens the pod's standard input on the node.
func (n *Remote) Stdin(ctx context.Context, id string) (io.WriteCloser, error) {
	pr, pw := io.Pipe()
	resp, err := n.do(ctx, "POST", "/pods/"+id+"/stdin", nil, pr, nil)
	if err != nil {
		pr.Close()
		return nil, err
	}
	return &remoteStdin{pw: pw, resp: resp}, nil
}

type remoteStdin struct {
	pw   *io.PipeWriter
	resp *http.Response
}

func (s *remoteStdin) Write(p []byte) (int, error) { return s.pw.Write(p) }

func (s *remoteStdin) Close() error {
	s.pw.Close()
	defer s.resp.Body.Close()
	var e *Error
	if json.NewDecoder(s.resp.Body).Decode(&e) == nil && e != nil {
		return e
	}
	return nil
}

// Exec runs a process in the pod on the node.
func (n *Remote) Exec(ctx context.Context, id string, p runtime.Process, stdio runtime.IO) (int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pb, _ := json.Marshal(p)
	hdr := http.Header{"X-Macro-Process": {base64.StdEncoding.EncodeToString(pb)}}
	pr, pw := io.Pipe()
	in := &lockedWriter{w: pw}
	if stdio.Stdin != nil {
		hdr.Set("X-Macro-Stdin", "1")
		go func() {
			buf := make([]byte, 32<<10)
			for {
				k, err := stdio.Stdin.Read(buf)
				if k > 0 && in.frame(frameStdin, buf[:k]) != nil {
					return
				}
				if err != nil {
					in.frame(frameClose, nil)
					return
				}
			}
		}()
		if stdio.Resize != nil {
			go func() {
				for {
					select {
					case s, ok := <-stdio.Resize:
						if !ok {
							return
						}
						b, _ := json.Marshal(s)
						if in.frame(frameResize, b) != nil {
							return
						}
					case <-ctx.Done():
						return
					}
				}
			}()
		}
	} else {
		pw.Close()
	}
	defer pw.Close()
	resp, err := n.do(ctx, "POST", "/pods/"+id+"/exec", nil, pr, hdr)
	if err != nil {
		return -1, err
	}
	defer resp.Body.Close()
	var buf []byte
	for {
		kind, b, err := readFrame(resp.Body, buf)
		if err != nil {
			return -1, fmt.Errorf("node %s: exec: %w", n.node, err)
		}
		buf = b[:0]
		switch kind {
		case frameStdout:
			if stdio.Stdout != nil {
				stdio.Stdout.Write(b)
			}
		case frameStderr:
			if stdio.Stderr != nil {
				stdio.Stderr.Write(b)
			}
		case frameResult:
			var res execResult
			if err := json.Unmarshal(b, &res); err != nil {
				return -1, fmt.Errorf("node %s: exec result: %w", n.node, err)
			}
			if res.Err != nil {
				return res.Code, res.Err
			}
			return res.Code, nil
		}
	}
}

// Resize sets the pod's terminal size.
func (n *Remote) Resize(ctx context.Context, id string, s runtime.Size) error {
	return n.call(ctx, "resize", callArgs{ID: id, Size: s}, nil)
}

// Signal signals the pod's main process.
func (n *Remote) Signal(ctx context.Context, id string, sig syscall.Signal) error {
	return n.call(ctx, "signal", callArgs{ID: id, Signal: sig}, nil)
}

// Top lists the pod's processes.
func (n *Remote) Top(ctx context.Context, id, psArgs string) ([]string, [][]string, error) {
	var t topResult
	err := n.call(ctx, "top", callArgs{ID: id, PsArgs: psArgs}, &t)
	return t.Titles, t.Processes, err
}

// Stats reports the pod's resource usage.
func (n *Remote) Stats(ctx context.Context, id string) (runtime.Stats, error) {
	var s runtime.Stats
	err := n.call(ctx, "stats", callArgs{ID: id}, &s)
	return s, err
}

// Changes lists what the pod changed in its filesystem.
func (n *Remote) Changes(ctx context.Context, id string) ([]image.Change, error) {
	var c []image.Change
	err := n.call(ctx, "changes", callArgs{ID: id}, &c)
	return c, err
}

// StatPath describes a path in the pod's filesystem.
func (n *Remote) StatPath(ctx context.Context, id, path string) (image.PathStat, error) {
	var s image.PathStat
	err := n.call(ctx, "stat-path", callArgs{ID: id, Path: path}, &s)
	return s, err
}

// Archive reads a path of the pod's filesystem as a tar stream.
func (n *Remote) Archive(ctx context.Context, id, path string) (io.ReadCloser, image.PathStat, error) {
	resp, err := n.do(ctx, "GET", "/pods/"+id+"/archive", url.Values{"path": {path}}, nil, nil)
	if err != nil {
		return nil, image.PathStat{}, err
	}
	var st image.PathStat
	raw, _ := base64.StdEncoding.DecodeString(resp.Header.Get("X-Macro-Stat"))
	if err := json.Unmarshal(raw, &st); err != nil {
		resp.Body.Close()
		return nil, st, fmt.Errorf("node %s: archive stat: %w", n.node, err)
	}
	return resp.Body, st, nil
}

// Extract unpacks a tar stream into the pod's filesystem at path.
func (n *Remote) Extract(ctx context.Context, id, path string, r io.Reader) error {
	resp, err := n.do(ctx, "PUT", "/pods/"+id+"/archive", url.Values{"path": {path}}, io.NopCloser(r), nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// Export reads the pod's whole filesystem as a tar stream.
func (n *Remote) Export(ctx context.Context, id string) (io.ReadCloser, error) {
	resp, err := n.do(ctx, "GET", "/pods/"+id+"/export", nil, nil, nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// Size is the size of the files the pod wrote.
func (n *Remote) Size(ctx context.Context, id string) (int64, error) {
	var s int64
	err := n.call(ctx, "size", callArgs{ID: id}, &s)
	return s, err
}

// RemoveVolume removes a volume's data from the node.
func (n *Remote) RemoveVolume(ctx context.Context, tenant, name string) error {
	return n.call(ctx, "remove-volume", callArgs{Tenant: tenant, Name: name}, nil)
}

// VolumeSize is the size of a volume's files on the node.
func (n *Remote) VolumeSize(ctx context.Context, tenant, name string) (int64, error) {
	var s int64
	err := n.call(ctx, "volume-size", callArgs{Tenant: tenant, Name: name}, &s)
	return s, err
}

// Wake thaws a suspended pod.
func (n *Remote) Wake(ctx context.Context, id string) error {
	return n.call(ctx, "wake", callArgs{ID: id}, nil)
}

// Suspend freezes an idle pod.
func (n *Remote) Suspend(ctx context.Context, id string) error {
	return n.call(ctx, "suspend", callArgs{ID: id}, nil)
}

// SuspendIdle suspends the pod unless other servers' ingress traffic
// reached it since since.
func (n *Remote) SuspendIdle(ctx context.Context, id string, since time.Time) error {
	return n.call(ctx, "suspend-idle", callArgs{ID: id, Since: since}, nil)
}

// CreateVolume makes a volume's storage on the node.
func (n *Remote) CreateVolume(ctx context.Context, v types.Volume) error {
	return n.call(ctx, "create-volume", callArgs{Volume: v}, nil)
}

// VolumeSnapshots lists a volume's snapshots on the node.
func (n *Remote) VolumeSnapshots(ctx context.Context, tenant, name string) ([]volume.Snapshot, error) {
	var s []volume.Snapshot
	err := n.call(ctx, "volume-snapshots", callArgs{Tenant: tenant, Name: name}, &s)
	return s, err
}

// SnapshotVolume takes a snapshot of a volume on the node.
func (n *Remote) SnapshotVolume(ctx context.Context, tenant, name string, snap volume.Snapshot) error {
	return n.call(ctx, "snapshot-volume", callArgs{Tenant: tenant, Name: name, Snap: snap}, nil)
}

// DeleteVolumeSnapshot removes a snapshot of a volume on the node.
func (n *Remote) DeleteVolumeSnapshot(ctx context.Context, tenant, name, snap string) error {
	return n.call(ctx, "delete-volume-snapshot", callArgs{Tenant: tenant, Name: name, Snap: volume.Snapshot{Name: snap}}, nil)
}

// RollbackVolume rolls a volume back to a snapshot on the node.
func (n *Remote) RollbackVolume(ctx context.Context, tenant, name, snap string) error {
	return n.call(ctx, "rollback-volume", callArgs{Tenant: tenant, Name: name, Snap: volume.Snapshot{Name: snap}}, nil)
}
