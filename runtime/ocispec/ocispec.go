package ocispec

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/macro-cloud/macro/types"
	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// DefaultCgroupParent is the cgroup (v1, cgroupfs driver) under which every
// container's cgroup is made, as dockerd uses /docker.
const DefaultCgroupParent = "/macro"

// DefaultPath is the PATH of a container whose image sets none.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// DefaultShmSize is the size of /dev/shm, Docker's 64 MiB.
const DefaultShmSize = 64 << 20

// DefaultNofile is RLIMIT_NOFILE (soft and hard) of a container's process:
// what dockerd 20.10's containers inherit from containerd (LimitNOFILE=infinity,
// capped by fs.nr_open).
const DefaultNofile = 1048576

// InitPath is where an init binary is bind-mounted when Spec.Init asks for
// one: Docker's path for docker-init (tini).
const InitPath = "/sbin/docker-init"

// ImageConfig is the part of an image's config that shapes a container.
type ImageConfig struct {
	User         string   `json:"user,omitempty"`
	Env          []string `json:"env,omitempty"`
	Entrypoint   []string `json:"entrypoint,omitempty"`
	Cmd          []string `json:"cmd,omitempty"`
	WorkingDir   string   `json:"workingDir,omitempty"`
	StopSignal   string   `json:"stopSignal,omitempty"`
	ExposedPorts []string `json:"exposedPorts,omitempty"` // "80/tcp"; unused by the spec
}

// EtcFiles are host paths of files bind-mounted over the container's
// /etc/hosts, /etc/hostname and /etc/resolv.conf. Empty ones are skipped.
type EtcFiles struct {
	Hosts      string
	Hostname   string
	ResolvConf string
}

// Host is what the machine supports, where it changes the spec.
type Host struct {
	// SwapLimit: the memory cgroup has memory.memsw.* (swap accounting), so
	// memory+swap can be limited.
	SwapLimit bool
	// PingGroupRange and UnprivilegedPortStart: the net.ipv4 sysctls Docker
	// sets in a new network namespace exist.
	PingGroupRange        bool
	UnprivilegedPortStart bool
	// Nofile is the RLIMIT_NOFILE a container can be given: DefaultNofile
	// (capped by fs.nr_open) when this process may raise limits
	// (CAP_SYS_RESOURCE), else its own hard limit, which runc cannot exceed.
	Nofile uint64
}

// DetectHost looks at this machine once.
var DetectHost = sync.OnceValue(func() Host {
	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }
	return Host{
		SwapLimit:             exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"),
		PingGroupRange:        exists("/proc/sys/net/ipv4/ping_group_range"),
		UnprivilegedPortStart: exists("/proc/sys/net/ipv4/ip_unprivileged_port_start"),
		Nofile:                detectNofile(),
	}
})

func detectNofile() uint64 {
	limit := uint64(DefaultNofile)
	if b, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
		if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil && n < limit {
			limit = n
		}
	}
	if hasCapSysResource() {
		return limit
	}
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err == nil && rl.Max < limit {
		limit = rl.Max
	}
	return limit
}

// hasCapSysResource reports whether CAP_SYS_RESOURCE is in this process's
// effective set.
func hasCapSysResource() bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && caps&(1<<unix.CAP_SYS_RESOURCE) != 0
		}
	}
	return false
}

// Input is everything Generate needs.
type Input struct {
	// ID is the container id; its cgroup is CgroupParent/ID.
	ID    string
	Spec  types.PodSpec
	Image ImageConfig
	// Rootfs is the absolute path of the mounted root filesystem; the user
	// is resolved against its /etc/passwd and /etc/group.
	Rootfs string
	// Hostname defaults to Spec.Hostname, then to the first 12 characters of ID.
	Hostname string
	EtcFiles EtcFiles
	// CgroupParent defaults to DefaultCgroupParent.
	CgroupParent string
	// InitPath is a host path of a tini-compatible init, bind-mounted at
	// /sbin/docker-init and run as PID 1 when Spec.Init is set. Without
	// one, Spec.Init is ignored.
	InitPath string
	// Host defaults to DetectHost().
	Host *Host
	// Volumes are the pod's volume and bind mounts, resolved by the node.
	Volumes []VolumeMount
}

// defaultCapabilities are Docker's (bounding, effective and permitted;
// neither inheritable nor ambient since dockerd 20.10.14).
func defaultCapabilities() []string {
	return []string{
		"CAP_CHOWN",
		"CAP_DAC_OVERRIDE",
		"CAP_FSETID",
		"CAP_FOWNER",
		"CAP_MKNOD",
		"CAP_NET_RAW",
		"CAP_SETGID",
		"CAP_SETUID",
		"CAP_SETFCAP",
		"CAP_SETPCAP",
		"CAP_NET_BIND_SERVICE",
		"CAP_SYS_CHROOT",
		"CAP_KILL",
		"CAP_AUDIT_WRITE",
	}
}

