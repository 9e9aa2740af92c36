package types

import "net/netip"

// NamespaceNet is a namespace's share of its tenant's VPC as the cluster
// recorded it (store: /macro/vpc/<tenant>/<namespace>), the same on every
// node. It is chosen once, with the namespace's first pod, and kept until
// the namespace is deleted.
type NamespaceNet struct {
	Tenant string `json:"tenant"`
	Name   string `json:"name"`
	// Subnet6ID is the 16 bits after the tenant's /48 that make the
	// namespace's IPv6 /64 (the /48 derives from the cluster's and the
	// tenant's names alone: net/ipam.TenantPrefix).
	Subnet6ID uint16 `json:"subnet6ID"`
	// Subnet4 is the namespace's IPv4 /24 of 10.0.0.0/8, its default
	// overlay: unique among the tenant's namespaces.
	Subnet4 netip.Prefix `json:"subnet4"`
}

// PodVPC is a pod's default place in its tenant's VPC, chosen by the store
// when the pod is created and kept for the pod's life, wherever it runs:
// its namespace's subnets (a copy of its NamespaceNet, so that a node wires
// the pod from the pod alone) and its default IPv4 address, unique among
// the tenant's pods. The pod's IPv6 address derives from its ID in the
// namespace's /64 (net/ipam.PodIPv6).
type PodVPC struct {
	Subnet6ID uint16       `json:"subnet6ID"`
	Subnet4   netip.Prefix `json:"subnet4"`
	IPv4      netip.Addr   `json:"ipv4"`
}
