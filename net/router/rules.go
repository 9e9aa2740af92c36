package router

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

// rulePod is one pod as the router's nftables rules see it.
type rulePod struct {
	Veth   string // router-side interface
	Tenant int    // tenant index: mark, conntrack zone, routing table
	IPv6   netip.Addr
	IPv4   netip.Addr
	// Overlays are its addresses on overlays with a subnet.
	Overlays []netip.Addr
	// Open: the outside may open connections to IPv6 (kr.network.policy=open).
	Open bool
}

// Tenant indexes become marks, conntrack zones and routing tables.
func tenantMark(idx int) uint32  { return 0x4d0000 + uint32(idx) }
func tenantTable(idx int) uint32 { return 10000 + uint32(idx) }

// routerRules is the whole nftables table of the router namespace,
// replaced atomically on every change (nft -f applies a file as one
// transaction). It enforces:
//
//   - no spoofing: a pod's packets carry its own addresses (link-local
//     only toward link-local and multicast, for neighbour discovery);
//   - tenants apart: a pod's packets are marked with its tenant; they are
//     routed by the tenant's table (fwmark rules) and forwarded only to
//     pods whose (interface, tenant) pair matches, or out of the uplink when
//     the tenant has egress (refused at once, admin-prohibited, when it has
//     not); from the uplink only replies come in, and new IPv6 connections
//     to pods with kr.network.policy=open (set open6);
//   - the router itself answers pods only ICMP, neighbour discovery and DNS
//     on the DNS address;
//   - conntrack zones per tenant in the original direction, so tenants'
//     overlapping IPv4 flows never share an entry and masquerading keeps
//     their replies apart; replies to the router's own answers go back
//     through the asker's tenant table (ct mark restores the mark).
func routerRules(pods []rulePod, egress []int, uplink string, uplinkAddr, dnsAddr netip.Addr, mesh meshRuleSet) string {
	sort.Slice(pods, func(i, j int) bool { return pods[i].Veth < pods[j].Veth })
	var tenantOf, zoneOf, podMark, src4, src6, open6 []string
	for _, p := range pods {
		m := tenantMark(p.Tenant)
		tenantOf = append(tenantOf, fmt.Sprintf("%q : 0x%x", p.Veth, m))
		zoneOf = append(zoneOf, fmt.Sprintf("%q : %d", p.Veth, p.Tenant))
		podMark = append(podMark, fmt.Sprintf("%q . 0x%x", p.Veth, m))
		if p.IPv4.IsValid() {
			src4 = append(src4, fmt.Sprintf("%q . %s", p.Veth, p.IPv4))
		}
		for _, a := range p.Overlays {
			src4 = append(src4, fmt.Sprintf("%q . %s", p.Veth, a))
		}
		if p.IPv6.IsValid() {
			src6 = append(src6, fmt.Sprintf("%q . %s", p.Veth, p.IPv6))
			if p.Open {
				open6 = append(open6, fmt.Sprintf("%q . %s", p.Veth, p.IPv6))
			}
		}
	}
	var eg []string
	for _, t := range egress {
		eg = append(eg, fmt.Sprintf("0x%x", tenantMark(t)))
	}
	elems := func(e []string) string {
		if len(e) == 0 {
			return ""
		}
		return " elements = { " + strings.Join(e, ", ") + " };"
	}
	var meshSrc, meshMark, meshDst []string
	for _, a := range sortedAddrs(mesh.Src) {
		m := tenantMark(mesh.Src[a])
		meshSrc = append(meshSrc, a.String())
		meshMark = append(meshMark, fmt.Sprintf("%s : 0x%x", a, m))
		meshDst = append(meshDst, fmt.Sprintf("%s . 0x%x", a, m))
	}
	dev := mesh.Dev
	if dev == "" {
		dev = meshName // no device: the rules match nothing
	}
	var vxOf, vxZone, vxMark, vxInE []string
	for _, d := range sortedDevs(mesh.Carriers) {
		idx := mesh.Carriers[d]
		vxOf = append(vxOf, fmt.Sprintf("%q : 0x%x", d, tenantMark(idx)))
		vxZone = append(vxZone, fmt.Sprintf("%q : %d", d, idx))
		vxMark = append(vxMark, fmt.Sprintf("%q . 0x%x", d, tenantMark(idx)))
	}
	for _, v := range mesh.In {
		b := v.src.As4()
		vxInE = append(vxInE, fmt.Sprintf("%s . 0x%06x . 0x%02x%02x%02x%02x", v.node, v.vni, b[0], b[1], b[2], b[3]))
	}
	// What reaches the node's mesh address: VXLAN (flag I, an IPv4
	// frame inside) from a node, VNI and inner source that vx_in holds,
	// nothing else. Offsets from the UDP header: VXLAN's flags at byte
	// 8, its VNI at 12, the inner Ethernet type at 28, the inner IPv4
	// source at 42.
	carrierIn := "# no mesh address: no carrier"
	if mesh.Addr.IsValid() {
		carrierIn = fmt.Sprintf("ip6 daddr %[1]s udp dport %[2]d @th,64,8 0x08 @th,224,16 0x0800 ip6 saddr . @th,96,24 . @th,336,32 @vx_in return\n"+
			"\t\tip6 daddr %[1]s counter name vx_refused drop", mesh.Addr, vxlanPort)
	}
	carrierAccept := "# no carrier"
	if mesh.Addr.IsValid() {
		carrierAccept = fmt.Sprintf("iifname \"MESHDEV\" ip6 daddr %s udp dport %d accept", mesh.Addr, vxlanPort)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `table inet macro {}
delete table inet macro
table inet macro {
	map tenant_of { type ifname : mark;%s }
	map zone_of { typeof iifname : ct zone;%s }
	set pod_mark { type ifname . mark;%s }
	set src4 { type ifname . ipv4_addr;%s }
	set src6 { type ifname . ipv6_addr;%s }
	set egress { type mark;%s }
	set open6 { type ifname . ipv6_addr;%s }
	set mesh_src { type ipv6_addr;%s }
	map mesh_mark { type ipv6_addr : mark;%s }
	set mesh_dst { type ipv6_addr . mark;%s }
	map vx_of { type ifname : mark;%s }
	map vx_zone { typeof iifname : ct zone;%s }
	set vx_mark { type ifname . mark;%s }
	set vx_in { typeof ip6 saddr . @th,96,24 . @th,336,32;%s }
	counter vx_refused {}

	chain raw {
		type filter hook prerouting priority raw; policy accept;
		iifname @tenant_of jump pod_raw
		iifname "MESHDEV" jump mesh_raw
		iifname @vx_of jump vx_raw
	}
	chain mesh_raw {
		CARRIERIN
		meta nfproto ipv6 ip6 saddr @mesh_src return
		drop
	}
	chain vx_raw {
		meta nfproto != ipv4 drop
		ct original zone set iifname map @vx_zone
	}
	chain pod_raw {
		ip6 saddr fe80::/10 ip6 daddr { fe80::/10, ff02::/16 } return
		meta nfproto ipv4 iifname . ip saddr != @src4 drop
		meta nfproto ipv6 iifname . ip6 saddr != @src6 drop
		ct original zone set iifname map @zone_of
	}
	chain mangle {
		type filter hook prerouting priority mangle; policy accept;
		iifname @tenant_of meta mark set iifname map @tenant_of ct mark set meta mark return
		iifname "MESHDEV" meta mark set ip6 saddr map @mesh_mark ct mark set meta mark return
		iifname @vx_of meta mark set iifname map @vx_of ct mark set meta mark return
		iifname %q meta mark set ct mark
	}
	chain output_route {
		type route hook output priority mangle; policy accept;
		ct mark != 0 meta mark set ct mark
	}
	chain input {
		type filter hook input priority filter; policy drop;
		iif lo accept
		ct state established,related accept
		iifname @tenant_of ip daddr %s drop
		iifname @tenant_of icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, echo-request } accept
		iifname @tenant_of icmp type echo-request accept
		iifname @tenant_of ip6 daddr %s udp dport 53 accept
		iifname @tenant_of ip6 daddr %s tcp dport 53 accept
		iifname @tenant_of meta nfproto ipv4 udp dport 53 accept
		iifname @tenant_of meta nfproto ipv4 tcp dport 53 accept
		iifname %[19]q icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept
		CARRIERACCEPT
	}
	chain forward {
		type filter hook forward priority filter; policy drop;
		oifname "MESHDEV" tcp flags syn tcp option maxseg size set rt mtu
		oifname @vx_of tcp flags syn tcp option maxseg size set rt mtu
		iifname @tenant_of oifname . meta mark @pod_mark accept
		iifname "MESHDEV" oifname . meta mark @pod_mark accept
		iifname @vx_of oifname . meta mark @pod_mark accept
		iifname @tenant_of oifname . meta mark @vx_mark accept
		iifname @tenant_of oifname "MESHDEV" ip6 daddr . meta mark @mesh_dst accept
		iifname @tenant_of oifname %q meta mark @egress accept
		iifname @tenant_of oifname %[19]q ct state established,related accept
		iifname %q oifname @tenant_of ct state established,related accept
		iifname %[20]q ct state new oifname . ip6 daddr @open6 accept
		iifname @tenant_of oifname %[20]q reject with icmpx type admin-prohibited
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname %q masquerade
	}
}
`, elems(tenantOf), elems(zoneOf), elems(podMark), elems(src4), elems(src6), elems(eg), elems(open6),
		elems(meshSrc), elems(meshMark), elems(meshDst), elems(vxOf), elems(vxZone), elems(vxMark), elems(vxInE),
		uplink, uplinkAddr, dnsAddr, dnsAddr, uplink, uplink, uplink)
	out := strings.ReplaceAll(b.String(), "CARRIERIN", carrierIn)
	out = strings.ReplaceAll(out, "CARRIERACCEPT", carrierAccept)
	return strings.ReplaceAll(out, `"MESHDEV"`, strconvQuote(dev))
}

