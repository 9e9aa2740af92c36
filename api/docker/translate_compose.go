package docker

import (
	"encoding/json"
	"net/netip"
	"sort"
	"strings"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"

	"github.com/macro-cloud/macro/image"
	"github.com/macro-cloud/macro/types"
)

// What compose (and docker run) can ask of a create beyond a bare
// container: mounts, networks, and the HostConfig fields macro refuses by
// name rather than ignore.

// applyMounts fills spec.Mounts and spec.Tmpfs from the request's binds,
// mounts, anonymous volumes and the image's VOLUMEs. Binds of host paths
// are kept: whether the caller may have them is the handler's decision
// (see allowBinds).
func applyMounts(spec *types.PodSpec, req *createRequest, img image.Image) error {
	hc := req.HostConfig
	if hc == nil {
		hc = &container.HostConfig{}
	}
	if len(hc.VolumesFrom) > 0 {
		return badRequest("volumes_from / --volumes-from is not supported: name the volumes instead")
	}
	if hc.VolumeDriver != "" && hc.VolumeDriver != "local" {
		return badRequest("volume driver %q is not supported: only local", hc.VolumeDriver)
	}
	mr, err := parseMounts(hc.Binds, hc.Mounts, spec.Tmpfs, req.Volumes, img.Config.Config.Volumes, true)
	if err != nil {
		return err
	}
	spec.Mounts = mr.Mounts
	if len(mr.Tmpfs) > 0 {
		spec.Tmpfs = mr.Tmpfs
	}
	return nil
}

// hasBinds says whether a spec mounts host paths.
func hasBinds(spec types.PodSpec) (types.Mount, bool) {
	for _, m := range spec.Mounts {
		if m.Type == "bind" {
			return m, true
		}
	}
	return types.Mount{}, false
}

// endpointConfig is NetworkingConfig.EndpointsConfig's value with the
// addresses as strings, so that docker-py's empty strings decode.
type endpointConfig struct {
	Aliases    []string
	IPAMConfig *struct {
		IPv4Address string
		IPv6Address string
	}
	Links []string
}

// applyNetworking fills spec.Networks (by network name; the handler
// resolves them to IDs) and spec.Aliases from HostConfig.NetworkMode and
// NetworkingConfig. A compose service's name is always an alias.
func applyNetworking(spec *types.PodSpec, req *createRequest) error {
	mode := ""
	if req.HostConfig != nil {
		mode = string(req.HostConfig.NetworkMode)
	}
	var nc struct {
		EndpointsConfig map[string]*endpointConfig
	}
	if len(req.NetworkingConfig) > 0 && string(req.NetworkingConfig) != "null" {
		if err := json.Unmarshal(req.NetworkingConfig, &nc); err != nil {
			return badRequest("invalid NetworkingConfig: %v", err)
		}
	}
	spec.Networks = nil
	join := func(name string, ep *endpointConfig) error {
		if name == "host" {
			return badRequest("network host is not supported: pods never share the node's network")
		}
		e, err := endpointFrom(ep)
		if err != nil {
			return err
		}
		if spec.Networks == nil {
			spec.Networks = map[string]types.Endpoint{}
		}
		spec.Networks[name] = e
		return nil
	}
	switch mode {
	case "", "default", "bridge", "none":
	default:
		if err := join(mode, nc.EndpointsConfig[mode]); err != nil {
			return err
		}
	}
	for name, ep := range nc.EndpointsConfig {
		if name == mode || name == "bridge" && (mode == "" || mode == "default" || mode == "bridge") {
			if (name == "bridge" || name == "default") && ep != nil && ep.IPAMConfig != nil && (ep.IPAMConfig.IPv4Address != "" || ep.IPAMConfig.IPv6Address != "") {
				return badRequest("user specified IP address is supported on user defined networks only")
			}
			continue
		}
		if mode == "none" {
			return badRequest("container cannot be disconnected from host network or connected to host network")
		}
		if err := join(name, ep); err != nil {
			return err
		}
	}
	spec.Aliases = podAliases(*spec)
	return nil
}

// endpointFrom checks one endpoint config of a create or connect.
func endpointFrom(ep *endpointConfig) (types.Endpoint, error) {
	var e types.Endpoint
	if ep == nil {
		return e, nil
	}
	if len(ep.Links) > 0 {
		return e, badRequest("links are not supported: containers reach each other by name")
	}
	e.Aliases = append(e.Aliases, ep.Aliases...)
	if ip := ep.IPAMConfig; ip != nil {
		if ip.IPv4Address != "" {
			a, err := netip.ParseAddr(ip.IPv4Address)
			if err != nil || !a.Is4() {
				return e, badRequest("invalid IPv4 address: %s", ip.IPv4Address)
			}
			e.IPv4Address = a.String()
		}
		if ip.IPv6Address != "" {
			a, err := netip.ParseAddr(ip.IPv6Address)
			if err != nil || !a.Is6() {
				return e, badRequest("invalid IPv6 address: %s", ip.IPv6Address)
			}
			e.IPv6Address = a.String()
		}
	}
	return e, nil
}

// podAliases are the names a pod answers to besides its own: its compose
// service and the aliases of all its endpoints, sorted and unique.
func podAliases(spec types.PodSpec) []string {
	var out []string
	if s := spec.Labels["com.docker.compose.service"]; s != "" {
		out = append(out, s)
	}
	for _, e := range spec.Networks {
		out = append(out, e.Aliases...)
	}
	sort.Strings(out)
	out = uniq(out)
	if len(out) == 0 {
		return nil
	}
	return out
}

