package types

import "time"

// DefaultTenant owns everything until tenancy arrives: the single-machine
// cloud serves one tenant on its admin socket.
const DefaultTenant = "default"

// DefaultNamespace is where a container lands when no compose project names one.
const DefaultNamespace = "default"

// Pod is one isolated unit of work: a single container with its own sandbox.
// Spec is what the tenant asked for (written by the API), Node is where the
// scheduler placed it (written by the control loop), Status is what the node
// agent observed (written by the agent through the node protocol). The three
// are written by different actors and never overwrite each other.
type Pod struct {
	ID        string    `json:"id"` // 64 hex digits, chosen by the API
	Name      string    `json:"name"`
	Tenant    string    `json:"tenant"`
	Namespace string    `json:"namespace"`
	Created   time.Time `json:"created"`

	Spec PodSpec `json:"spec"`

	// Desired is what the tenant wants the pod to be doing now.
	Desired DesiredState `json:"desired"`

	// Node is the machine the scheduler chose; empty while pending.
	Node string `json:"node,omitempty"`
	// Unschedulable explains why Node is still empty.
	Unschedulable string `json:"unschedulable,omitempty"`

	// VPC is the pod's default addresses, chosen by the store at create;
	// nil for a pod without a network (Spec.Network "none") and for pods
	// created before the cluster recorded addresses (their node chose).
	VPC *PodVPC `json:"vpc,omitempty"`

	// Revision is the store's modification revision; set when read.
	Revision int64 `json:"-"`
}

// DesiredState is the tenant's intent for a pod's lifecycle. Run counts
// starts: every explicit start or restart increments it, so an agent sees a
// new intent even when State did not change.
type DesiredState struct {
	State PodPhase `json:"state"` // created, running, paused or exited
	Run   int      `json:"run"`
	// StopTimeout overrides Spec.StopTimeout for the stop that set this state.
	StopTimeout *int `json:"stopTimeout,omitempty"`
	// StopSignal overrides Spec.StopSignal for the stop that set this state
	// (docker stop --signal).
	StopSignal string `json:"stopSignal,omitempty"`
	// Killed marks a pod the tenant signalled by hand (docker kill): its
	// next exit is final whatever the restart policy, as a manual stop is
	// for Docker. The process itself decides whether the signal ends it.
	Killed bool `json:"killed,omitempty"`
}

// PodPhase names a lifecycle state, using Docker's words.
type PodPhase string

const (
	PhaseCreated    PodPhase = "created"
	PhaseRunning    PodPhase = "running"
	PhasePaused     PodPhase = "paused"
	PhaseRestarting PodPhase = "restarting"
	PhaseRemoving   PodPhase = "removing"
	PhaseExited     PodPhase = "exited"
	PhaseDead       PodPhase = "dead"
)

