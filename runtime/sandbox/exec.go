package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/creack/pty"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/macro-cloud/macro/runtime"
)

// Exec implements runtime.Runtime: `runc exec --process` as a child of the
// caller, with its stdio wired to stdio. It returns the process's exit
// code. When the process cannot be started the error carries the runtime's
// message and the exit code is Docker's: 127 for a missing executable, 126
// otherwise. Cancelling ctx kills the process.
func (r *Runtime) Exec(ctx context.Context, id string, p runtime.Process, stdio runtime.IO) (int, error) {
	if len(p.Args) == 0 {
		return 0, errors.New("exec: no command")
	}
	if p.Privileged {
		return 0, errors.New("exec: privileged processes are not supported")
	}
	dir, err := r.stateDir(id)
	if err != nil {
		return 0, err
	}
	if st, err := readShimState(dir); err == nil && st.Exited {
		return 0, runtime.ErrNotRunning
	}
	cfg, err := r.shimConfig(dir)
	if err != nil {
		return 0, err
	}
	var spec specs.Spec
	if err := readJSON(filepath.Join(cfg.Bundle, "config.json"), &spec); err != nil {
		return 0, fmt.Errorf("exec: read bundle config: %w", err)
	}
	proc, err := execProcess(&spec, cfg.Bundle, p)
	if err != nil {
		return 126, fmt.Errorf("exec: %w", err)
	}

	var rnd [6]byte
	rand.Read(rnd[:])
	base := filepath.Join(dir, "exec-"+hex.EncodeToString(rnd[:]))
	procPath, pidPath, logPath, ipidPath := base+".json", base+".pid", base+".log", base+".ipid"
	defer func() {
		for _, f := range []string{procPath, pidPath, logPath, ipidPath} {
			os.Remove(f)
		}
	}()
	if err := writeJSONAtomic(procPath, proc); err != nil {
		return 0, err
	}
	argv := []string{"--root", r.runRoot}
	if r.runtimeLog {
		argv = append(argv, "--log", logPath, "--log-format", "json")
	}
	argv = append(argv, r.globalArgs...)
	argv = append(argv, "exec", "--process", procPath, "--pid-file", pidPath)
	if !r.runtimeLog { // runsc
		argv = append(argv, "--internal-pid-file", ipidPath)
	}
	argv = append(argv, id)
	cmd := exec.Command(r.binary, argv...)
	cmd.Dir = "/"

	started := make(chan struct{}) // closed once the pid file exists
	gateOut := newGate(started)
	var (
		copies   sync.WaitGroup
		closers  []io.Closer // our ends, closed after the runtime exits
		childEnd []*os.File  // the runtime's ends, closed once it started
	)
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer devnull.Close()

	if p.Tty {
		ptmx, pts, err := pty.Open()
		if err != nil {
			return 0, fmt.Errorf("exec: open pty: %w", err)
		}
		defer ptmx.Close()
		setWinsize(ptmx, runtime.Size{Width: 80, Height: 24})
		cmd.Stdin, cmd.Stdout, cmd.Stderr = pts, pts, pts
		// The runtime copies between its own terminal (pts) and the
		// container's; it must own pts to get SIGWINCH on resize.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
		childEnd = append(childEnd, pts)
		copies.Add(1)
		go func() {
			defer copies.Done()
			io.Copy(gateOut.writer(stdio.Stdout), ptmx) // ends with EIO when the runtime is gone
		}()
		if stdio.Stdin != nil {
			go io.Copy(ptmx, stdio.Stdin)
		}
		if stdio.Resize != nil {
			stop, stopped := make(chan struct{}), make(chan struct{})
			defer func() { close(stop); <-stopped }() // before ptmx is closed
			go func() {
				defer close(stopped)
				for {
					select {
					case s, ok := <-stdio.Resize:
						if !ok {
							return
						}
						setWinsize(ptmx, s)
					case <-stop:
						return
					}
				}
			}()
		}
	} else {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Stdin = devnull
		if stdio.Stdin != nil {
			inR, inW, err := os.Pipe()
			if err != nil {
				return 0, err
			}
			cmd.Stdin = inR
			childEnd = append(childEnd, inR)
			closers = append(closers, inW)
			go func() {
				io.Copy(inW, stdio.Stdin)
				inW.Close()
			}()
		}
		outR, outW, err := os.Pipe()
		if err != nil {
			return 0, err
		}
		errR, errW, err := os.Pipe()
		if err != nil {
			return 0, err
		}
		cmd.Stdout, cmd.Stderr = outW, errW
		childEnd = append(childEnd, outW, errW)
		closers = append(closers, outR, errR)
		copies.Add(2)
		go func() {
			defer copies.Done()
			w := stdio.Stdout
			if w == nil {
				w = io.Discard
			}
			io.Copy(w, outR)
		}()
		go func() {
			defer copies.Done()
			// The runtime reports its own failures on this stderr too:
			// hold output back until the process has started.
			io.Copy(gateOut.writer(stdio.Stderr), errR)
		}()
	}

	if err := cmd.Start(); err != nil {
		for _, f := range childEnd {
			f.Close()
		}
		for _, c := range closers {
			c.Close()
		}
		return 0, fmt.Errorf("exec: %w", err)
	}
	for _, f := range childEnd {
		f.Close()
	}

	exited := make(chan struct{})
	// Watch for the pid file (the process started) and for cancellation.
	go func() {
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		isStarted := false
		for {
			if !isStarted {
				if _, err := os.Stat(pidPath); err == nil {
					isStarted = true
					close(started)
					gateOut.open()
					t.Reset(time.Hour)
				}
			}
			select {
			case <-exited:
				return
			case <-ctx.Done():
				r.killExec(id, pidPath, ipidPath)
				cmd.Process.Kill()
				return
			case <-t.C:
			}
		}
	}()

	waitErr := cmd.Wait()
	close(exited)
	_, statErr := os.Stat(pidPath)
	ranProcess := statErr == nil
	// Give the copies a moment to drain what the process wrote last.
	drained := make(chan struct{})
	go func() { copies.Wait(); close(drained) }()
	if ranProcess {
		gateOut.open()
	}
	select {
	case <-drained:
	case <-time.After(2 * time.Second):
	}
	for _, c := range closers {
		c.Close()
	}

	code := 0
	if waitErr != nil {
		var ee *exec.ExitError
		if !errors.As(waitErr, &ee) {
			return 0, fmt.Errorf("exec: %w", waitErr)
		}
		code = ee.ExitCode()
		if code < 0 {
			code = 128 + int(ee.Sys().(syscall.WaitStatus).Signal())
		}
	}
	if ctx.Err() != nil {
		return code, ctx.Err()
	}
	if code != 0 && !ranProcess {
		msg := ""
		if r.runtimeLog {
			b, _ := os.ReadFile(logPath)
			msg = runtimeMessage(b)
		}
		if msg == "" {
			msg = runtimeMessage(gateOut.held())
		}
		if msg == "" {
			msg = fmt.Sprintf("%s exec failed with exit status %d", filepath.Base(r.binary), code)
		}
		if c := startExitCode(msg); c != 128 {
			return c, errors.New(msg)
		}
		return 126, errors.New(msg)
	}
	if !ranProcess {
		gateOut.open() // exit 0 without a pid file: pass what we held on
	}
	return code, nil
}

