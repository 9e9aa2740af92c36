package compose

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/opencontainers/go-digest"
)

// CreateRequest is the body of POST /containers/create, as docker compose
// v2 builds it (pkg/compose/create.go getCreateConfigs) for what kra
// supports.
type CreateRequest struct {
	container.Config
	HostConfig       *container.HostConfig `json:"HostConfig"`
	NetworkingConfig *NetworkingConfig     `json:"NetworkingConfig,omitempty"`
}

// NetworkingConfig is the networks a container joins at create.
type NetworkingConfig struct {
	EndpointsConfig map[string]*EndpointSettings `json:"EndpointsConfig"`
}

// EndpointSettings is a container's endpoint in one network.
type EndpointSettings struct {
	IPAMConfig *EndpointIPAMConfig `json:"IPAMConfig,omitempty"`
	Aliases    []string            `json:"Aliases,omitempty"`
	GwPriority int                 `json:"GwPriority,omitempty"`
}

// EndpointIPAMConfig holds fixed addresses (Kraud's ipv4_address).
type EndpointIPAMConfig struct {
	IPv4Address string `json:"IPv4Address,omitempty"`
	IPv6Address string `json:"IPv6Address,omitempty"`
}

// NetworkCreate is the body of POST /networks/create.
type NetworkCreate struct {
	Name       string            `json:"Name"`
	Driver     string            `json:"Driver,omitempty"`
	Internal   bool              `json:"Internal,omitempty"`
	Attachable bool              `json:"Attachable,omitempty"`
	EnableIPv6 *bool             `json:"EnableIPv6,omitempty"`
	EnableIPv4 *bool             `json:"EnableIPv4,omitempty"`
	IPAM       *IPAM             `json:"IPAM,omitempty"`
	Options    map[string]string `json:"Options,omitempty"`
	Labels     map[string]string `json:"Labels"`
}

// IPAM is a network's address configuration.
type IPAM struct {
	Driver string       `json:"Driver,omitempty"`
	Config []IPAMConfig `json:"Config,omitempty"`
}

// IPAMConfig is one address pool of a network.
type IPAMConfig struct {
	Subnet     string            `json:"Subnet,omitempty"`
	IPRange    string            `json:"IPRange,omitempty"`
	Gateway    string            `json:"Gateway,omitempty"`
	AuxAddress map[string]string `json:"AuxiliaryAddresses,omitempty"`
}

// VolumeCreate is the body of POST /volumes/create.
type VolumeCreate struct {
	Name       string            `json:"Name"`
	Driver     string            `json:"Driver,omitempty"`
	DriverOpts map[string]string `json:"DriverOpts,omitempty"`
	Labels     map[string]string `json:"Labels"`
}

// ServiceHash is com.docker.compose.config-hash: docker compose v2's
// ServiceHash (pkg/compose/hash.go), the SHA-256 of the service's JSON
// without what may change without recreating a container.
func ServiceHash(s types.ServiceConfig) (string, error) {
	s.Build = nil
	s.PullPolicy = ""
	s.Scale = nil
	if s.Deploy != nil {
		d := *s.Deploy
		d.Replicas = nil
		s.Deploy = &d
	}
	s.DependsOn = nil
	s.Profiles = nil
	b, err := json.Marshal(s)
	if err != nil {
		return "", err
	}
	return digest.SHA256.FromBytes(b).Encoded(), nil
}

// NetworkHash and VolumeHash are compose's hashes of a network and a
// volume.
func NetworkHash(n types.NetworkConfig) (string, error) {
	b, err := json.Marshal(n)
	if err != nil {
		return "", err
	}
	return digest.SHA256.FromBytes(b).Encoded(), nil
}