// MaskedPaths are hidden from the container (Docker's defaults).
var MaskedPaths = []string{
	"/proc/asound",
	"/proc/acpi",
	"/proc/kcore",
	"/proc/keys",
	"/proc/latency_stats",
	"/proc/timer_list",
	"/proc/timer_stats",
	"/proc/sched_debug",
	"/proc/scsi",
	"/sys/firmware",
	"/sys/devices/virtual/powercap",
}

// ReadonlyPaths are read-only in the container (Docker's defaults).
var ReadonlyPaths = []string{
	"/proc/bus",
	"/proc/fs",
	"/proc/irq",
	"/proc/sys",
	"/proc/sysrq-trigger",
}

func defaultMounts() []specs.Mount {
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"ro", "nosuid", "noexec", "nodev"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=" + strconv.Itoa(DefaultShmSize)}},
	}
}

// defaultDeviceRules deny every device but the ones runc creates (Docker's
// list; runc appends its own default allow-list after these).
func defaultDeviceRules() []specs.LinuxDeviceCgroup {
	c := func(allow bool, major, minor int64) specs.LinuxDeviceCgroup {
		return specs.LinuxDeviceCgroup{Allow: allow, Type: "c", Major: &major, Minor: &minor, Access: "rwm"}
	}
	return []specs.LinuxDeviceCgroup{
		{Allow: false, Access: "rwm"},
		c(true, 1, 5),     // /dev/zero
		c(true, 1, 3),     // /dev/null
		c(true, 1, 9),     // /dev/urandom
		c(true, 1, 8),     // /dev/random
		c(true, 5, 0),     // /dev/tty
		c(true, 5, 1),     // /dev/console
		c(false, 10, 229), // /dev/fuse
	}
}

// Generate builds the OCI runtime-spec of a container. It reads the user
// and group files of in.Rootfs and nothing else of the rootfs.
func Generate(in Input) (*specs.Spec, error) {
	if err := checkID(in.ID); err != nil {
		return nil, err
	}
	if !filepath.IsAbs(in.Rootfs) {
		return nil, fmt.Errorf("rootfs %q is not an absolute path", in.Rootfs)
	}
	if err := Validate(in.Spec); err != nil {
		return nil, err
	}
	host := DetectHost()
	if in.Host != nil {
		host = *in.Host
	}
	sp := in.Spec

	args, err := ProcessArgs(sp, in.Image)
	if err != nil {
		return nil, err
	}
	cwd, err := WorkingDir(sp, in.Image)
	if err != nil {
		return nil, err
	}
	userSpec := sp.User
	if userSpec == "" {
		userSpec = in.Image.User
	}
	uid, gid, gids, home, err := ResolveUser(in.Rootfs, userSpec)
	if err != nil {
		return nil, err
	}
	hostname := in.Hostname
	if hostname == "" {
		hostname = sp.Hostname
	}
	if hostname == "" {
		hostname = in.ID[:min(12, len(in.ID))]
	}

	s := &specs.Spec{
		Version:  specs.Version,
		Hostname: hostname,
		Root:     &specs.Root{Path: in.Rootfs, Readonly: sp.ReadOnly},
	}
	caps := defaultCapabilities()
	nofile := host.Nofile
	if nofile == 0 {
		nofile = DefaultNofile
	}
	oomScoreAdj := 0
	s.Process = &specs.Process{
		Terminal: sp.Tty,
		User:     specs.User{UID: uid, GID: gid, AdditionalGids: gids},
		Args:     args,
		Env:      Env(sp, in.Image, hostname, home),
		Cwd:      cwd,
		Capabilities: &specs.LinuxCapabilities{
			Bounding:  caps,
			Effective: caps,
			Permitted: caps,
		},
		Rlimits:     []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: nofile, Soft: nofile}},
		OOMScoreAdj: &oomScoreAdj,
	}
	if sp.Init && in.InitPath != "" {
		s.Process.Args = append([]string{InitPath, "--"}, args...)
	}

	mounts, err := containerMounts(in)
	if err != nil {
		return nil, err
	}
	s.Mounts = mounts

	cgroupParent := in.CgroupParent
	if cgroupParent == "" {
		cgroupParent = DefaultCgroupParent
	}
	// A relative path would be taken relative to runc's own cgroup.
	cgroupParent = path.Join("/", cgroupParent)
	s.Linux = &specs.Linux{
		CgroupsPath: path.Join(cgroupParent, in.ID),
		Resources:   resources(sp.Resources, host),
		Namespaces: []specs.LinuxNamespace{
			{Type: specs.MountNamespace},
			{Type: specs.NetworkNamespace},
			{Type: specs.UTSNamespace},
			{Type: specs.PIDNamespace},
			{Type: specs.IPCNamespace},
		},
		Devices:       []specs.LinuxDevice{},
		MaskedPaths:   append([]string(nil), MaskedPaths...),
		ReadonlyPaths: append([]string(nil), ReadonlyPaths...),
		Sysctl:        map[string]string{},
	}
	// Docker's sysctls for a private network namespace: ping without
	// CAP_NET_RAW, ports below 1024 without CAP_NET_BIND_SERVICE.
	if host.PingGroupRange {
		s.Linux.Sysctl["net.ipv4.ping_group_range"] = "0 2147483647"
	}
	if host.UnprivilegedPortStart {
		s.Linux.Sysctl["net.ipv4.ip_unprivileged_port_start"] = "0"
	}
	if sp.Domainname != "" {
		s.Linux.Sysctl["kernel.domainname"] = sp.Domainname
	}
	s.Linux.Seccomp, err = seccomp.GetDefaultProfile(s)
	if err != nil {
		return nil, fmt.Errorf("seccomp profile: %w", err)
	}
	return s, nil
}

