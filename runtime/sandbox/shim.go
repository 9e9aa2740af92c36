package sandbox

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/macro-cloud/macro/runtime"
	"github.com/macro-cloud/macro/runtime/logfile"
)

// ShimMain runs the shim of one container: `macro shim STATEDIR`. It is
// started by Runtime.Start in its own session with fd 3 a pipe on which it
// reports {"pid":N} or {"error":"..."} once the container runs (or failed
// to), then it supervises the container until it exits: copying output to
// the log file, serving stdin and resize on unix sockets, recording the
// exit status in StateDir/state.json and deleting the container from the
// runtime binary. It returns the process exit code.
func ShimMain(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: shim STATEDIR")
		return 2
	}
	s := &shim{
		dir:    args[0],
		log:    slog.New(slog.NewTextHandler(os.Stderr, nil)).With("subsystem", "shim"),
		reaper: newReaper(),
	}
	if err := readJSON(filepath.Join(s.dir, shimConfigFile), &s.cfg); err != nil {
		s.log.Error("read config", "err", err)
		s.report(0, err)
		return 1
	}
	s.log = s.log.With("id", s.cfg.ID)
	if err := s.run(); err != nil {
		s.log.Error("shim failed", "err", err)
		return 1
	}
	return 0
}

type shim struct {
	dir    string
	cfg    shimConfig
	log    *slog.Logger
	reaper *reaper

	mu    sync.Mutex
	state shimState

	reported bool
	logw     *logfile.Writer
	copiers  sync.WaitGroup

	stdin     io.WriteCloser // process stdin: pipe or pty master
	master    *os.File       // pty master when Tty
	stdinOnce sync.Once
	listeners []net.Listener
}

// report tells Start how the start went, once, on fd 3.
func (s *shim) report(pid int, err error) {
	if s.reported {
		return
	}
	s.reported = true
	f := os.NewFile(3, "ready")
	if f == nil {
		return
	}
	msg := readyMsg{Pid: pid}
	if err != nil {
		msg.Error = err.Error()
	}
	json.NewEncoder(f).Encode(msg)
	f.Close()
}

type readyMsg struct {
	Pid   int    `json:"pid,omitempty"`
	Error string `json:"error,omitempty"`
}

func (s *shim) saveState() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := writeJSONAtomic(filepath.Join(s.dir, shimStateFile), &s.state); err != nil {
		s.log.Error("write state", "err", err)
	}
}

func (s *shim) run() error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		s.report(0, fmt.Errorf("set subreaper: %w", err))
		return err
	}
	signal.Ignore(unix.SIGHUP, unix.SIGINT, unix.SIGPIPE)
	s.reaper.start()

	s.state.ShimPid = os.Getpid()
	s.state.ShimStart, _ = procStart(os.Getpid())
	s.saveState()

	pid, err := s.startContainer()
	if err != nil {
		s.mu.Lock()
		s.state.Exited = true
		s.state.ExitCode = startExitCode(err.Error())
		s.state.Error = err.Error()
		s.state.FinishedAt = time.Now().UTC()
		s.mu.Unlock()
		s.saveState()
		s.report(0, err)
		s.runtime(nil, "delete", "--force", s.cfg.ID)
		s.closeAll()
		return err
	}
	s.report(pid, nil)

	ws := s.reaper.wait(pid)
	code := exitCode(ws)
	s.log.Info("container exited", "pid", pid, "code", code)

	// Let the copiers drain what the container wrote last.
	drained := make(chan struct{})
	go func() { s.copiers.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(5 * time.Second):
		s.log.Warn("output still open after exit")
	}

	s.mu.Lock()
	s.state.Exited = true
	s.state.ExitCode = code
	s.state.FinishedAt = time.Now().UTC()
	s.state.OOMKilled = oomKilled(s.state.Cgroups)
	s.mu.Unlock()
	s.saveState()

	if _, err := s.runtime(nil, "delete", "--force", s.cfg.ID); err != nil {
		s.log.Warn("delete", "err", err)
	}
	s.closeAll()
	return nil
}

