package docker

import (
	"net/netip"

	"github.com/macro-cloud/macro/net/ipam"
	"github.com/macro-cloud/macro/types"
)

// networkSettings is inspect's NetworkSettings: the pod's VPC addresses
// (reported by its node) under the network its mode names, "bridge" for
// the namespace's default one as ps shows it, and in the top-level fields
// that `docker inspect -f '{{.NetworkSettings.IPAddress}}'` reads.
func networkSettings(p types.Pod, st types.PodStatus) map[string]any {
	mode := networkMode(p.Spec)
	name := mode
	if name == "default" {
		name = "bridge"
	}
	ep := map[string]any{
		"IPAMConfig": nil, "Links": nil, "Aliases": nil, "MacAddress": "", "DriverOpts": nil,
		"NetworkID": "", "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
		"IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DNSNames": nil,
	}
	ns := map[string]any{
		"Bridge": "", "SandboxID": "", "HairpinMode": false, "Ports": map[string]any{}, "SandboxKey": "",
		"Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "",
		"GlobalIPv6PrefixLen": 0, "MacAddress": "", "EndpointID": "",
	}
	if mode != "none" {
		if len(p.Spec.Aliases) > 0 {
			ep["Aliases"] = p.Spec.Aliases
		}
		ep["DNSNames"] = append([]string{p.Name}, p.Spec.Aliases...)
		if a, err := netip.ParseAddr(st.IPv4); err == nil {
			for k, v := range map[string]any{"IPAddress": a.String(), "IPPrefixLen": 24, "Gateway": ipam.Gateway4(a).String()} {
				ep[k], ns[k] = v, v
			}
		}
		if a, err := netip.ParseAddr(st.IPv6); err == nil {
			for k, v := range map[string]any{"GlobalIPv6Address": a.String(), "GlobalIPv6PrefixLen": 64, "IPv6Gateway": ipam.Gateway6.String()} {
				ep[k], ns[k] = v, v
			}
		}
	}
	ns["Networks"] = map[string]any{name: ep}
	return ns
}
