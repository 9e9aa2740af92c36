// Package sandbox runs containers from OCI bundles with an OCI runtime
// binary: runc (the "sandbox" runtime: namespaces, cgroups, seccomp) or
// runsc (the "gvisor" runtime: the same bundle under gVisor's user-space
// kernel).
//
// Every container gets a shim: a small process (`macro shim STATEDIR`, see
// ShimMain) in its own session that creates and starts the container, is
// the subreaper of its init process, copies its output into the log file
// (runtime/logfile format), serves its stdin and terminal resizes on unix
// sockets and records its exit status in StateDir/state.json. Containers
// therefore outlive macro: a new Runtime over the same Root finds them.
//
// Layout under Config.Root:
//
//	Root/<binary>/          --root of the runtime binary (runc, runsc)
//	Root/containers/<id>    symlink to the container's StateDir
//
// and in a container's StateDir: shim.json (what to run), state.json (what
// happened), shim.log, runc.log, init.pid and the sockets (in.sock,
// ctl.sock, con.sock; under /run/macro-sock/<hash>/ when StateDir is too
// long for a socket path).
//
// cmd/macro runs the shim as `macro shim STATEDIR`: it calls
// os.Exit(sandbox.ShimMain(os.Args[2:])). The shim stays in the cgroup of
// whoever started it, so a systemd unit running macro needs
// KillMode=process (or the shims moved out) for containers to survive a
// restart of the unit.
//
// gVisor (runsc 20221219 as packaged by Debian) works with the same
// bundles, with these differences found on this kernel (6.x, cgroup v1):
//   - --network=sandbox fails ("cannot run with network enabled in root
//     network namespace": runsc detects the root namespace by the presence
//     of net.core.rmem_default, which newer kernels have in every
//     namespace), so the driver defaults to --network=host, which serves
//     the pod's own network namespace from the spec with the host kernel's
//     stack; --network=none also works.
//   - The default ptrace platform works; no other global flag is needed.
//   - The sandbox itself lives inside the container's memory limit: at
//     8 MiB runsc create is OOM-killed ("runsc create: exit status 137");
//     16 MiB runs a shell.
//   - Pids are gVisor's own pids inside the sandbox, not host pids; Stats
//     and OOM detection cover the whole sandbox (gofer and sentry included).
//   - `tty` inside reports "not a tty" (no /proc/self/fd readlink to
//     /dev/pts), though the terminal works (stty, resize, echo).
package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/macro-cloud/macro/runtime"
)

// Config configures a Runtime.
type Config struct {
	// Name is what tenants pick with --runtime: "sandbox" (default) or "gvisor".
	Name string
	// Binary is the OCI runtime: "runc" (default) or "runsc", or a path.
	Binary string
	// GlobalArgs are passed to every invocation of Binary before the
	// command. Nil means the default: none for runc; for runsc
	// "--network=host" (the pod's own network namespace from the spec,
	// served by the host kernel: runsc 20221219's --network=sandbox
	// refuses to start on kernels where net.core.rmem_default exists in
	// every namespace, as on 6.x).
	GlobalArgs []string
	// Root is the runtime's state directory (see the package comment).
	Root string
	// ShimPath is the binary executed as the shim; default os.Executable().
	ShimPath string
	// ShimArgs come before the StateDir argument; default ["shim"].
	ShimArgs []string
	// ShimEnv is added to the shim's environment.
	ShimEnv []string
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Runtime implements runtime.Runtime with an OCI runtime binary.
type Runtime struct {
	name       string
	binary     string
	globalArgs []string
	runRoot    string // --root of the binary
	regRoot    string // Root/containers
	shimPath   string
	shimArgs   []string
	shimEnv    []string
	runtimeLog bool
	log        *slog.Logger
}

var (
	_ runtime.Runtime = (*Runtime)(nil)
	_ runtime.Waiter  = (*Runtime)(nil)
)

// New checks cfg and returns a Runtime.
func New(cfg Config) (*Runtime, error) {
	if cfg.Binary == "" {
		cfg.Binary = "runc"
	}
	if cfg.Name == "" {
		cfg.Name = "sandbox"
		if filepath.Base(cfg.Binary) == "runsc" {
			cfg.Name = "gvisor"
		}
	}
	if cfg.Root == "" {
		return nil, errors.New("sandbox: Root is required")
	}
	bin, err := exec.LookPath(cfg.Binary)
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	if bin, err = filepath.Abs(bin); err != nil {
		return nil, err
	}
	isRunsc := filepath.Base(bin) == "runsc"
	if cfg.GlobalArgs == nil && isRunsc {
		cfg.GlobalArgs = []string{"--network=host"}
	}
	if cfg.ShimPath == "" {
		if cfg.ShimPath, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("sandbox: shim path: %w", err)
		}
	}
	if cfg.ShimArgs == nil {
		cfg.ShimArgs = []string{"shim"}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	root, err := filepath.Abs(cfg.Root)
	if err != nil {
		return nil, err
	}
	r := &Runtime{
		name:       cfg.Name,
		binary:     bin,
		globalArgs: cfg.GlobalArgs,
		runRoot:    filepath.Join(root, filepath.Base(bin)),
		regRoot:    filepath.Join(root, "containers"),
		shimPath:   cfg.ShimPath,
		shimArgs:   cfg.ShimArgs,
		shimEnv:    cfg.ShimEnv,
		runtimeLog: !isRunsc, // runsc's --log is a debug log, its errors go to stderr
		log:        cfg.Logger.With("subsystem", "runtime/"+cfg.Name),
	}
	for _, d := range []string{r.runRoot, r.regRoot} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("sandbox: %w", err)
		}
	}
	return r, nil
}