// meshRuleSet is the rules' view of the mesh: its device, and the remote
// pods' addresses with their tenants (index); the IPv4 carrier: the
// node's mesh address, the tenants' devices (name -> tenant index) and
// what they may receive.
type meshRuleSet struct {
	Dev      string             `json:"dev"`
	Src      map[netip.Addr]int `json:"src,omitempty"`
	Addr     netip.Addr         `json:"addr,omitzero"`
	Carriers map[string]int     `json:"carriers,omitempty"`
	In       []vxIn             `json:"in,omitempty"`
}

func sortedDevs(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for d := range m {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

func sortedAddrs(m map[netip.Addr]int) []netip.Addr {
	out := make([]netip.Addr, 0, len(m))
	for a := range m {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out
}

func strconvQuote(s string) string { return fmt.Sprintf("%q", s) }

// hostRules is the host's table for one macro node: its router may reach
// out through the host (forwarded, masqueraded: IPv4 and NAT66) but nothing
// on the host itself, and nothing may reach in but replies, and new IPv6
// connections, which the router lets through only to pods with
// kr.network.policy=open. Pods never reach the cluster's own machines
// (other nodes, the servers) through the host: those are refused.
func hostRules(table, link string, routerAddr, router6 netip.Addr, cluster []netip.Addr) string {
	var c4, c6 []string
	for _, a := range cluster {
		if a = a.Unmap(); a.Is4() {
			c4 = append(c4, a.String())
		} else if a.IsValid() {
			c6 = append(c6, a.String())
		}
	}
	elems := func(e []string) string {
		if len(e) == 0 {
			return ""
		}
		return " elements = { " + strings.Join(e, ", ") + " };"
	}
	return fmt.Sprintf(`table inet %[1]s {}
delete table inet %[1]s
table inet %[1]s {
	set cluster4 { type ipv4_addr;%[5]s }
	set cluster6 { type ipv6_addr;%[6]s }
	chain input {
		type filter hook input priority filter; policy accept;
		iifname %[2]q ct state established,related accept
		iifname %[2]q icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept
		iifname %[2]q drop
	}
	chain forward {
		type filter hook forward priority filter; policy accept;
		iifname %[2]q ip daddr @cluster4 reject with icmpx type admin-prohibited
		iifname %[2]q ip6 daddr @cluster6 reject with icmpx type admin-prohibited
		iifname %[2]q accept
		oifname %[2]q ct state established,related accept
		oifname %[2]q meta nfproto ipv6 accept
		oifname %[2]q drop
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr %[3]s oifname != %[2]q masquerade
		ip6 saddr %[4]s oifname != %[2]q masquerade
	}
}
`, table, link, routerAddr, router6, elems(c4), elems(c6))
}
