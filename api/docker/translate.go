package docker

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"

	"github.com/macro-cloud/macro/image"
	"github.com/macro-cloud/macro/runtime/ocispec"
	"github.com/macro-cloud/macro/types"
)

// createRequest is the body of POST /containers/create.
type createRequest struct {
	container.Config
	HostConfig       *container.HostConfig `json:"HostConfig,omitempty"`
	NetworkingConfig json.RawMessage       `json:"NetworkingConfig,omitempty"`
}

var validName = regexp.MustCompile(`^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

// podFromCreate translates a Docker create request into a pod spec, merging
// the image's configuration the way dockerd does at create time.
func podFromCreate(req *createRequest, img image.Image, name, defaultRuntime string) (types.PodSpec, error) {
	cfg := req.Config
	hc := req.HostConfig
	if hc == nil {
		hc = &container.HostConfig{}
	}
	ic := img.Config.Config
	spec := types.PodSpec{
		Image:       cfg.Image,
		ImageID:     img.ID,
		Arch:        img.Config.Architecture,
		Entrypoint:  cfg.Entrypoint,
		Cmd:         cfg.Cmd,
		Env:         mergeEnv(cfg.Env, ic.Env),
		WorkingDir:  cfg.WorkingDir,
		User:        cfg.User,
		Hostname:    cfg.Hostname,
		Domainname:  cfg.Domainname,
		Labels:      map[string]string{},
		Tty:         cfg.Tty,
		OpenStdin:   cfg.OpenStdin,
		StdinOnce:   cfg.StdinOnce,
		StopSignal:  cfg.StopSignal,
		StopTimeout: cfg.StopTimeout,
		Restart: types.Restart{
			Policy:     string(hc.RestartPolicy.Name),
			MaxRetries: hc.RestartPolicy.MaximumRetryCount,
		},
		Resources: types.Resources{
			MemoryBytes:     hc.Memory,
			MemorySwapBytes: hc.MemorySwap,
			NanoCPUs:        hc.NanoCPUs,
			CPUShares:       hc.CPUShares,
		},
		ReadOnly:   hc.ReadonlyRootfs,
		Tmpfs:      hc.Tmpfs,
		Runtime:    hc.Runtime,
		AutoRemove: hc.AutoRemove,
	}
	if hc.PidsLimit != nil {
		spec.Resources.PidsLimit = *hc.PidsLimit
	}
	if hc.Memory > 0 && hc.MemorySwap == 0 {
		// Docker: swap unset is memory+swap of twice the memory, as the
		// node's OCI spec sets it.
		spec.Resources.MemorySwapBytes = 2 * hc.Memory
	}
	if hc.Init != nil {
		spec.Init = *hc.Init
	}
	if spec.Runtime == "" || spec.Runtime == "runc" {
		spec.Runtime = defaultRuntime
	}
	if spec.Runtime == "runsc" {
		spec.Runtime = "gvisor"
	}
	if spec.Restart.Policy == "" {
		spec.Restart.Policy = "no"
	}
	switch spec.Restart.Policy {
	case "no", "always", "unless-stopped":
		if spec.Restart.MaxRetries != 0 {
			return spec, badRequest("invalid restart policy: maximum retry count can only be used with 'on-failure'")
		}
	case "on-failure":
		if spec.Restart.MaxRetries < 0 {
			return spec, badRequest("invalid restart policy: maximum retry count cannot be negative")
		}
	default:
		return spec, badRequest("invalid restart policy: unknown policy '%s'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'", spec.Restart.Policy)
	}
	if spec.AutoRemove && spec.Restart.Policy != "no" {
		return spec, conflict("conflicting options: cannot specify both --restart and --rm")
	}
	// Docker: an entrypoint given on create drops the image's command too.
	if len(cfg.Entrypoint) == 0 && cfg.Entrypoint != nil {
		spec.Entrypoint = nil
	} else if cfg.Entrypoint == nil {
		spec.Entrypoint = ic.Entrypoint
		if len(spec.Cmd) == 0 {
			spec.Cmd = ic.Cmd
		}
	}
	if spec.WorkingDir == "" {
		spec.WorkingDir = ic.WorkingDir
	}
	if spec.WorkingDir != "" && !strings.HasPrefix(spec.WorkingDir, "/") {
		return spec, badRequest("the working directory '%s' is invalid, it needs to be an absolute path", spec.WorkingDir)
	}
	if spec.User == "" {
		spec.User = ic.User
	}
	if spec.StopSignal == "" {
		spec.StopSignal = ic.StopSignal
	}
	if spec.StopSignal != "" {
		if _, err := ocispec.ParseSignal(spec.StopSignal); err != nil {
			return spec, badRequest("%v", err)
		}
	}
	// dockerd refuses at create what could never start; `--entrypoint ""`
	// arrives as [""] and runs the command alone.
	if len(spec.Entrypoint) == 1 && spec.Entrypoint[0] == "" && len(spec.Cmd) == 0 || len(spec.Entrypoint) == 0 && len(spec.Cmd) == 0 {
		return spec, badRequest("No command specified")
	}
	for k, v := range ic.Labels {
		spec.Labels[k] = v
	}
	for k, v := range cfg.Labels {
		spec.Labels[k] = v
	}
	for p := range ic.ExposedPorts {
		spec.ExposedPorts = append(spec.ExposedPorts, p)
	}
	for p := range cfg.ExposedPorts {
		spec.ExposedPorts = append(spec.ExposedPorts, string(p.String()))
	}
	sort.Strings(spec.ExposedPorts)
	spec.ExposedPorts = uniq(spec.ExposedPorts)
	if hc := cfg.Healthcheck; hc != nil {
		spec.Healthcheck = &types.Healthcheck{Test: hc.Test, Interval: hc.Interval, Timeout: hc.Timeout, StartPeriod: hc.StartPeriod, StartInterval: hc.StartInterval, Retries: hc.Retries}
	} else if h := img.Config.Config.Healthcheck; h != nil {
		spec.Healthcheck = &types.Healthcheck{Test: h.Test, Interval: h.Interval, Timeout: h.Timeout, StartPeriod: h.StartPeriod, Retries: h.Retries}
	}
	if err := ocispec.Validate(spec); err != nil {
		return spec, badRequest("%v", err)
	}
	if err := unsupportedHostConfig(req.HostConfig); err != nil {
		return spec, err
	}
	if err := applyMounts(&spec, req, img); err != nil {
		return spec, err
	}
	if err := applyNetworking(&spec, req); err != nil {
		return spec, err
	}
	if hc.Privileged {
		return spec, badRequest("privileged containers are not supported: pods never get host devices or capabilities")
	}
	if len(hc.Devices) > 0 {
		return spec, badRequest("host devices are not supported")
	}
	if hc.NetworkMode == "host" || strings.HasPrefix(string(hc.NetworkMode), "container:") || hc.PidMode == "host" || hc.IpcMode == "host" {
		return spec, badRequest("sharing host or container namespaces is not supported")
	}
	// Keep what Docker would show in inspect, merged as dockerd merges it.
	shown := cfg
	shown.Image = cfg.Image
	shown.Env = spec.Env
	shown.Cmd = spec.Cmd
	shown.Entrypoint = spec.Entrypoint
	shown.WorkingDir = spec.WorkingDir
	shown.User = spec.User
	shown.Labels = spec.Labels
	if len(shown.Volumes) == 0 {
		shown.Volumes = ic.Volumes // dockerd: null when neither has any
	}
	if shown.Hostname == "" {
		shown.Hostname = "" // filled with the id prefix at inspect
	}
	var err error
	if spec.DockerConfig, err = json.Marshal(shown); err != nil {
		return spec, err
	}
	if hc.RestartPolicy.Name == "" {
		hc.RestartPolicy.Name = "no"
	}
	if hc.NetworkMode == "" {
		hc.NetworkMode = "default"
	}
	if hc.NetworkMode == "none" {
		spec.Network = "none"
	}
	hc.Runtime = spec.Runtime
	hostConfigDefaults(hc)
	if spec.DockerHostConfig, err = json.Marshal(hc); err != nil {
		return spec, err
	}
	return spec, nil
}

// hostConfigDefaults fills in what dockerd fills in at create and shows
// in inspect: the shm size, the log driver, the IPC mode, the cgroup
// namespace mode (pods share the node's cgroup namespace, as containers on
// a cgroup v1 host do), swap of twice the memory, and no pids limit for 0.
func hostConfigDefaults(hc *container.HostConfig) {
	if hc.ShmSize == 0 {
		hc.ShmSize = 64 << 20
	}
	if hc.LogConfig.Type == "" {
		hc.LogConfig.Type = "json-file"
	}
	if hc.LogConfig.Config == nil {
		hc.LogConfig.Config = map[string]string{}
	}
	if hc.IpcMode == "" {
		hc.IpcMode = "private"
	}
	if hc.CgroupnsMode == "" {
		hc.CgroupnsMode = "host"
	}
	if hc.Memory > 0 && hc.MemorySwap == 0 {
		hc.MemorySwap = 2 * hc.Memory
	}
	if hc.PidsLimit != nil && *hc.PidsLimit == 0 {
		hc.PidsLimit = nil
	}
}

func uniq(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// mergeEnv merges the image's environment into the user's as dockerd
// does (daemon.merge): the user's variables first, as given, then the
// image's that the user did not set.
func mergeEnv(user, img []string) []string {
	if len(user) == 0 {
		return append([]string(nil), img...)
	}
	out := append([]string(nil), user...)
	set := map[string]bool{}
	for _, kv := range user {
		set[envKey(kv)] = true
	}
	for _, kv := range img {
		if !set[envKey(kv)] {
			out = append(out, kv)
		}
	}
	return out
}

func envKey(kv string) string {
	k, _, _ := strings.Cut(kv, "=")
	return k
}

// newID returns a random 64-hex-digit id, as Docker's container ids.
func newID() string {
	var b [32]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

var (
	nameLeft  = []string{"admiring", "brave", "clever", "dazzling", "eager", "focused", "gallant", "happy", "jolly", "keen", "lucid", "modest", "nifty", "optimistic", "quirky", "relaxed", "serene", "tender", "upbeat", "vibrant", "wizardly", "youthful", "zealous"}
	nameRight = []string{"albattani", "babbage", "curie", "darwin", "euclid", "feynman", "galileo", "hopper", "hypatia", "johnson", "kepler", "lovelace", "meitner", "noether", "pascal", "ramanujan", "shannon", "tesla", "turing", "wozniak", "yalow"}
)

// randomName makes a Docker-style name: adjective_scientist.
func randomName() string {
	l, _ := rand.Int(rand.Reader, big.NewInt(int64(len(nameLeft))))
	r, _ := rand.Int(rand.Reader, big.NewInt(int64(len(nameRight))))
	n, _ := rand.Int(rand.Reader, big.NewInt(10))
	name := nameLeft[l.Int64()] + "_" + nameRight[r.Int64()]
	if n.Int64() > 0 {
		name += fmt.Sprint(n.Int64())
	}
	return name
}

// statusText is the Status column of `docker ps`: "Up 3 minutes",
// "Exited (0) 2 seconds ago", "Created".
func statusText(st types.PodStatus, now time.Time) string {
	switch st.Phase {
	case types.PhaseRunning:
		s := "Up " + humanDuration(now.Sub(st.StartedAt))
		if st.Health != nil && st.Health.Status != "" {
			s += " (" + healthWord(st.Health.Status) + ")"
		}
		if st.Suspended() {
			s += " (suspended)"
		}
		return s
	case types.PhasePaused:
		return "Up " + humanDuration(now.Sub(st.StartedAt)) + " (Paused)"
	case types.PhaseRestarting:
		return fmt.Sprintf("Restarting (%d) %s ago", st.ExitCode, humanDuration(now.Sub(st.FinishedAt)))
	case types.PhaseExited:
		if st.FinishedAt.IsZero() {
			return "Created"
		}
		return fmt.Sprintf("Exited (%d) %s ago", st.ExitCode, humanDuration(now.Sub(st.FinishedAt)))
	case types.PhaseDead:
		return "Dead"
	}
	return "Created"
}

func healthWord(s string) string {
	if s == "starting" {
		return "health: starting"
	}
	return s
}

// humanDuration follows Docker's go-units HumanDuration.
func humanDuration(d time.Duration) string {
	if s := int(d.Seconds()); s < 1 {
		return "Less than a second"
	} else if s == 1 {
		return "1 second"
	} else if s < 60 {
		return fmt.Sprintf("%d seconds", s)
	} else if m := int(d.Minutes()); m == 1 {
		return "About a minute"
	} else if m < 60 {
		return fmt.Sprintf("%d minutes", m)
	} else if h := int(d.Round(time.Hour).Hours()); h == 1 {
		return "About an hour"
	} else if h < 48 {
		return fmt.Sprintf("%d hours", h)
	} else if h < 24*7*2 {
		return fmt.Sprintf("%d days", h/24)
	} else if h < 24*30*2 {
		return fmt.Sprintf("%d weeks", h/24/7)
	} else if h < 24*365*2 {
		return fmt.Sprintf("%d months", h/24/30)
	} else {
		return fmt.Sprintf("%d years", int(d.Hours())/24/365)
	}
}

// dockerState is the State word Docker shows: created, running, paused,
// restarting, exited, dead.
func dockerState(st types.PodStatus) string {
	if st.Phase == types.PhaseExited && st.FinishedAt.IsZero() {
		return "created"
	}
	if st.Phase == "" {
		return "created"
	}
	return string(st.Phase)
}