// unsupportedHostConfig names the HostConfig fields set in hc that macro
// cannot honour, each as the docker CLI flag and the compose key that set
// it, so that nothing a tenant asked for is silently dropped.
func unsupportedHostConfig(hc *container.HostConfig) error {
	if hc == nil {
		return nil
	}
	var bad []string
	check := func(set bool, what string) {
		if set {
			bad = append(bad, what)
		}
	}
	check(len(hc.PortBindings) > 0, "published ports (-p, compose ports:): use a kr.ingress.<port> label")
	check(hc.PublishAllPorts, "publish all ports (-P)")
	check(len(hc.CapAdd) > 0, "cap_add (--cap-add)")
	check(len(hc.CapDrop) > 0, "cap_drop (--cap-drop)")
	check(len(hc.DNS) > 0, "dns (--dns)")
	check(len(hc.DNSOptions) > 0, "dns_opt (--dns-option)")
	check(len(hc.DNSSearch) > 0, "dns_search (--dns-search)")
	check(len(hc.ExtraHosts) > 0, "extra_hosts (--add-host)")
	check(len(hc.GroupAdd) > 0, "group_add (--group-add)")
	check(len(hc.Sysctls) > 0, "sysctls (--sysctl)")
	check(len(hc.SecurityOpt) > 0, "security_opt (--security-opt)")
	check(len(hc.Ulimits) > 0, "ulimits (--ulimit)")
	check(hc.UsernsMode != "", "userns_mode (--userns)")
	check(hc.UTSMode != "", "uts (--uts)")
	check(hc.CgroupParent != "", "cgroup_parent (--cgroup-parent)")
	check(hc.OomKillDisable != nil && *hc.OomKillDisable, "oom_kill_disable (--oom-kill-disable)")
	check(hc.OomScoreAdj != 0, "oom_score_adj (--oom-score-adj)")
	check(hc.CPUQuota != 0 || hc.CPUPeriod != 0, "cpu_quota/cpu_period (--cpu-quota, --cpu-period): use cpus")
	check(hc.CpusetCpus != "" || hc.CpusetMems != "", "cpuset (--cpuset-cpus, --cpuset-mems)")
	check(hc.MemoryReservation != 0, "memory reservation (--memory-reservation, deploy.resources.reservations.memory)")
	check(hc.BlkioWeight != 0 || len(hc.BlkioWeightDevice) > 0 || len(hc.BlkioDeviceReadBps) > 0 || len(hc.BlkioDeviceWriteBps) > 0 || len(hc.BlkioDeviceReadIOps) > 0 || len(hc.BlkioDeviceWriteIOps) > 0, "blkio_config (--blkio-weight, --device-*-bps/iops)")
	check(len(hc.DeviceRequests) > 0, "device requests (--gpus, deploy.resources.reservations.devices)")
	check(len(hc.DeviceCgroupRules) > 0, "device_cgroup_rules (--device-cgroup-rule)")
	check(len(hc.StorageOpt) > 0, "storage_opt (--storage-opt)")
	check(hc.Cgroup != "", "cgroup (--cgroup)")
	check(hc.ShmSize != 0 && hc.ShmSize != 64<<20, "shm_size (--shm-size)")
	check(hc.LogConfig.Type != "" && hc.LogConfig.Type != "json-file", "logging driver "+strings.TrimSpace(hc.LogConfig.Type)+" (--log-driver, compose logging:)")
	if len(bad) == 0 {
		return nil
	}
	return badRequest("not supported by macro: %s", strings.Join(bad, "; "))
}

// joinedNetworks lists, in a container summary's Networks, the networks
// the pod joined by name instead of "bridge" (compose compares them with
// its file to decide whether to recreate a container).
func joinedNetworks(nets map[string]*network.EndpointSettings, spec types.PodSpec, st types.PodStatus) {
	if len(spec.Networks) == 0 {
		return
	}
	delete(nets, networkMode(spec))
	delete(nets, "bridge")
	for name, ep := range networkEndpoints(spec, st) {
		nets[name] = ep
	}
}

// networkEndpoints are the pod's endpoints as inspect shows them, with
// the addresses the node reported for the pod.
func networkEndpoints(spec types.PodSpec, st types.PodStatus) map[string]*network.EndpointSettings {
	out := map[string]*network.EndpointSettings{}
	for name, e := range spec.Networks {
		es := &network.EndpointSettings{NetworkID: e.NetworkID, Aliases: e.Aliases, DNSNames: append([]string{}, e.Aliases...)}
		es.IPAddress, _ = netip.ParseAddr(st.IPv4)
		if a, err := netip.ParseAddr(e.IPv4Address); err == nil && e.Subnet != "" && st.IPv4 != "" {
			// The pod's address on an overlay with a subnet of its own.
			es.IPAddress = a
			if sub, err := netip.ParsePrefix(e.Subnet); err == nil {
				es.IPPrefixLen = sub.Bits()
				es.Gateway = sub.Addr().Next()
			}
		}
		es.GlobalIPv6Address, _ = netip.ParseAddr(st.IPv6)
		if e.Fixed || e.Subnet == "" && e.IPv4Address != "" || e.IPv6Address != "" {
			es.IPAMConfig = &network.EndpointIPAMConfig{}
			es.IPAMConfig.IPv4Address, _ = netip.ParseAddr(e.IPv4Address)
			es.IPAMConfig.IPv6Address, _ = netip.ParseAddr(e.IPv6Address)
		}
		out[name] = es
	}
	return out
}
