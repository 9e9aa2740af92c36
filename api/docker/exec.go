package docker

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/macro-cloud/macro/runtime"
	"github.com/macro-cloud/macro/types"
)

// execSession is one `docker exec`, kept in memory by the server that
// created it (Docker keeps them in the daemon's memory too).
type execSession struct {
	ID, Tenant, PodID string
	Config            execConfig

	mu       sync.Mutex
	running  bool
	done     bool
	exitCode int
	resize   chan runtime.Size
	created  time.Time
}

type execConfig struct {
	User         string
	Privileged   bool
	Tty          bool
	AttachStdin  bool
	AttachStdout bool
	AttachStderr bool
	Detach       bool
	Env          []string
	WorkingDir   string
	Cmd          []string
}

type execRegistry struct {
	mu       sync.Mutex
	sessions map[string]*execSession
}

func (s *Server) routeExec(mux *http.ServeMux) {
	s.handle(mux, "POST /containers/{id}/exec", s.createExec)
	s.handle(mux, "POST /exec/{id}/start", s.startExec)
	s.handle(mux, "POST /exec/{id}/resize", s.resizeExec)
	s.handle(mux, "GET /exec/{id}/json", s.inspectExec)
}

func (s *Server) createExec(w http.ResponseWriter, r *http.Request) error {
	p, err := s.pod(r)
	if err != nil {
		return err
	}
	cfg, err := parseExecConfig(r)
	if err != nil {
		return err
	}
	st, err := s.store.Status(r.Context(), p.Tenant, p.ID)
	if err != nil {
		return err
	}
	if st.Phase == types.PhasePaused {
		return conflict("Container %s is paused, unpause the container before exec", p.ID)
	}
	if st.Phase != types.PhaseRunning {
		return conflict("Container %s is not running", p.ID)
	}
	ex := &execSession{ID: newID(), Tenant: p.Tenant, PodID: p.ID, Config: cfg, resize: make(chan runtime.Size, 4), created: time.Now()}
	s.execs.mu.Lock()
	if s.execs.sessions == nil {
		s.execs.sessions = map[string]*execSession{}
	}
	// Forget finished sessions older than an hour.
	for id, old := range s.execs.sessions {
		if old.done && time.Since(old.created) > time.Hour {
			delete(s.execs.sessions, id)
		}
	}
	s.execs.sessions[ex.ID] = ex
	s.execs.mu.Unlock()
	writeJSON(w, http.StatusCreated, map[string]string{"Id": ex.ID})
	return nil
}

// parseExecConfig reads and checks the body of POST /containers/{id}/exec,
// the tenant's input.
func parseExecConfig(r *http.Request) (execConfig, error) {
	var cfg execConfig
	if err := decodeBody(r, &cfg); err != nil {
		return cfg, err
	}
	if len(cfg.Cmd) == 0 {
		return cfg, badRequest("No exec command specified")
	}
	if cfg.Privileged {
		return cfg, badRequest("privileged exec is not supported")
	}
	return cfg, nil
}

func (s *Server) execSession(r *http.Request) (*execSession, error) {
	id := r.PathValue("id")
	s.execs.mu.Lock()
	ex := s.execs.sessions[id]
	s.execs.mu.Unlock()
	if ex == nil || ex.Tenant != tenantOf(r) {
		return nil, notFound("No such exec instance: %s", id)
	}
	return ex, nil
}

