// Package fake is an in-memory runtime.Runtime for tests of the agent and
// for scheduler simulations: a state machine per container, no processes.
// Start marks a container running with a made-up pid; a terminating signal
// stops it with 128+signal (SIGTERM: 143, SIGKILL: 137); Exit stops it
// with any code, as if its process had ended by itself.
package fake

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
	"syscall"
	"time"

	"github.com/macro-cloud/macro/runtime"
)

// Runtime is a fake runtime.Runtime. The zero value is not usable; use New.
type Runtime struct {
	// ExecFunc, when set, runs Exec (after the running check); by default
	// Exec returns exit code 0 without output.
	ExecFunc func(ctx context.Context, id string, p runtime.Process, stdio runtime.IO) (int, error)
	// Now gives the time stamps; default time.Now.
	Now func() time.Time

	mu         sync.Mutex
	name       string
	nextPid    int
	containers map[string]*container
}

type container struct {
	c     runtime.Container
	st    runtime.State
	stdin bytes.Buffer
	size  runtime.Size
}

var _ runtime.Runtime = (*Runtime)(nil)

// New returns an empty fake runtime named "fake".
func New() *Runtime {
	return &Runtime{name: "fake", nextPid: 1000, containers: map[string]*container{}, Now: time.Now}
}

// Name implements runtime.Runtime.
func (r *Runtime) Name() string { return r.name }

func (r *Runtime) get(id string) (*container, error) {
	c, ok := r.containers[id]
	if !ok {
		return nil, runtime.ErrNotFound
	}
	return c, nil
}

func (r *Runtime) running(id string) (*container, error) {
	c, err := r.get(id)
	if err != nil {
		return nil, err
	}
	if c.st.Status != runtime.StatusRunning && c.st.Status != runtime.StatusPaused {
		return nil, runtime.ErrNotRunning
	}
	return c, nil
}

// Start implements runtime.Runtime.
func (r *Runtime) Start(ctx context.Context, c runtime.Container) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.containers[c.ID]; ok && old.st.Status != runtime.StatusStopped {
		return 0, fmt.Errorf("container %s already exists", c.ID)
	}
	r.nextPid++
	r.containers[c.ID] = &container{c: c, st: runtime.State{
		Status: runtime.StatusRunning, Pid: r.nextPid, StartedAt: r.Now().UTC(),
	}}
	return r.nextPid, nil
}

// State implements runtime.Runtime.
func (r *Runtime) State(ctx context.Context, id string) (runtime.State, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.get(id)
	if err != nil {
		return runtime.State{}, err
	}
	return c.st, nil
}

// Exit stops a running container with code, as if its process ended.
func (r *Runtime) Exit(id string, code int, oomKilled bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.running(id)
	if err != nil {
		return err
	}
	r.stop(c, code, oomKilled)
	return nil
}

func (r *Runtime) stop(c *container, code int, oom bool) {
	c.st.Status = runtime.StatusStopped
	c.st.Pid = 0
	c.st.ExitCode = code
	c.st.OOMKilled = oom
	c.st.FinishedAt = r.Now().UTC()
}

// Signal implements runtime.Runtime: signals that terminate by default
// stop the container with 128+signal; others are ignored.
func (r *Runtime) Signal(ctx context.Context, id string, sig syscall.Signal) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.running(id)
	if err != nil {
		return err
	}
	switch sig {
	case 0, syscall.SIGCHLD, syscall.SIGCONT, syscall.SIGWINCH, syscall.SIGURG,
		syscall.SIGSTOP, syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU:
		return nil
	}
	if c.st.Status == runtime.StatusPaused && sig != syscall.SIGKILL {
		return nil // delivered on resume in real life; ignored here
	}
	r.stop(c, 128+int(sig), false)
	return nil
}

// Pause implements runtime.Runtime.
func (r *Runtime) Pause(ctx context.Context, id string) error {
	return r.transition(id, runtime.StatusRunning, runtime.StatusPaused)
}

// Resume implements runtime.Runtime.
func (r *Runtime) Resume(ctx context.Context, id string) error {
	return r.transition(id, runtime.StatusPaused, runtime.StatusRunning)
}

func (r *Runtime) transition(id string, from, to runtime.Status) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.running(id)
	if err != nil {
		return err
	}
	if c.st.Status != from {
		return fmt.Errorf("container %s is %s, not %s", id, c.st.Status, from)
	}
	c.st.Status = to
	return nil
}

// Delete implements runtime.Runtime.
func (r *Runtime) Delete(ctx context.Context, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.containers, id)
	return nil
}

// Stdin implements runtime.Runtime; what is written is kept (see Input).
func (r *Runtime) Stdin(ctx context.Context, id string) (io.WriteCloser, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.running(id)
	if err != nil {
		return nil, err
	}
	if !c.c.OpenStdin {
		return nil, fmt.Errorf("container %s stdin is not open", id)
	}
	return stdinWriter{r, c}, nil
}

type stdinWriter struct {
	r *Runtime
	c *container
}

func (w stdinWriter) Write(p []byte) (int, error) {
	w.r.mu.Lock()
	defer w.r.mu.Unlock()
	return w.c.stdin.Write(p)
}

func (w stdinWriter) Close() error { return nil }

// Input returns what was written to a container's stdin.
func (r *Runtime) Input(id string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.containers[id]; ok {
		return c.stdin.String()
	}
	return ""
}

// Resize implements runtime.Runtime; Size reports the last size.
func (r *Runtime) Resize(ctx context.Context, id string, s runtime.Size) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.running(id)
	if err != nil {
		return err
	}
	if !c.c.Tty {
		return fmt.Errorf("container %s has no terminal", id)
	}
	c.size = s
	return nil
}

// Size returns the terminal size last set by Resize.
func (r *Runtime) Size(id string) runtime.Size {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.containers[id]; ok {
		return c.size
	}
	return runtime.Size{}
}

// Exec implements runtime.Runtime.
func (r *Runtime) Exec(ctx context.Context, id string, p runtime.Process, stdio runtime.IO) (int, error) {
	r.mu.Lock()
	c, err := r.running(id)
	paused := err == nil && c.st.Status == runtime.StatusPaused
	r.mu.Unlock()
	if err != nil {
		return 0, err
	}
	if paused {
		return 0, fmt.Errorf("container %s is paused", id)
	}
	if r.ExecFunc != nil {
		return r.ExecFunc(ctx, id, p, stdio)
	}
	return 0, nil
}

// Pids implements runtime.Runtime.
func (r *Runtime) Pids(ctx context.Context, id string) ([]int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.running(id)
	if err != nil {
		return nil, err
	}
	return []int{c.st.Pid}, nil
}

// Stats implements runtime.Runtime with zero usage.
func (r *Runtime) Stats(ctx context.Context, id string) (runtime.Stats, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, err := r.running(id); err != nil {
		return runtime.Stats{}, err
	}
	return runtime.Stats{Read: r.Now().UTC(), OnlineCPUs: 1, PidsCurrent: 1}, nil
}
