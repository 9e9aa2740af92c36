// Package runtime is the one small interface behind which every way of
// running a pod sits: sandbox (runc, and gvisor through runsc, in package
// sandbox), microvm, and fake for tests. Every runtime takes an OCI
// runtime-spec bundle that the agent prepared; none of them knows about the
// store, the API or images.
package runtime

import (
	"context"
	"errors"
	"io"
	"syscall"
	"time"
)

// ErrNotFound is returned when a runtime does not know a container.
var ErrNotFound = errors.New("container not found in runtime")

// ErrNotRunning is returned for operations that need a running container.
var ErrNotRunning = errors.New("container is not running")

// Status is the lifecycle state of a container as the runtime sees it.
type Status string

const (
	StatusCreated Status = "created"
	StatusRunning Status = "running"
	StatusPaused  Status = "paused"
	StatusStopped Status = "stopped"
)

// Container is what a runtime needs to start one pod's container.
type Container struct {
	ID string
	// Bundle holds config.json; its root.path names the (already mounted) rootfs.
	Bundle string
	// StateDir belongs to the runtime: the shim keeps its log, exit status
	// and sockets there. It survives restarts of macro.
	StateDir string
	// LogPath is where stdout and stderr are written, in the logfile format.
	LogPath   string
	Tty       bool
	OpenStdin bool
	StdinOnce bool
}

// State is a container as observed by its runtime.
type State struct {
	Status     Status
	Pid        int
	ExitCode   int
	OOMKilled  bool
	StartedAt  time.Time
	FinishedAt time.Time
}

// Process is an extra process started inside a running container (exec).
type Process struct {
	Args []string
	Env  []string
	Cwd  string
	User string // as in docker: name, uid, uid:gid, name:group
	Tty  bool
	// Privileged is refused by the API for now; kept for completeness.
	Privileged bool
}

// Size is a terminal size.
type Size struct{ Width, Height uint16 }

// IO connects a process's standard streams. Nil members are not connected.
// With Tty, Stdout gets the terminal's output and Stderr is unused.
type IO struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Resize <-chan Size
}

// Stats are resource usage figures of a container.
type Stats struct {
	Read          time.Time
	CPUUsageNanos uint64 // total CPU time consumed
	SystemNanos   uint64 // host CPU time, for percentages
	OnlineCPUs    int
	MemoryUsage   uint64
	MemoryLimit   uint64
	MemoryCache   uint64
	PidsCurrent   uint64
	PidsLimit     uint64
}

// Runtime runs containers from OCI bundles. Containers outlive the process
// that started them: a new Runtime value over the same state finds them
// again (State, Signal, Attach work after macro restarts).
type Runtime interface {
	// Name is the name tenants pick with --runtime.
	Name() string
	// Start creates the container from c.Bundle and starts its process under
	// a shim that outlives the caller. It returns once the process runs.
	Start(ctx context.Context, c Container) (pid int, err error)
	// State reports the container; ErrNotFound when the runtime does not know it.
	State(ctx context.Context, id string) (State, error)
	// Signal sends sig to the container's init process.
	Signal(ctx context.Context, id string, sig syscall.Signal) error
	Pause(ctx context.Context, id string) error
	Resume(ctx context.Context, id string) error
	// Delete forgets a stopped container and frees what the runtime holds
	// for it (cgroups, shim, state dir). Deleting an unknown id is not an error.
	Delete(ctx context.Context, id string) error
	// Stdin opens the container's standard input (OpenStdin containers);
	// closing the writer closes the process's stdin when StdinOnce.
	Stdin(ctx context.Context, id string) (io.WriteCloser, error)
	// Resize changes the terminal size of a Tty container.
	Resize(ctx context.Context, id string, s Size) error
	// Exec runs p inside the running container and waits for it.
	Exec(ctx context.Context, id string, p Process, stdio IO) (exitCode int, err error)
	// Pids lists the host pids of the container's processes.
	Pids(ctx context.Context, id string) ([]int, error)
	Stats(ctx context.Context, id string) (Stats, error)
}

// Waiter is implemented by runtimes that can block until a container has
// stopped without polling (a pidfd, a shim event). Callers fall back to
// polling State for runtimes that do not implement it.
type Waiter interface {
	Wait(ctx context.Context, id string) (State, error)
}