// killExec kills an exec'd process by its pid file.
func (r *Runtime) killExec(id, pidPath, ipidPath string) {
	if !r.runtimeLog { // runsc: the process lives in the sandbox
		if b, err := os.ReadFile(ipidPath); err == nil {
			if pid := strings.TrimSpace(string(b)); pid != "" {
				r.run(context.Background(), "kill", "--pid", pid, id, "KILL")
			}
		}
	}
	if b, err := os.ReadFile(pidPath); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// execProcess builds the OCI process of an exec from the container's.
func execProcess(spec *specs.Spec, bundle string, p runtime.Process) (*specs.Process, error) {
	var proc specs.Process
	if spec.Process != nil {
		proc = *spec.Process
	}
	proc.Args = p.Args
	proc.Terminal = p.Tty
	proc.ConsoleSize = nil
	proc.Env = mergeEnv(proc.Env, p.Env)
	if p.Cwd != "" {
		proc.Cwd = p.Cwd
	}
	if proc.Cwd == "" {
		proc.Cwd = "/"
	}
	if p.User != "" {
		rootfs := ""
		if spec.Root != nil {
			rootfs = spec.Root.Path
			if !filepath.IsAbs(rootfs) {
				rootfs = filepath.Join(bundle, rootfs)
			}
		}
		u, err := resolveUser(rootfs, p.User)
		if err != nil {
			return nil, err
		}
		proc.User = specs.User{UID: u.UID, GID: u.GID, AdditionalGids: u.Groups, Umask: proc.User.Umask}
		// HOME: the runtime sets it from passwd when the environment lacks it.
	}
	return &proc, nil
}

// mergeEnv returns base with add applied: same keys replaced, new appended.
func mergeEnv(base, add []string) []string {
	out := append([]string{}, base...)
	for _, e := range add {
		k, _, _ := strings.Cut(e, "=")
		replaced := false
		for i, o := range out {
			if ok, _, _ := strings.Cut(o, "="); ok == k {
				out[i], replaced = e, true
				break
			}
		}
		if !replaced {
			out = append(out, e)
		}
	}
	return out
}

// gate holds output back until started is closed (or open is called),
// then passes it through. What it held is kept for error messages.
type gate struct {
	mu      sync.Mutex
	started <-chan struct{}
	opened  bool
	buf     []byte
	dst     io.Writer
}

func newGate(started <-chan struct{}) *gate { return &gate{started: started} }

func (g *gate) writer(dst io.Writer) io.Writer {
	if dst == nil {
		dst = io.Discard
	}
	g.mu.Lock()
	g.dst = dst
	g.mu.Unlock()
	return gateWriter{g}
}

type gateWriter struct{ g *gate }

func (w gateWriter) Write(p []byte) (int, error) {
	g := w.g
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.opened {
		select {
		case <-g.started:
			g.flushLocked()
		default:
			if len(g.buf) < 1<<20 {
				g.buf = append(g.buf, p...)
			}
			return len(p), nil
		}
	}
	return g.dst.Write(p)
}

func (g *gate) flushLocked() {
	if g.opened {
		return
	}
	g.opened = true
	if len(g.buf) > 0 && g.dst != nil {
		g.dst.Write(g.buf)
	}
	g.buf = nil
}

func (g *gate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.flushLocked()
}

// held returns what was held back and not passed on.
func (g *gate) held() []byte {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.opened {
		return nil
	}
	return append([]byte{}, g.buf...)
}

// setWinsize sets a terminal's size without os.File.Fd, which would put
// the file into blocking mode.
func setWinsize(f *os.File, s runtime.Size) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ierr error
	err = rc.Control(func(fd uintptr) {
		ierr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: s.Height, Col: s.Width})
	})
	if err != nil {
		return err
	}
	return ierr
}