func (s *shim) closeAll() {
	for _, l := range s.listeners {
		l.Close()
	}
	if s.stdin != nil {
		s.stdin.Close()
	}
	if s.logw != nil {
		s.logw.Close()
	}
	if sd := sockDir(s.dir); sd != s.dir {
		os.RemoveAll(sd)
	}
}

// startContainer creates and starts the container and returns its pid.
func (s *shim) startContainer() (int, error) {
	if err := os.MkdirAll(filepath.Dir(s.cfg.LogPath), 0o700); err != nil {
		return 0, err
	}
	logw, err := logfile.Create(s.cfg.LogPath)
	if err != nil {
		return 0, err
	}
	s.logw = logw
	sd := sockDir(s.dir)
	if err := os.MkdirAll(sd, 0o700); err != nil {
		return 0, err
	}

	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer devnull.Close()

	pidPath := filepath.Join(s.dir, pidFile)
	os.Remove(pidPath)
	args := []string{"create", "--bundle", s.cfg.Bundle, "--pid-file", pidPath}

	var (
		createErr                 error
		createOut                 []byte
		outR, errR                *os.File
		consoleL                  *net.UnixListener
		consoleC                  chan *os.File
		childIn, childOut, childE = devnull, devnull, devnull
	)
	if s.cfg.Tty {
		path := filepath.Join(sd, consoleSock)
		os.Remove(path)
		consoleL, err = net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
		if err != nil {
			return 0, fmt.Errorf("console socket: %w", err)
		}
		consoleL.SetUnlinkOnClose(true)
		consoleC = make(chan *os.File, 1)
		go func() {
			f, err := recvConsole(consoleL)
			if err != nil {
				s.log.Warn("console socket", "err", err)
			}
			consoleC <- f
		}()
		args = append(args, "--console-socket", path)
		createOut, createErr = s.runtime(nil, append(args, s.cfg.ID)...)
		consoleL.Close() // unblocks recvConsole if the runtime never connected
	} else {
		var inR, inW, outW, errW *os.File
		if s.cfg.OpenStdin {
			if inR, inW, err = os.Pipe(); err != nil {
				return 0, err
			}
			childIn = inR
			s.stdin = inW
		}
		if outR, outW, err = os.Pipe(); err != nil {
			return 0, err
		}
		if errR, errW, err = os.Pipe(); err != nil {
			return 0, err
		}
		childOut, childE = outW, errW
		// The container inherits the runtime's stdio; runtime errors land
		// on the same stderr, before the container's own output can.
		_, createErr = s.runtime([]*os.File{childIn, childOut, childE}, append(args, s.cfg.ID)...)
		for _, f := range []*os.File{inR, outW, errW} {
			if f != nil {
				f.Close()
			}
		}
		if createErr != nil {
			errR.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			createOut, _ = io.ReadAll(io.LimitReader(errR, 64*1024))
			outR.Close()
			errR.Close()
		}
	}
	if createErr != nil {
		msg := s.runtimeLogError()
		if msg == "" {
			msg = runtimeMessage(createOut)
		}
		if msg == "" {
			msg = createErr.Error()
		}
		return 0, errors.New(msg)
	}

	if s.cfg.Tty {
		master := <-consoleC
		if master == nil {
			return 0, errors.New("runtime did not send the console")
		}
		s.master = master
		s.stdin = master
		s.copy(master, logfile.Stdout)
	} else {
		s.copy(outR, logfile.Stdout)
		s.copy(errR, logfile.Stderr)
	}

	b, err := os.ReadFile(pidPath)
	if err != nil {
		return 0, fmt.Errorf("read pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("bad pid file %q", b)
	}
	cg, err := cgroupsOf(pid)
	if err != nil {
		s.log.Warn("cgroups", "err", err)
	}
	s.mu.Lock()
	s.state.Pid = pid
	s.state.Cgroups = cg
	s.mu.Unlock()

	if err := s.serve(); err != nil {
		return 0, err
	}

	if out, err := s.runtime(nil, "start", s.cfg.ID); err != nil {
		msg := s.runtimeLogError()
		if msg == "" {
			msg = runtimeMessage(out)
		}
		if msg == "" {
			msg = err.Error()
		}
		return 0, errors.New(msg)
	}
	s.mu.Lock()
	s.state.StartedAt = time.Now().UTC()
	s.mu.Unlock()
	s.saveState()
	return pid, nil
}

// copy logs everything read from r as entries of stream.
func (s *shim) copy(r *os.File, stream string) {
	s.copiers.Add(1)
	go func() {
		defer s.copiers.Done()
		w := s.logw.Stream(stream)
		buf := make([]byte, 32*1024)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					s.log.Error("write log", "err", werr)
				}
			}
			if err != nil { // EOF, or EIO from a pty master whose slave is gone
				break
			}
		}
		w.Close()
		if r != s.master {
			r.Close()
		}
	}()
}

