package docker

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net"
	"net/http"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/macro-cloud/macro/agent"
	"github.com/macro-cloud/macro/image"
	"github.com/macro-cloud/macro/runtime"
	"github.com/macro-cloud/macro/runtime/logfile"
	"github.com/macro-cloud/macro/types"
)

// Node is what the API asks of the node that runs a pod.
type Node interface {
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
	// Size is the size of the files the pod wrote (its overlay upper
	// layer): Docker's SizeRw.
	Size(ctx context.Context, id string) (int64, error)
}

// Nodes finds the Node that runs a pod.
type Nodes interface {
	Node(name string) (Node, error)
}

var _ Node = (*agent.Agent)(nil)

func (s *Server) nodeOf(ctx context.Context, p types.Pod) (Node, error) {
	if p.Node == "" {
		// Just created: the scheduler places it within milliseconds.
		var placed types.Pod
		_, err := s.waitFor(ctx, p.Tenant, p.ID, 10*time.Second, func(cur types.Pod, _ types.PodStatus, gone bool) bool {
			placed = cur
			return gone || cur.Node != "" || cur.Unschedulable != ""
		})
		if err == nil && placed.Node != "" {
			p = placed
		} else if placed.Unschedulable != "" {
			p.Unschedulable = placed.Unschedulable
		}
	}
	if p.Node == "" {
		return nil, conflict("container %s is not placed on a node yet: %s", p.ID[:12], p.Unschedulable)
	}
	n, err := s.nodes.Node(p.Node)
	if err != nil {
		return nil, errorf(http.StatusServiceUnavailable, "node %s of container %s is unreachable: %v", p.Node, p.ID[:12], err)
	}
	return n, nil
}

// podNode resolves the {id} of the path and the node that runs the pod.
func (s *Server) podNode(r *http.Request) (types.Pod, Node, error) {
	p, err := s.pod(r)
	if err != nil {
		return p, nil, err
	}
	node, err := s.nodeOf(r.Context(), p)
	return p, node, err
}

// nodeError maps a node's "no such pod" to the conflict the CLI expects.
func nodeError(err error, p types.Pod) error {
	if errors.Is(err, agent.ErrNoSuchPod) || errors.Is(err, runtime.ErrNotFound) || errors.Is(err, runtime.ErrNotRunning) {
		return conflict("container %s is not running", p.ID)
	}
	return err
}

// Docker's multiplexed stream framing: one 8-byte header per frame.
const (
	streamStdin  = 0
	streamStdout = 1
	streamStderr = 2
)

type muxWriter struct {
	mu  sync.Mutex
	w   io.Writer
	raw bool // tty: no framing
}

func (m *muxWriter) write(stream byte, p []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.raw {
		var hdr [8]byte
		hdr[0] = stream
		binary.BigEndian.PutUint32(hdr[4:], uint32(len(p)))
		if _, err := m.w.Write(hdr[:]); err != nil {
			return err
		}
	}
	_, err := m.w.Write(p)
	if f, ok := m.w.(http.Flusher); ok {
		f.Flush()
	}
	return err
}

func (m *muxWriter) stream(stream byte) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		if len(p) == 0 {
			return 0, nil
		}
		if err := m.write(stream, p); err != nil {
			return 0, err
		}
		return len(p), nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func streamContentType(tty bool) string {
	if tty {
		return "application/vnd.docker.raw-stream"
	}
	return "application/vnd.docker.multiplexed-stream"
}

func (s *Server) logsContainer(w http.ResponseWriter, r *http.Request) error {
	p, err := s.pod(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	opts := logfile.Options{Stdout: boolValue(r, "stdout"), Stderr: boolValue(r, "stderr"), Follow: boolValue(r, "follow"), Tail: -1}
	if !opts.Stdout && !opts.Stderr {
		return badRequest("Bad parameters: you must choose at least one stream")
	}
	if t := q.Get("tail"); t != "" && t != "all" {
		n, err := strconv.Atoi(t)
		if err != nil {
			return badRequest("invalid value for tail: %s", t)
		}
		if n >= 0 {
			opts.Tail = n
		}
	}
	for name, dst := range map[string]*time.Time{"since": &opts.Since, "until": &opts.Until} {
		if v := q.Get(name); v != "" && v != "0" {
			t, ok := parseTimestamp(v)
			if !ok {
				return badRequest("invalid value for %s: %s", name, v)
			}
			*dst = t
		}
	}
	timestamps := boolValue(r, "timestamps")
	node, err := s.nodeOf(r.Context(), p)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	if opts.Follow {
		opts.Done = s.exitSignal(ctx, p)
	}
	w.Header().Set("Content-Type", streamContentType(p.Spec.Tty))
	w.WriteHeader(http.StatusOK)
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	mw := &muxWriter{w: w, raw: p.Spec.Tty}
	for e, err := range node.Logs(ctx, p.ID, opts) {
		if err != nil {
			return nil
		}
		line := e.Line
		if timestamps {
			line = append([]byte(e.Time.UTC().Format("2006-01-02T15:04:05.000000000Z07:00")+" "), line...)
		}
		stream := byte(streamStdout)
		if e.Stream == logfile.Stderr {
			stream = streamStderr
		}
		if mw.write(stream, line) != nil {
			return nil
		}
	}
	return nil
}

// exitSignal closes the returned channel once the pod is not running (at
// once for a stopped pod), for followers that must end with the container.
func (s *Server) exitSignal(ctx context.Context, p types.Pod) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, st0, _, err := s.store.PodState(ctx, p.Tenant, p.ID)
		if err != nil {
			return
		}
		startExits := st0.Exits
		waitingStart := p.Desired.State != types.PhaseRunning || st0.Phase == types.PhaseCreated
		s.waitFor(ctx, p.Tenant, p.ID, 0, func(cur types.Pod, st types.PodStatus, gone bool) bool {
			if gone {
				return true
			}
			if waitingStart {
				// Attached before start: wait for the run to begin and end.
				return st.Exits > startExits && st.Phase != types.PhaseRestarting
			}
			return st.Phase == types.PhaseExited || st.Phase == types.PhaseCreated || st.Phase == types.PhaseDead
		})
	}()
	return done
}