func (s *Server) startExec(w http.ResponseWriter, r *http.Request) error {
	ex, err := s.execSession(r)
	if err != nil {
		return err
	}
	var req struct {
		Detach bool
		Tty    bool
	}
	if r.ContentLength != 0 {
		if err := decodeBody(r, &req); err != nil {
			return err
		}
	}
	ex.mu.Lock()
	if ex.running || ex.done {
		ex.mu.Unlock()
		return conflict("Error: Exec command %s is already running", ex.ID)
	}
	ex.running = true
	ex.mu.Unlock()
	p, err := s.store.Pod(r.Context(), ex.Tenant, ex.PodID)
	if err != nil {
		return notFound("No such container: %s", ex.PodID)
	}
	node, err := s.nodeOf(r.Context(), p)
	if err != nil {
		return err
	}
	proc := runtime.Process{Args: ex.Config.Cmd, Env: ex.Config.Env, Cwd: ex.Config.WorkingDir, User: ex.Config.User, Tty: ex.Config.Tty}
	finish := func(code int, err error) {
		ex.mu.Lock()
		ex.running, ex.done, ex.exitCode = false, true, code
		if err != nil && code == 0 {
			ex.exitCode = 126
		}
		ex.mu.Unlock()
	}
	if req.Detach || ex.Config.Detach {
		go func() {
			code, err := node.Exec(context.Background(), p.ID, proc, runtime.IO{Resize: ex.resize})
			finish(code, err)
		}()
		w.WriteHeader(http.StatusOK)
		return nil
	}
	conn, rw, err := hijack(w, r, streamContentType(ex.Config.Tty))
	if err != nil {
		finish(-1, err)
		return err
	}
	defer conn.Close()
	mw := &muxWriter{w: flushWriter{rw}, raw: ex.Config.Tty}
	stdio := runtime.IO{Resize: ex.resize}
	if ex.Config.AttachStdout {
		stdio.Stdout = mw.stream(streamStdout)
	}
	if ex.Config.AttachStderr {
		stdio.Stderr = mw.stream(streamStderr)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if ex.Config.AttachStdin {
		pr, pw := io.Pipe()
		go func() {
			io.Copy(pw, rw.Reader)
			pw.Close()
		}()
		stdio.Stdin = pr
	} else {
		go func() {
			// A client that hangs up ends the exec.
			io.Copy(io.Discard, rw.Reader)
		}()
	}
	code, err := node.Exec(ctx, p.ID, proc, stdio)
	if err != nil && ctx.Err() == nil {
		// A process that could not be started: dockerd writes the runtime's
		// error on the stream's stdout, as it comes from containerd, and the
		// exec ends with 126 whatever the cause.
		mw.write(streamStdout, []byte(execErrorText(err.Error())+"\r\n"))
		code = 126
	}
	finish(code, nil)
	return nil
}

// execErrorText is a failed exec start as dockerd words it.
func execErrorText(msg string) string {
	if !strings.HasPrefix(msg, "exec failed: ") {
		return msg
	}
	return "OCI runtime exec failed: " + msg + ": unknown"
}

func (s *Server) resizeExec(w http.ResponseWriter, r *http.Request) error {
	ex, err := s.execSession(r)
	if err != nil {
		return err
	}
	size, err := querySize(r)
	if err != nil {
		return err
	}
	select {
	case ex.resize <- size:
	default:
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

func (s *Server) inspectExec(w http.ResponseWriter, r *http.Request) error {
	ex, err := s.execSession(r)
	if err != nil {
		return err
	}
	ex.mu.Lock()
	defer ex.mu.Unlock()
	var code *int
	if ex.done {
		c := ex.exitCode
		code = &c
	}
	args := []string{}
	if len(ex.Config.Cmd) > 1 {
		args = ex.Config.Cmd[1:]
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"ID": ex.ID, "Running": ex.running, "ExitCode": code,
		"ProcessConfig": map[string]any{"tty": ex.Config.Tty, "entrypoint": ex.Config.Cmd[0], "arguments": args, "privileged": false, "user": ex.Config.User},
		"OpenStdin":     ex.Config.AttachStdin, "OpenStderr": ex.Config.AttachStderr, "OpenStdout": ex.Config.AttachStdout,
		"CanRemove": false, "ContainerID": ex.PodID, "DetachKeys": "", "Pid": 0,
	})
	return nil
}