// runtime runs the runtime binary with stdio (nil: /dev/null in,
// captured out) and returns its combined output.
func (s *shim) runtime(stdio []*os.File, args ...string) ([]byte, error) {
	argv := []string{s.cfg.Binary, "--root", s.cfg.Root}
	if s.cfg.RuntimeLog {
		argv = append(argv, "--log", filepath.Join(s.dir, runtimeLogFile), "--log-format", "json")
	}
	argv = append(argv, s.cfg.GlobalArgs...)
	argv = append(argv, args...)

	var capture *os.File
	var out chan []byte
	if stdio == nil {
		devnull, err := os.Open(os.DevNull)
		if err != nil {
			return nil, err
		}
		defer devnull.Close()
		r, w, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		capture = w
		out = make(chan []byte, 1)
		go func() {
			b, _ := io.ReadAll(r)
			r.Close()
			out <- b
		}()
		stdio = []*os.File{devnull, w, w}
	}
	p, err := os.StartProcess(s.cfg.Binary, argv, &os.ProcAttr{Files: stdio, Env: os.Environ()})
	if capture != nil {
		capture.Close()
	}
	var b []byte
	if err != nil {
		if out != nil {
			<-out
		}
		return nil, err
	}
	ws := s.reaper.wait(p.Pid)
	p.Release()
	if out != nil {
		b = <-out
	}
	if code := exitCode(ws); code != 0 {
		return b, fmt.Errorf("%s %s: exit status %d", filepath.Base(s.cfg.Binary), args[0], code)
	}
	return b, nil
}

// runtimeLogError is the last error the runtime binary logged to runc.log.
func (s *shim) runtimeLogError() string {
	if !s.cfg.RuntimeLog {
		return ""
	}
	b, err := os.ReadFile(filepath.Join(s.dir, runtimeLogFile))
	if err != nil {
		return ""
	}
	return runtimeMessage(b)
}

// serve listens for stdin attachments and control requests.
func (s *shim) serve() error {
	sd := sockDir(s.dir)
	if s.cfg.OpenStdin && s.stdin != nil {
		l, err := listenUnix(filepath.Join(sd, stdinSock))
		if err != nil {
			return err
		}
		s.listeners = append(s.listeners, l)
		go s.serveStdin(l)
	}
	l, err := listenUnix(filepath.Join(sd, ctlSock))
	if err != nil {
		return err
	}
	s.listeners = append(s.listeners, l)
	go s.serveCtl(l)
	return nil
}

func listenUnix(path string) (*net.UnixListener, error) {
	os.Remove(path)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	l.SetUnlinkOnClose(true)
	return l, nil
}

func (s *shim) serveStdin(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			// The pty master must not be closed by a copy that fails.
			_, err := io.Copy(writerOnly{s.stdin}, c)
			if err != nil {
				s.log.Debug("stdin copy", "err", err)
			}
			if s.cfg.StdinOnce {
				s.stdinOnce.Do(func() {
					if s.cfg.Tty {
						// Closing the master would hang up the terminal:
						// send end-of-file the way a terminal does.
						s.stdin.Write([]byte{4})
					} else {
						s.stdin.Close()
					}
					l.Close()
				})
			}
		}()
	}
}

type writerOnly struct{ w io.Writer }

func (w writerOnly) Write(p []byte) (int, error) { return w.w.Write(p) }