// PodSpec is the tenant's request, fixed at creation (Docker semantics: a
// container's configuration does not change after create, except its name
// and restart policy).
type PodSpec struct {
	Image      string            `json:"image"`   // as the tenant wrote it
	ImageID    string            `json:"imageID"` // sha256:... of the image config
	Entrypoint []string          `json:"entrypoint,omitempty"`
	Cmd        []string          `json:"cmd,omitempty"`
	Env        []string          `json:"env,omitempty"`
	WorkingDir string            `json:"workingDir,omitempty"`
	User       string            `json:"user,omitempty"`
	Hostname   string            `json:"hostname,omitempty"`
	Domainname string            `json:"domainname,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
	Tty        bool              `json:"tty,omitempty"`
	OpenStdin  bool              `json:"openStdin,omitempty"`
	StdinOnce  bool              `json:"stdinOnce,omitempty"`
	StopSignal string            `json:"stopSignal,omitempty"`
	// StopTimeout in seconds before SIGKILL; nil means 10.
	StopTimeout *int      `json:"stopTimeout,omitempty"`
	Restart     Restart   `json:"restart"`
	Resources   Resources `json:"resources"`
	ReadOnly    bool      `json:"readOnly,omitempty"`
	// Tmpfs maps a path inside the container to mount options ("size=64m").
	Tmpfs map[string]string `json:"tmpfs,omitempty"`
	// Runtime is the sandbox kind: sandbox (runc), gvisor (runsc), ...
	Runtime     string       `json:"runtime"`
	Healthcheck *Healthcheck `json:"healthcheck,omitempty"`
	Init        bool         `json:"init,omitempty"`
	AutoRemove  bool         `json:"autoRemove,omitempty"`
	// ExposedPorts as Docker writes them: "80/tcp".
	ExposedPorts []string `json:"exposedPorts,omitempty"`
	// Aliases are further names the pod answers to inside its namespace
	// (a compose service name, network aliases); its own name always does.
	Aliases []string `json:"aliases,omitempty"`
	// Mounts are the pod's volumes, bind mounts and tmpfs mounts.
	Mounts []Mount `json:"mounts,omitempty"`
	// Networks maps the names of the networks the pod joined to its
	// endpoint in each (Docker's NetworkingConfig and network connect).
	Networks map[string]Endpoint `json:"networks,omitempty"`
	// Network is "none" for a pod with loopback only (docker run
	// --network none); empty means its namespace's place in the VPC.
	Network string `json:"network,omitempty"`
	// Docker keeps the create request as it came, for inspect.
	DockerConfig     []byte `json:"dockerConfig,omitempty"`
	DockerHostConfig []byte `json:"dockerHostConfig,omitempty"`

	// Arch is the architecture of the pod's image (GOARCH words: amd64,
	// arm64); empty runs anywhere. The scheduler places the pod only on
	// nodes of that architecture.
	Arch string `json:"arch,omitempty"`
	// PinnedNode is the node the pod must run on, because data it mounts
	// lives only there (a node-local volume); PinnedBy says what pins it
	// ("volume db (lv2)"). Empty: any node. A pinned pod whose node is gone
	// stays pending with that reason rather than moving.
	PinnedNode string `json:"pinnedNode,omitempty"`
	PinnedBy   string `json:"pinnedBy,omitempty"`
}

// Restart is a restart policy with Docker's names: no, always,
// unless-stopped, on-failure (with MaxRetries).
type Restart struct {
	Policy     string `json:"policy,omitempty"`
	MaxRetries int    `json:"maxRetries,omitempty"`
}

// Resources are the limits and requests of a pod. Zero means unlimited.
type Resources struct {
	MemoryBytes     int64 `json:"memoryBytes,omitempty"`
	MemorySwapBytes int64 `json:"memorySwapBytes,omitempty"`
	NanoCPUs        int64 `json:"nanoCPUs,omitempty"`
	CPUShares       int64 `json:"cpuShares,omitempty"`
	PidsLimit       int64 `json:"pidsLimit,omitempty"`
}

// Healthcheck follows Docker's HEALTHCHECK: Test is ["CMD", ...],
// ["CMD-SHELL", "..."] or ["NONE"].
type Healthcheck struct {
	Test        []string      `json:"test,omitempty"`
	Interval    time.Duration `json:"interval,omitempty"`
	Timeout     time.Duration `json:"timeout,omitempty"`
	StartPeriod time.Duration `json:"startPeriod,omitempty"`
	// StartInterval is the interval between probes during StartPeriod
	// (compose's start_interval, API 1.44).
	StartInterval time.Duration `json:"startInterval,omitempty"`
	Retries       int           `json:"retries,omitempty"`
}

// PodStatus is what the node agent observed; it is stored beside the pod
// under its own key so agent and API writes never conflict.
type PodStatus struct {
	ID           string    `json:"id"`
	Node         string    `json:"node,omitempty"`
	Phase        PodPhase  `json:"phase"`
	Run          int       `json:"run"` // the DesiredState.Run this status answers
	Pid          int       `json:"pid,omitempty"`
	ExitCode     int       `json:"exitCode"`
	OOMKilled    bool      `json:"oomKilled,omitempty"`
	Error        string    `json:"error,omitempty"`
	StartedAt    time.Time `json:"startedAt,omitzero"`
	FinishedAt   time.Time `json:"finishedAt,omitzero"`
	RestartCount int       `json:"restartCount,omitempty"`
	// Exits counts every exit the agent has seen; docker wait watches it.
	Exits  int     `json:"exits,omitempty"`
	Health *Health `json:"health,omitempty"`
	// Suspend is set while the pod is frozen for being idle (auto-suspend):
	// it still runs for Docker (phase running), with memory kept and no CPU.
	Suspend Suspend `json:"suspend,omitzero"`
	// IPv6 and IPv4 are the pod's VPC addresses while it has a network.
	IPv6 string `json:"ipv6,omitempty"`
	IPv4 string `json:"ipv4,omitempty"`
}

// Suspend is a pod's auto-suspend record.
type Suspend struct {
	Suspended bool      `json:"suspended"`
	Since     time.Time `json:"since,omitzero"` // when the current suspension began
	// Wakes counts thaws; Total is the time spent suspended before the
	// current suspension; LastWake is how long the last thaw took on the node.
	Wakes    int           `json:"wakes,omitempty"`
	Woke     time.Time     `json:"woke,omitzero"` // when the last thaw was
	Total    time.Duration `json:"total,omitempty"`
	LastWake time.Duration `json:"lastWake,omitempty"`
}

// Suspended is true while the pod is frozen by auto-suspend.
func (s PodStatus) Suspended() bool { return s.Suspend.Suspended }

// Health is the state of a pod's healthcheck, as Docker reports it.
type Health struct {
	Status        string      `json:"status"` // starting, healthy, unhealthy
	FailingStreak int         `json:"failingStreak"`
	Log           []HealthLog `json:"log,omitempty"`
}

// HealthLog is one probe of a healthcheck.
type HealthLog struct {
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	ExitCode int       `json:"exitCode"`
	Output   string    `json:"output"`
}

// Up is true while the pod's process exists: running or paused.
func (p PodPhase) Up() bool { return p == PhaseRunning || p == PhasePaused }

// Active is Docker's State.Running: up, or waiting to restart.
func (p PodPhase) Active() bool { return p.Up() || p == PhaseRestarting }