// checkID refuses ids that could not name a cgroup directory of their own.
func checkID(id string) error {
	if id == "" {
		return errors.New("container id is empty")
	}
	if id == "." || id == ".." || len(id) > 128 {
		return fmt.Errorf("invalid container id %q", id)
	}
	for _, c := range id {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("invalid container id %q", id)
		}
	}
	return nil
}

// containerMounts are Docker's default mounts, minus those a tenant's
// mount replaces, followed by the tenant's mounts (etc files, tmpfs,
// init) sorted by depth, so that a parent is mounted before its children.
func containerMounts(in Input) ([]specs.Mount, error) {
	sp := in.Spec
	var user []specs.Mount
	bind := func(src, dst string) {
		// A tenant's own mount at the same place wins, as in Docker.
		if _, ok := sp.Tmpfs[dst]; ok || src == "" {
			return
		}
		opts := []string{"rbind"}
		if sp.ReadOnly {
			opts = append(opts, "ro")
		}
		opts = append(opts, "rprivate")
		user = append(user, specs.Mount{Destination: dst, Type: "bind", Source: src, Options: opts})
	}
	bind(in.EtcFiles.ResolvConf, "/etc/resolv.conf")
	bind(in.EtcFiles.Hostname, "/etc/hostname")
	bind(in.EtcFiles.Hosts, "/etc/hosts")

	dests := make([]string, 0, len(sp.Tmpfs))
	for d := range sp.Tmpfs {
		dests = append(dests, d)
	}
	sort.Strings(dests)
	for _, d := range dests {
		opts, err := ParseTmpfsOptions(sp.Tmpfs[d])
		if err != nil {
			return nil, err
		}
		user = append(user, specs.Mount{Destination: path.Clean(d), Type: "tmpfs", Source: "tmpfs", Options: opts})
	}
	vols, err := volumeMounts(in)
	if err != nil {
		return nil, err
	}
	user = append(user, vols...)
	if sp.Init && in.InitPath != "" {
		user = append(user, specs.Mount{Destination: InitPath, Type: "bind", Source: in.InitPath, Options: []string{"bind", "ro"}})
	}
	sort.SliceStable(user, func(i, j int) bool {
		return depth(user[i].Destination) < depth(user[j].Destination)
	})

	taken := map[string]bool{}
	for _, m := range user {
		taken[m.Destination] = true
	}
	var mounts []specs.Mount
	for _, m := range defaultMounts() {
		if taken[m.Destination] || (taken["/dev"] && strings.HasPrefix(m.Destination, "/dev/")) {
			continue
		}
		// A read-only rootfs makes the default mounts read-only too, except
		// those a process needs to write (Docker's list); /sys and
		// /sys/fs/cgroup already are.
		if sp.ReadOnly {
			switch m.Destination {
			case "/proc", "/dev/pts", "/dev/shm", "/dev/mqueue", "/dev":
			default:
				if !contains(m.Options, "ro") {
					m.Options = append(m.Options, "ro")
				}
			}
		}
		mounts = append(mounts, m)
	}
	return append(mounts, user...), nil
}

func depth(p string) int { return strings.Count(path.Clean(p), "/") }

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// resources are the cgroup (v1) limits, as dockerd sets them.
func resources(r types.Resources, host Host) *specs.LinuxResources {
	res := &specs.LinuxResources{Devices: defaultDeviceRules()}
	if r.MemoryBytes > 0 {
		limit := r.MemoryBytes
		res.Memory = &specs.LinuxMemory{Limit: &limit}
		if host.SwapLimit {
			// Docker: swap unset means memory+swap = twice the memory.
			swap := r.MemorySwapBytes
			if swap == 0 {
				swap = 2 * limit
			}
			res.Memory.Swap = &swap
		}
	}
	if r.NanoCPUs > 0 || r.CPUShares > 0 {
		res.CPU = &specs.LinuxCPU{}
		if r.CPUShares > 0 {
			shares := uint64(r.CPUShares)
			res.CPU.Shares = &shares
		}
		if r.NanoCPUs > 0 {
			period := uint64(100000)
			quota := r.NanoCPUs * int64(period) / 1e9
			res.CPU.Period = &period
			res.CPU.Quota = &quota
		}
	}
	if r.PidsLimit != 0 {
		limit := r.PidsLimit
		if limit < 0 {
			limit = -1
		}
		res.Pids = &specs.LinuxPids{Limit: &limit}
	}
	return res
}