// hijack takes over the connection for a bidirectional stream, answering
// with 101 UPGRADED as dockerd does when the client asked to upgrade.
func hijack(w http.ResponseWriter, r *http.Request, contentType string) (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("connection cannot be hijacked")
	}
	conn, rw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	conn.SetDeadline(time.Time{})
	if r.Header.Get("Upgrade") != "" {
		fmt.Fprintf(rw, "HTTP/1.1 101 UPGRADED\r\nContent-Type: %s\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n", contentType)
	} else {
		fmt.Fprintf(rw, "HTTP/1.1 200 OK\r\nContent-Type: %s\r\n\r\n", contentType)
	}
	return conn, rw, rw.Flush()
}

type flushWriter struct{ rw *bufio.ReadWriter }

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.rw.Write(p)
	if err == nil {
		err = f.rw.Flush()
	}
	return n, err
}

func (s *Server) attachContainer(w http.ResponseWriter, r *http.Request) error {
	p, st, err := s.podStatus(r)
	if err != nil {
		return err
	}
	if st.Phase == types.PhasePaused {
		return conflict("You cannot attach to a paused container, unpause it first")
	}
	node, err := s.nodeOf(r.Context(), p)
	if err != nil {
		return err
	}
	wantIn, wantOut, wantErr := boolValue(r, "stdin"), boolValue(r, "stdout"), boolValue(r, "stderr")
	logs, stream := boolValue(r, "logs"), boolValue(r, "stream")
	conn, rw, err := hijack(w, r, streamContentType(p.Spec.Tty))
	if err != nil {
		return err
	}
	defer conn.Close()
	s.containerEvent(r.Context(), p, "attach", nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Output: what the container writes from now on (plus the old log with
	// logs=1), until it exits.
	opts := logfile.Options{Stdout: wantOut, Stderr: wantErr, Follow: stream, Tail: 0}
	if logs {
		opts.Tail = -1
	} else {
		opts.Since = time.Now()
		opts.Tail = -1
	}
	if stream {
		opts.Done = s.exitSignal(ctx, p)
	}
	if wantIn && p.Spec.OpenStdin {
		go s.copyStdin(ctx, node, p, rw.Reader)
	} else {
		go func() {
			// Notice the client going away.
			io.Copy(io.Discard, rw.Reader)
			if !wantOut && !wantErr {
				cancel()
			}
		}()
	}
	if !wantOut && !wantErr {
		<-s.exitSignal(ctx, p)
		return nil
	}
	mw := &muxWriter{w: flushWriter{rw}, raw: p.Spec.Tty}
	for e, err := range node.Logs(ctx, p.ID, opts) {
		if err != nil {
			break
		}
		stream := byte(streamStdout)
		if e.Stream == logfile.Stderr {
			stream = streamStderr
		}
		if mw.write(stream, e.Line) != nil {
			break
		}
	}
	return nil
}

// copyStdin forwards the client's input to the container's stdin; the
// container may not run yet (attach comes before start), so it retries.
func (s *Server) copyStdin(ctx context.Context, node Node, p types.Pod, r io.Reader) {
	var in io.WriteCloser
	for i := 0; ; i++ {
		var err error
		in, err = node.Stdin(ctx, p.ID)
		if err == nil {
			break
		}
		if i > 600 || ctx.Err() != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
	io.Copy(in, r)
	in.Close()
}

func (s *Server) resizeContainer(w http.ResponseWriter, r *http.Request) error {
	p, err := s.pod(r)
	if err != nil {
		return err
	}
	size, err := querySize(r)
	if err != nil {
		return err
	}
	node, err := s.nodeOf(r.Context(), p)
	if err != nil {
		return err
	}
	if err := node.Resize(r.Context(), p.ID, size); err != nil {
		return nodeError(err, p)
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

func querySize(r *http.Request) (runtime.Size, error) {
	h, err1 := strconv.ParseUint(r.URL.Query().Get("h"), 10, 16)
	wd, err2 := strconv.ParseUint(r.URL.Query().Get("w"), 10, 16)
	if err1 != nil || err2 != nil {
		return runtime.Size{}, badRequest("invalid size: h and w must be positive integers")
	}
	return runtime.Size{Width: uint16(wd), Height: uint16(h)}, nil
}

func (s *Server) topContainer(w http.ResponseWriter, r *http.Request) error {
	p, st, err := s.podStatus(r)
	if err != nil {
		return err
	}
	if !st.Phase.Up() {
		return conflict("Container %s is not running", p.ID)
	}
	node, err := s.nodeOf(r.Context(), p)
	if err != nil {
		return err
	}
	titles, procs, err := node.Top(r.Context(), p.ID, r.URL.Query().Get("ps_args"))
	if err != nil {
		return nodeError(err, p)
	}
	writeJSON(w, http.StatusOK, map[string]any{"Titles": titles, "Processes": procs})
	return nil
}

func (s *Server) changesContainer(w http.ResponseWriter, r *http.Request) error {
	p, node, err := s.podNode(r)
	if err != nil {
		return err
	}
	changes, err := node.Changes(r.Context(), p.ID)
	if err != nil {
		return nodeError(err, p)
	}
	type change struct {
		Path string
		Kind int
	}
	out := []change{}
	for _, c := range changes {
		out = append(out, change{c.Path, int(c.Kind)})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) exportContainer(w http.ResponseWriter, r *http.Request) error {
	p, node, err := s.podNode(r)
	if err != nil {
		return err
	}
	rc, err := node.Export(r.Context(), p.ID)
	if err != nil {
		return nodeError(err, p)
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/x-tar")
	w.WriteHeader(http.StatusOK)
	io.Copy(w, rc)
	return nil
}

func pathStatHeader(st image.PathStat) (string, error) {
	data, err := json.Marshal(map[string]any{
		"name": st.Name, "size": st.Size, "mode": uint32(st.Mode), "mtime": st.Mtime.Format(time.RFC3339Nano), "linkTarget": st.LinkTarget,
	})
	return base64.StdEncoding.EncodeToString(data), err
}

func (s *Server) archiveTarget(r *http.Request) (types.Pod, Node, string, error) {
	p, err := s.pod(r)
	if err != nil {
		return p, nil, "", err
	}
	path := r.URL.Query().Get("path")
	if path == "" {
		return p, nil, "", badRequest("Bad parameter: 'path' cannot be empty")
	}
	node, err := s.nodeOf(r.Context(), p)
	return p, node, path, err
}

func archiveError(err error, path string, p types.Pod) error {
	if errors.Is(err, syscall.ENOENT) || errors.Is(err, image.ErrNotFound) {
		return notFound("Could not find the file %s in container %s", path, p.Name)
	}
	return nodeError(err, p)
}

func (s *Server) statArchive(w http.ResponseWriter, r *http.Request) error {
	p, node, path, err := s.archiveTarget(r)
	if err != nil {
		return err
	}
	st, err := node.StatPath(r.Context(), p.ID, path)
	if err != nil {
		return archiveError(err, path, p)
	}
	h, err := pathStatHeader(st)
	if err != nil {
		return err
	}
	w.Header().Set("X-Docker-Container-Path-Stat", h)
	w.WriteHeader(http.StatusOK)
	return nil
}

func (s *Server) getArchive(w http.ResponseWriter, r *http.Request) error {
	p, node, path, err := s.archiveTarget(r)
	if err != nil {
		return err
	}
	rc, st, err := node.Archive(r.Context(), p.ID, path)
	if err != nil {
		return archiveError(err, path, p)
	}
	defer rc.Close()
	h, err := pathStatHeader(st)
	if err != nil {
		return err
	}
	w.Header().Set("X-Docker-Container-Path-Stat", h)
	w.Header().Set("Content-Type", "application/x-tar")
	w.WriteHeader(http.StatusOK)
	io.Copy(w, rc)
	return nil
}

func (s *Server) putArchive(w http.ResponseWriter, r *http.Request) error {
	p, node, path, err := s.archiveTarget(r)
	if err != nil {
		return err
	}
	if err := node.Extract(r.Context(), p.ID, path, r.Body); err != nil {
		return archiveError(err, path, p)
	}
	w.WriteHeader(http.StatusOK)
	return nil
}
