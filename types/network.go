package types

import "time"

// Network is a tenant's network as the Docker API shows it: one of the
// namespace's IPv4 overlays. Compose names it "<project>_default"; it
// belongs to the project's namespace and is found by that name.
type Network struct {
	ID        string            `json:"id"` // 64 hex digits, chosen by the API
	Name      string            `json:"name"`
	Tenant    string            `json:"tenant"`
	Namespace string            `json:"namespace"`
	Driver    string            `json:"driver"` // ipip; "bridge" as the client asked
	Labels    map[string]string `json:"labels,omitempty"`
	Options   map[string]string `json:"options,omitempty"`
	Internal  bool              `json:"internal,omitempty"`
	// Attachable is kept for inspect; every network is attachable.
	Attachable bool        `json:"attachable,omitempty"`
	EnableIPv6 bool        `json:"enableIPv6,omitempty"`
	IPAM       []IPAMRange `json:"ipam,omitempty"`
	Created    time.Time   `json:"created"`
}

// IPAMRange is one IPAM config entry of a network: its subnet, the range
// addresses are given from, and the gateway.
type IPAMRange struct {
	Subnet  string `json:"subnet,omitempty"`
	IPRange string `json:"ipRange,omitempty"`
	Gateway string `json:"gateway,omitempty"`
}

// Endpoint is a pod's membership in a network: the names it answers to
// there and, on a network with a subnet, the pod's IPv4 address in it:
// the fixed one it asked for (compose's ipv4_address, --ip) or the one the
// API gave it. Fixed records that the tenant chose the address.
type Endpoint struct {
	NetworkID   string   `json:"networkID"`
	Aliases     []string `json:"aliases,omitempty"`
	IPv4Address string   `json:"ipv4Address,omitempty"`
	IPv6Address string   `json:"ipv6Address,omitempty"`
	// Subnet is the network's IPv4 subnet when the pod joined it.
	Subnet string `json:"subnet,omitempty"`
	Fixed  bool   `json:"fixed,omitempty"`
}