func VolumeHash(v types.VolumeConfig) (string, error) {
	if v.Driver == "" {
		v.Driver = "local"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	return digest.SHA256.FromBytes(b).Encoded(), nil
}

// ContainerName is the name compose gives a service's container number n:
// <project>-<service>-<n>, or the service's container_name.
func ContainerName(p *types.Project, s types.ServiceConfig, n int) string {
	if s.ContainerName != "" {
		return s.ContainerName
	}
	return p.Name + "-" + s.Name + "-" + strconv.Itoa(n)
}

// ImageName is the service's image, or compose's default name for the
// image it would build.
func ImageName(p *types.Project, s types.ServiceConfig) string {
	if s.Image != "" {
		return s.Image
	}
	return p.Name + "-" + s.Name
}

// NetworkRequest is the create request of the project's network key.
func NetworkRequest(p *types.Project, key string) (NetworkCreate, error) {
	n := p.Networks[key]
	hash, err := NetworkHash(n)
	if err != nil {
		return NetworkCreate{}, err
	}
	labels := map[string]string{}
	for k, v := range n.Labels {
		labels[k] = v
	}
	labels[NetworkLabel] = key
	labels[ProjectLabel] = p.Name
	labels[VersionLabel] = ComposeVersion
	labels[ConfigHashLabel] = hash
	req := NetworkCreate{
		Name:       n.Name,
		Driver:     n.Driver,
		Internal:   n.Internal,
		Attachable: n.Attachable,
		EnableIPv6: n.EnableIPv6,
		EnableIPv4: n.EnableIPv4,
		Options:    n.DriverOpts,
		Labels:     labels,
	}
	if n.Ipam.Driver != "" || len(n.Ipam.Config) > 0 {
		req.IPAM = &IPAM{Driver: n.Ipam.Driver}
		for _, c := range n.Ipam.Config {
			req.IPAM.Config = append(req.IPAM.Config, IPAMConfig{Subnet: c.Subnet, IPRange: c.IPRange, Gateway: c.Gateway, AuxAddress: c.AuxiliaryAddresses})
		}
	}
	return req, nil
}

// VolumeRequest is the create request of the project's volume key.
func VolumeRequest(p *types.Project, key string) (VolumeCreate, error) {
	v := p.Volumes[key]
	hash, err := VolumeHash(v)
	if err != nil {
		return VolumeCreate{}, err
	}
	labels := map[string]string{}
	for k, val := range v.Labels {
		labels[k] = val
	}
	labels[VolumeLabel] = key
	labels[ProjectLabel] = p.Name
	labels[VersionLabel] = ComposeVersion
	labels[ConfigHashLabel] = hash
	return VolumeCreate{Name: v.Name, Driver: v.Driver, DriverOpts: v.DriverOpts, Labels: labels}, nil
}

// ContainerRequest translates container number n of service s into its
// create request. imageID is the image's ID (the com.docker.compose.image
// label), uploads the volumes that hold the service's local files (see
// Upload).
func ContainerRequest(p *types.Project, s types.ServiceConfig, n int, imageID string, uploads Uploads) (CreateRequest, error) {
	labels := map[string]string{}
	for k, v := range s.Labels {
		labels[k] = v
	}
	for k, v := range s.CustomLabels {
		labels[k] = v
	}
	if imageID != "" {
		labels[ImageLabel] = imageID
	}
	hashed, err := uploads.rewrite(s)
	if err != nil {
		return CreateRequest{}, err
	}
	hash, err := ServiceHash(hashed)
	if err != nil {
		return CreateRequest{}, err
	}
	labels[ConfigHashLabel] = hash
	labels[NumberLabel] = strconv.Itoa(n)
	var deps []string
	for _, name := range sortedKeys(s.DependsOn) {
		d := s.DependsOn[name]
		deps = append(deps, fmt.Sprintf("%s:%s:%t", name, d.Condition, d.Restart))
	}
	labels[DependsOnLabel] = strings.Join(deps, ",")

	var env []string
	for _, k := range sortedKeys(s.Environment) {
		if v := s.Environment[k]; v == nil {
			env = append(env, k)
		} else {
			env = append(env, k+"="+*v)
		}
	}
	cfg := container.Config{
		Hostname:     s.Hostname,
		Domainname:   s.DomainName,
		User:         s.User,
		Tty:          s.Tty,
		OpenStdin:    s.StdinOpen,
		AttachStdout: true,
		AttachStderr: true,
		Cmd:          s.Command,
		Image:        ImageName(p, s),
		WorkingDir:   s.WorkingDir,
		Entrypoint:   s.Entrypoint,
		Labels:       labels,
		StopSignal:   s.StopSignal,
		Env:          env,
		Healthcheck:  healthcheck(s.HealthCheck),
		StopTimeout:  seconds(s.StopGracePeriod),
	}
	ports := network.PortSet{}
	bindings := network.PortMap{}
	for _, e := range s.Expose {
		port, err := network.ParsePort(e)
		if err != nil {
			return CreateRequest{}, fmt.Errorf("service %s: expose %s: %w", s.Name, e, err)
		}
		ports[port] = struct{}{}
	}
	for _, sp := range s.Ports {
		port, err := network.ParsePort(fmt.Sprintf("%d/%s", sp.Target, sp.Protocol))
		if err != nil {
			return CreateRequest{}, fmt.Errorf("service %s: ports: %w", s.Name, err)
		}
		ports[port] = struct{}{}
		b := network.PortBinding{HostPort: sp.Published}
		if sp.HostIP != "" {
			if err := b.HostIP.UnmarshalText([]byte(sp.HostIP)); err != nil {
				return CreateRequest{}, fmt.Errorf("service %s: ports: host IP %q: %w", s.Name, sp.HostIP, err)
			}
		}
		bindings[port] = append(bindings[port], b)
	}
	if len(ports) > 0 {
		cfg.ExposedPorts = ports
	}

	restart, err := restartPolicy(s)
	if err != nil {
		return CreateRequest{}, fmt.Errorf("service %s: %w", s.Name, err)
	}
	oomKillDisable := false
	hc := &container.HostConfig{
		Init:           s.Init,
		ReadonlyRootfs: s.ReadOnly,
		RestartPolicy:  restart,
		Runtime:        s.Runtime,
		Resources:      resources(s),
	}
	hc.Resources.OomKillDisable = &oomKillDisable
	if len(bindings) > 0 {
		hc.PortBindings = bindings
	}
	tmpfs := map[string]string{}
	for _, t := range s.Tmpfs {
		target, opts, _ := strings.Cut(t, ":")
		tmpfs[target] = opts
	}
	for _, v := range s.Volumes {
		switch v.Type {
		case types.VolumeTypeTmpfs:
			// As a tmpfs entry (what macro's API takes), not a mount.
			var opts []string
			if v.Tmpfs != nil && v.Tmpfs.Size != 0 {
				opts = append(opts, fmt.Sprintf("size=%d", int64(v.Tmpfs.Size)))
			}
			if v.Tmpfs != nil && v.Tmpfs.Mode != 0 {
				opts = append(opts, fmt.Sprintf("mode=%o", v.Tmpfs.Mode))
			}
			if v.ReadOnly {
				opts = append(opts, "ro")
			}
			tmpfs[v.Target] = strings.Join(opts, ",")
		case types.VolumeTypeVolume:
			if v.Source == "" { // anonymous
				hc.Mounts = append(hc.Mounts, mount.Mount{Type: mount.TypeVolume, Target: v.Target, ReadOnly: v.ReadOnly})
				continue
			}
			name := v.Source
			if pv, ok := p.Volumes[v.Source]; ok {
				name = pv.Name
			}
			if v.Volume != nil && (v.Volume.NoCopy || v.Volume.Subpath != "") {
				hc.Mounts = append(hc.Mounts, mount.Mount{Type: mount.TypeVolume, Source: name, Target: v.Target, ReadOnly: v.ReadOnly,
					VolumeOptions: &mount.VolumeOptions{NoCopy: v.Volume.NoCopy, Subpath: v.Volume.Subpath}})
				continue
			}
			hc.Binds = append(hc.Binds, bindString(name, v))
		case types.VolumeTypeBind:
			u, ok := uploads[v.Source]
			if !ok {
				return CreateRequest{}, fmt.Errorf("service %s: %s was not uploaded", s.Name, v.Source)
			}
			if u.Dir {
				hc.Binds = append(hc.Binds, bindString(u.Volume, v))
			} else {
				hc.Mounts = append(hc.Mounts, mount.Mount{Type: mount.TypeVolume, Source: u.Volume, Target: v.Target, ReadOnly: v.ReadOnly,
					VolumeOptions: &mount.VolumeOptions{Subpath: u.Base}})
			}
		}
	}
	if len(tmpfs) > 0 {
		hc.Tmpfs = tmpfs
	}

	req := CreateRequest{Config: cfg, HostConfig: hc}
	switch {
	case s.NetworkMode != "":
		hc.NetworkMode = container.NetworkMode(s.NetworkMode)
	case len(p.Networks) == 0:
		hc.NetworkMode = "none"
	default:
		keys := s.NetworksByPriority()
		primary := "default"
		if len(keys) > 0 {
			primary = keys[0]
		} else {
			keys = []string{"default"}
		}
		hc.NetworkMode = container.NetworkMode(p.Networks[primary].Name)
		req.NetworkingConfig = &NetworkingConfig{EndpointsConfig: map[string]*EndpointSettings{}}
		for _, key := range keys {
			ep := &EndpointSettings{Aliases: []string{ContainerName(p, s, n), s.Name}}
			if c := s.Networks[key]; c != nil {
				ep.Aliases = append(ep.Aliases, c.Aliases...)
				if c.Ipv4Address != "" || c.Ipv6Address != "" {
					ep.IPAMConfig = &EndpointIPAMConfig{IPv4Address: c.Ipv4Address, IPv6Address: c.Ipv6Address}
				}
			}
			req.NetworkingConfig.EndpointsConfig[p.Networks[key].Name] = ep
		}
	}
	return req, nil
}

func bindString(name string, v types.ServiceVolumeConfig) string {
	access := "rw"
	if v.ReadOnly {
		access = "ro"
	}
	return name + ":" + v.Target + ":" + access
}

// restartPolicy is compose's getRestartPolicy: restart:, overridden by
// deploy.restart_policy.
func restartPolicy(s types.ServiceConfig) (container.RestartPolicy, error) {
	var rp container.RestartPolicy
	if s.Restart != "" {
		name, count, _ := strings.Cut(s.Restart, ":")
		rp.Name = restartMode(name)
		if count != "" {
			n, err := strconv.Atoi(count)
			if err != nil || n < 0 {
				return rp, fmt.Errorf("restart %s: invalid maximum retry count", s.Restart)
			}
			rp.MaximumRetryCount = n
		}
	}
	if s.Deploy != nil && s.Deploy.RestartPolicy != nil {
		rp = container.RestartPolicy{Name: restartMode(s.Deploy.RestartPolicy.Condition)}
		if m := s.Deploy.RestartPolicy.MaxAttempts; m != nil {
			rp.MaximumRetryCount = int(*m)
		}
	}
	switch rp.Name {
	case "", container.RestartPolicyDisabled, container.RestartPolicyAlways, container.RestartPolicyUnlessStopped, container.RestartPolicyOnFailure:
	default:
		return rp, fmt.Errorf("restart %s: unknown policy; use no, always, on-failure or unless-stopped", rp.Name)
	}
	return rp, nil
}

func restartMode(c string) container.RestartPolicyMode {
	switch c {
	case "none", "no":
		return container.RestartPolicyDisabled
	case "any", "always":
		return container.RestartPolicyAlways
	}
	return container.RestartPolicyMode(c)
}

// resources is compose's getDeployResources for the keys kra honours:
// mem_limit, cpus, pids_limit, overridden by deploy.resources.limits.
func resources(s types.ServiceConfig) container.Resources {
	r := container.Resources{
		Memory:   int64(s.MemLimit),
		NanoCPUs: int64(s.CPUS * 1e9),
	}
	if s.PidsLimit != 0 {
		n := s.PidsLimit
		r.PidsLimit = &n
	}
	if s.Deploy != nil && s.Deploy.Resources.Limits != nil {
		l := s.Deploy.Resources.Limits
		if l.MemoryBytes != 0 {
			r.Memory = int64(l.MemoryBytes)
		}
		if l.NanoCPUs != 0 {
			r.NanoCPUs = int64(l.NanoCPUs * 1e9)
		}
		if l.Pids > 0 {
			n := l.Pids
			r.PidsLimit = &n
		}
	}
	return r
}

func healthcheck(h *types.HealthCheckConfig) *container.HealthConfig {
	if h == nil {
		return nil
	}
	d := func(p *types.Duration) time.Duration {
		if p == nil {
			return 0
		}
		return time.Duration(*p)
	}
	out := &container.HealthConfig{
		Test:          h.Test,
		Interval:      d(h.Interval),
		Timeout:       d(h.Timeout),
		StartPeriod:   d(h.StartPeriod),
		StartInterval: d(h.StartInterval),
	}
	if h.Retries != nil {
		out.Retries = int(*h.Retries)
	}
	if h.Disable {
		out.Test = []string{"NONE"}
	}
	return out
}

func seconds(d *types.Duration) *int {
	if d == nil {
		return nil
	}
	s := int(time.Duration(*d).Seconds())
	return &s
}

// replicas is how many containers the service runs (deploy.replicas,
// scale), 1 by default.
func replicas(s types.ServiceConfig) int {
	return s.GetScale()
}