// ctlRequest is one request on the control socket, one JSON object per
// connection, answered with a ctlResponse.
type ctlRequest struct {
	Op string `json:"op"` // "resize"
	W  uint16 `json:"w,omitempty"`
	H  uint16 `json:"h,omitempty"`
}

type ctlResponse struct {
	Error string `json:"error,omitempty"`
}

func (s *shim) serveCtl(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			var req ctlRequest
			var resp ctlResponse
			if err := json.NewDecoder(bufio.NewReader(c)).Decode(&req); err != nil {
				resp.Error = err.Error()
			} else {
				switch req.Op {
				case "resize":
					if s.master == nil {
						resp.Error = "container has no terminal"
					} else if err := setWinsize(s.master, runtime.Size{Width: req.W, Height: req.H}); err != nil {
						resp.Error = err.Error()
					}
				default:
					resp.Error = "unknown op " + strconv.Quote(req.Op)
				}
			}
			json.NewEncoder(c).Encode(resp)
		}()
	}
}

// recvConsole accepts one connection on l and receives the pty master
// through SCM_RIGHTS (runc's --console-socket protocol).
func recvConsole(l *net.UnixListener) (*os.File, error) {
	c, err := l.AcceptUnix()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4*4))
	_, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, err
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, err
	}
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil || len(fds) == 0 {
			continue
		}
		for _, fd := range fds[1:] {
			unix.Close(fd)
		}
		unix.CloseOnExec(fds[0])
		if err := unix.SetNonblock(fds[0], true); err != nil {
			unix.Close(fds[0])
			return nil, err
		}
		return os.NewFile(uintptr(fds[0]), "pty-master"), nil
	}
	return nil, errors.New("no file descriptor received")
}

// oomKilled reports whether the kernel OOM-killed a process in the memory
// cgroup (cgroup v1 memory.oom_control: oom_kill counter).
func oomKilled(cgroups map[string]string) bool {
	p, ok := cgroups["memory"]
	if !ok {
		return false
	}
	b, err := os.ReadFile(filepath.Join(cgroupRoot, "memory", p, "memory.oom_control"))
	if err != nil {
		return false
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n > 0
		}
	}
	return false
}

const cgroupRoot = "/sys/fs/cgroup"

func exitCode(ws unix.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// startExitCode is Docker's exit code for a container that failed to start.
func startExitCode(msg string) int {
	switch {
	case strings.Contains(msg, "executable file not found"), strings.Contains(msg, "no such file or directory"):
		return 127
	case strings.Contains(msg, "permission denied"):
		return 126
	}
	return 128
}

// reaper reaps every child of the shim (it is a subreaper, so orphans of
// the container's runtime land here) and hands exit statuses to waiters.
type reaper struct {
	mu      sync.Mutex
	waiters map[int]chan unix.WaitStatus
	exited  map[int]unix.WaitStatus
}

func newReaper() *reaper {
	return &reaper{waiters: map[int]chan unix.WaitStatus{}, exited: map[int]unix.WaitStatus{}}
}

func (r *reaper) start() {
	ch := make(chan os.Signal, 32)
	signal.Notify(ch, unix.SIGCHLD)
	go func() {
		t := time.NewTicker(time.Second) // belt and braces for a lost signal
		defer t.Stop()
		for {
			select {
			case <-ch:
			case <-t.C:
			}
			r.reapAll()
		}
	}()
}

func (r *reaper) reapAll() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		r.mu.Lock()
		if ch, ok := r.waiters[pid]; ok {
			delete(r.waiters, pid)
			ch <- ws
		} else {
			r.exited[pid] = ws
		}
		r.mu.Unlock()
	}
}

func (r *reaper) wait(pid int) unix.WaitStatus {
	r.mu.Lock()
	if ws, ok := r.exited[pid]; ok {
		delete(r.exited, pid)
		r.mu.Unlock()
		return ws
	}
	ch := make(chan unix.WaitStatus, 1)
	r.waiters[pid] = ch
	r.mu.Unlock()
	r.reapAll()
	return <-ch
}