// Name implements runtime.Runtime.
func (r *Runtime) Name() string { return r.name }

var validID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

func checkID(id string) error {
	if !validID.MatchString(id) {
		return fmt.Errorf("invalid container id %q", id)
	}
	return nil
}

// stateDir finds a container's StateDir through the registry.
func (r *Runtime) stateDir(id string) (string, error) {
	if err := checkID(id); err != nil {
		return "", runtime.ErrNotFound
	}
	dir, err := os.Readlink(filepath.Join(r.regRoot, id))
	if err != nil {
		return "", runtime.ErrNotFound
	}
	if _, err := os.Stat(filepath.Join(dir, shimConfigFile)); err != nil {
		return "", runtime.ErrNotFound
	}
	return dir, nil
}

func (r *Runtime) shimConfig(dir string) (shimConfig, error) {
	var c shimConfig
	err := readJSON(filepath.Join(dir, shimConfigFile), &c)
	return c, err
}

// Start implements runtime.Runtime.
func (r *Runtime) Start(ctx context.Context, c runtime.Container) (int, error) {
	if err := checkID(c.ID); err != nil {
		return 0, err
	}
	if c.Bundle == "" || c.StateDir == "" || c.LogPath == "" {
		return 0, errors.New("start: bundle, state dir and log path are required")
	}
	var err error
	for _, p := range []*string{&c.Bundle, &c.StateDir, &c.LogPath} {
		if *p, err = filepath.Abs(*p); err != nil {
			return 0, err
		}
	}
	if old, err := r.stateDir(c.ID); err == nil {
		if st, err := readShimState(old); err == nil && shimAlive(st) {
			return 0, fmt.Errorf("container %s already exists", c.ID)
		}
	}
	if err := os.MkdirAll(c.StateDir, 0o700); err != nil {
		return 0, err
	}
	for _, f := range []string{shimStateFile, pidFile, runtimeLogFile} {
		os.Remove(filepath.Join(c.StateDir, f))
	}
	cfg := shimConfig{
		ID: c.ID, Bundle: c.Bundle, LogPath: c.LogPath,
		Tty: c.Tty, OpenStdin: c.OpenStdin, StdinOnce: c.StdinOnce,
		Binary: r.binary, Root: r.runRoot, GlobalArgs: r.globalArgs, RuntimeLog: r.runtimeLog,
	}
	if err := writeJSONAtomic(filepath.Join(c.StateDir, shimConfigFile), cfg); err != nil {
		return 0, err
	}
	link := filepath.Join(r.regRoot, c.ID)
	tmp := link + ".tmp"
	os.Remove(tmp)
	if err := os.Symlink(c.StateDir, tmp); err != nil {
		return 0, err
	}
	if err := os.Rename(tmp, link); err != nil {
		return 0, err
	}

	shimLog, err := os.OpenFile(filepath.Join(c.StateDir, shimLogFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return 0, err
	}
	defer shimLog.Close()
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer readyR.Close()
	cmd := exec.Command(r.shimPath, append(append([]string{}, r.shimArgs...), c.StateDir)...)
	cmd.Env = append(os.Environ(), r.shimEnv...)
	cmd.Stdout, cmd.Stderr = shimLog, shimLog
	cmd.ExtraFiles = []*os.File{readyW}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Dir = "/"
	err = cmd.Start()
	readyW.Close()
	if err != nil {
		return 0, fmt.Errorf("start shim: %w", err)
	}
	go cmd.Wait() // reap the shim if it ends while we run; it outlives us otherwise

	type result struct {
		msg readyMsg
		err error
	}
	done := make(chan result, 1)
	go func() {
		var m readyMsg
		b, err := io.ReadAll(readyR)
		if err == nil {
			if len(bytes.TrimSpace(b)) == 0 {
				err = fmt.Errorf("shim exited without starting the container: %s", tail(filepath.Join(c.StateDir, shimLogFile)))
			} else {
				err = json.Unmarshal(b, &m)
			}
		}
		done <- result{m, err}
	}()
	select {
	case res := <-done:
		if res.err != nil {
			return 0, res.err
		}
		if res.msg.Error != "" {
			return 0, errors.New(res.msg.Error)
		}
		return res.msg.Pid, nil
	case <-ctx.Done():
		cmd.Process.Kill()
		r.run(context.Background(), "delete", "--force", c.ID)
		return 0, ctx.Err()
	}
}

// tail returns the last line of a file, for error messages.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// run runs the runtime binary and returns its stdout.
func (r *Runtime) run(ctx context.Context, args ...string) ([]byte, error) {
	argv := append([]string{"--root", r.runRoot, "--log-format", "json"}, r.globalArgs...)
	argv = append(argv, args...)
	cmd := exec.CommandContext(ctx, r.binary, argv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return stdout.Bytes(), newCmdError(filepath.Base(r.binary)+" "+args[0], stderr.Bytes(), err)
	}
	return stdout.Bytes(), nil
}

// ociState is the output of `runc state`.
type ociState struct {
	Status string `json:"status"`
	Pid    int    `json:"pid"`
}

func (r *Runtime) ociState(ctx context.Context, id string) (ociState, error) {
	out, err := r.run(ctx, "state", id)
	if err != nil {
		return ociState{}, err
	}
	var s ociState
	if err := json.Unmarshal(out, &s); err != nil {
		return ociState{}, fmt.Errorf("parse state: %w", err)
	}
	return s, nil
}

// State implements runtime.Runtime.
func (r *Runtime) State(ctx context.Context, id string) (runtime.State, error) {
	dir, err := r.stateDir(id)
	if err != nil {
		return runtime.State{}, err
	}
	st, _ := readShimState(dir)
	if st.Exited {
		return stoppedState(st), nil
	}
	oci, err := r.ociState(ctx, id)
	if err != nil {
		if ctx.Err() != nil {
			return runtime.State{}, ctx.Err()
		}
		if shimAlive(st) {
			if st.Pid == 0 {
				return runtime.State{Status: runtime.StatusCreated}, nil // still creating
			}
			// Deleted after an exit that the shim is about to record.
			if st2, err := r.awaitExit(ctx, dir, st); err == nil {
				return stoppedState(st2), nil
			}
			return runtime.State{Status: runtime.StatusCreated}, nil
		}
		return lostState(dir)
	}
	out := runtime.State{Pid: oci.Pid, StartedAt: st.StartedAt}
	switch oci.Status {
	case "created":
		out.Status = runtime.StatusCreated
	case "running":
		out.Status = runtime.StatusRunning
	case "paused", "pausing":
		out.Status = runtime.StatusPaused
	default: // stopped: the shim is recording the exit
		if st2, err := r.awaitExit(ctx, dir, st); err == nil {
			return stoppedState(st2), nil
		}
		out.Status = runtime.StatusStopped
		out.Pid = 0
		if !shimAlive(st) {
			return lostState(dir)
		}
	}
	return out, nil
}

// awaitExit waits briefly for a shim that is alive to record an exit.
func (r *Runtime) awaitExit(ctx context.Context, dir string, st shimState) (shimState, error) {
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) && shimAlive(st) {
		if s, err := readShimState(dir); err == nil && s.Exited {
			return s, nil
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	if s, err := readShimState(dir); err == nil && s.Exited {
		return s, nil
	}
	return st, runtime.ErrNotRunning
}

func stoppedState(st shimState) runtime.State {
	return runtime.State{
		Status: runtime.StatusStopped, ExitCode: st.ExitCode, OOMKilled: st.OOMKilled,
		StartedAt: st.StartedAt, FinishedAt: st.FinishedAt,
	}
}

// lostState describes a container whose shim died without recording an
// exit (killed, or the machine rebooted): stopped, exit code 255.
func lostState(dir string) (runtime.State, error) {
	st, _ := readShimState(dir)
	if st.Exited {
		return stoppedState(st), nil
	}
	return runtime.State{Status: runtime.StatusStopped, ExitCode: 255, StartedAt: st.StartedAt}, nil
}

// Wait blocks until the container has stopped and returns its final state
// (runtime.Waiter). It sleeps on a pidfd of the container's init process
// instead of polling, so that waiting on many idle containers costs nothing.
func (r *Runtime) Wait(ctx context.Context, id string) (runtime.State, error) {
	dir, err := r.stateDir(id)
	if err != nil {
		return runtime.State{}, err
	}
	// Wait on the container's pidfd, re-reading the shim's record every
	// few seconds: an exit the pidfd did not report (its pid taken by
	// another process before the pidfd was open) still ends the wait.
	for {
		st, err := readShimState(dir)
		if err != nil || st.Exited || st.Pid <= 0 || !shimAlive(st) {
			break
		}
		wctx, cancel := context.WithTimeout(ctx, waitRecheck)
		err = waitPidfd(wctx, st.Pid)
		cancel()
		if ctx.Err() != nil {
			return runtime.State{}, ctx.Err()
		}
		if err == nil {
			break
		}
	}
	for {
		s, err := r.State(ctx, id)
		if err != nil || s.Status == runtime.StatusStopped {
			return s, err
		}
		select {
		case <-ctx.Done():
			return s, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitRecheck is how often a wait re-reads the shim's record.
const waitRecheck = 5 * time.Second

// waitPidfd blocks until process pid has exited or ctx ends. A process
// that is already gone returns at once. The pidfd sits in Go's netpoller,
// so a waiting container costs neither a thread nor periodic wake-ups.
func waitPidfd(ctx context.Context, pid int) error {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return nil // already gone (or no pidfd: the caller polls)
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return nil
	}
	stop := context.AfterFunc(ctx, func() { f.SetReadDeadline(time.Now()) })
	defer stop()
	first := true
	// The callback runs once at once, then again each time the pidfd polls
	// readable, which it does when the process exits.
	err = rc.Read(func(uintptr) bool {
		done := !first
		first = false
		return done
	})
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return nil
}

// Signal implements runtime.Runtime.
func (r *Runtime) Signal(ctx context.Context, id string, sig syscall.Signal) error {
	if err := r.mustRun(id); err != nil {
		return err
	}
	_, err := r.run(ctx, "kill", id, strconv.Itoa(int(sig)))
	return err
}

// mustRun returns ErrNotFound or ErrNotRunning unless the shim has not
// recorded an exit.
func (r *Runtime) mustRun(id string) error {
	dir, err := r.stateDir(id)
	if err != nil {
		return err
	}
	if st, err := readShimState(dir); err == nil && st.Exited {
		return runtime.ErrNotRunning
	}
	return nil
}

// Pause implements runtime.Runtime (cgroup freezer).
func (r *Runtime) Pause(ctx context.Context, id string) error {
	if err := r.mustRun(id); err != nil {
		return err
	}
	_, err := r.run(ctx, "pause", id)
	return err
}

// Resume implements runtime.Runtime. For runc it thaws the container's
// freezer cgroup itself, which is all `runc resume` does (runc derives
// "paused" from the freezer, it keeps no state of it), without the cost of
// running runc: a suspended pod's wake is on the path of a request.
func (r *Runtime) Resume(ctx context.Context, id string) error {
	if err := r.mustRun(id); err != nil {
		return err
	}
	if r.runtimeLog { // runc, not runsc (whose freezer is inside the sandbox)
		if err := r.thaw(id); err == nil {
			return nil
		}
	}
	_, err := r.run(ctx, "resume", id)
	return err
}

// thaw writes THAWED to the freezer cgroup of a frozen runc container.
func (r *Runtime) thaw(id string) error {
	dir, err := r.stateDir(id)
	if err != nil {
		return err
	}
	st, err := readShimState(dir)
	if err != nil {
		return err
	}
	cg, ok := st.Cgroups["freezer"]
	if !ok {
		return errors.New("freezer cgroup unknown")
	}
	state := filepath.Join(cgroupRoot, "freezer", cg, "freezer.state")
	b, err := os.ReadFile(state)
	if err != nil {
		return err
	}
	if strings.TrimSpace(string(b)) != "FROZEN" {
		return fmt.Errorf("container is not paused (%s)", strings.TrimSpace(string(b)))
	}
	return os.WriteFile(state, []byte("THAWED"), 0)
}

// Delete implements runtime.Runtime: it kills what still runs, lets the
// runtime binary free cgroups and state, stops the shim and removes StateDir.
func (r *Runtime) Delete(ctx context.Context, id string) error {
	if err := checkID(id); err != nil {
		return nil
	}
	dir, err := r.stateDir(id)
	if err != nil {
		// Not ours (any more); make sure the runtime binary forgets it too.
		if r.ociKnows(id) {
			r.run(ctx, "delete", "--force", id)
		}
		os.Remove(filepath.Join(r.regRoot, id))
		return nil
	}
	st, _ := readShimState(dir)
	if r.ociKnows(id) {
		if _, err := r.run(ctx, "delete", "--force", id); err != nil && !errors.Is(err, runtime.ErrNotFound) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			r.log.Warn("delete", "id", id, "err", err)
		}
	}
	// The shim notices the exit, records it and ends; give it a moment.
	deadline := time.Now().Add(3 * time.Second)
	for shimAlive(st) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if shimAlive(st) {
		syscall.Kill(st.ShimPid, syscall.SIGKILL)
	}
	if sd := sockDir(dir); sd != dir {
		os.RemoveAll(sd)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove state: %w", err)
	}
	if err := os.Remove(filepath.Join(r.regRoot, id)); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

// ociKnows reports whether the runtime binary may still hold state for id
// (runc keeps <root>/<id>, runsc files named after the id), so that
// deleting a container that never got that far costs no runc run.
func (r *Runtime) ociKnows(id string) bool {
	entries, err := os.ReadDir(r.runRoot)
	if err != nil {
		return !os.IsNotExist(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), id) {
			return true
		}
	}
	return false
}

// Stdin implements runtime.Runtime.
func (r *Runtime) Stdin(ctx context.Context, id string) (io.WriteCloser, error) {
	dir, err := r.stateDir(id)
	if err != nil {
		return nil, err
	}
	cfg, err := r.shimConfig(dir)
	if err != nil {
		return nil, err
	}
	if !cfg.OpenStdin {
		return nil, errors.New("container stdin is not open")
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", filepath.Join(sockDir(dir), stdinSock))
	if err != nil {
		if st, _ := readShimState(dir); st.Exited {
			return nil, runtime.ErrNotRunning
		}
		return nil, fmt.Errorf("attach stdin: %w", err)
	}
	return &stdinConn{c.(*net.UnixConn)}, nil
}

// stdinConn closes its write side and waits for the shim to finish with
// it, so that when Close returns the process has seen what was written
// (and, with StdinOnce, end of file).
type stdinConn struct{ *net.UnixConn }

func (c *stdinConn) Close() error {
	c.CloseWrite()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	io.Copy(io.Discard, c.UnixConn)
	return c.UnixConn.Close()
}

// Resize implements runtime.Runtime.
func (r *Runtime) Resize(ctx context.Context, id string, s runtime.Size) error {
	dir, err := r.stateDir(id)
	if err != nil {
		return err
	}
	if cfg, err := r.shimConfig(dir); err == nil && !cfg.Tty {
		return errNoTerminal
	}
	var resp ctlResponse
	if err := r.ctl(ctx, dir, ctlRequest{Op: "resize", W: s.Width, H: s.Height}, &resp); err != nil {
		return err
	}
	if resp.Error != "" {
		return errors.New(resp.Error)
	}
	return nil
}

func (r *Runtime) ctl(ctx context.Context, dir string, req ctlRequest, resp *ctlResponse) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", filepath.Join(sockDir(dir), ctlSock))
	if err != nil {
		if st, _ := readShimState(dir); st.Exited || !shimAlive(st) {
			return runtime.ErrNotRunning
		}
		return fmt.Errorf("shim control: %w", err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	} else {
		c.SetDeadline(time.Now().Add(10 * time.Second))
	}
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return err
	}
	return json.NewDecoder(c).Decode(resp)
}

// Pids implements runtime.Runtime. With runsc the pids are those inside
// the sandbox (gVisor's own), not host pids.
func (r *Runtime) Pids(ctx context.Context, id string) ([]int, error) {
	if err := r.mustRun(id); err != nil {
		return nil, err
	}
	out, err := r.run(ctx, "ps", "--format", "json", id)
	if err != nil {
		return nil, err
	}
	var pids []int
	if err := json.Unmarshal(out, &pids); err == nil {
		return pids, nil
	}
	var procs []struct {
		PID int `json:"PID"`
	}
	if err := json.Unmarshal(out, &procs); err != nil {
		return nil, fmt.Errorf("parse ps: %w", err)
	}
	for _, p := range procs {
		pids = append(pids, p.PID)
	}
	return pids, nil
}
