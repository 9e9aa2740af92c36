// Package net is the home of a node's side of the tenant VPCs; the code
// lives in its subpackages:
//
//   - ipam: who gets which address (tenant /48, namespace /64 and IPv4 /24,
//     pod addresses), pure and persisted by the caller;
//   - router: the node's router network namespace, the pods' network
//     namespaces and veth pairs, routes and nftables rules;
//   - dns: the node's DNS server, answering pod names from a Directory.
//
// The multi-node mesh (WireGuard between the routers of the nodes) is the
// cluster issue's; everything here is shaped so that it plugs in at the
// router's uplink and at the Directory the DNS server reads.
package net
