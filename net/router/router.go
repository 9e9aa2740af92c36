// Package router wires a node's pods into their tenants' VPCs. Every macro
// node has its own router: a network namespace (bind-mounted at
// DIR/router) that holds one end of each pod's veth pair, the routes of
// every tenant in a routing table of its own, the nftables rules that keep
// tenants apart, and the node's DNS server. Its uplink is a veth pair to
// the host (100.64.0.0/10 transfer addresses, masqueraded by the host).
// Pods' network namespaces are bind-mounted at DIR/ns/<pod id>; the agent
// hands their path to the OCI runtime.
//
// Nothing but that uplink veth and one nftables table (macro_<tag>, tag
// from DIR) lives in the host's namespace, so several macro nodes share a
// machine without clashing (tests do), and removing the namespaces under
// DIR removes every interface and route. The names of the host's share are
// written to DIR/host.json so a sweeper can remove them after a crash.
//
// The multi-node mesh plugs in at the router: WireGuard to other nodes'
// routers from this namespace, with routes to remote pods in the same
// tenant tables.
package router

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/macro-cloud/macro/internal/atomicfile"
	"github.com/macro-cloud/macro/net/dns"
	"github.com/macro-cloud/macro/net/ipam"
	"github.com/macro-cloud/macro/types"
)

// DNSAddr is where pods' resolv.conf points: an address of the router
// namespace's loopback, the same on every node.
var DNSAddr = netip.MustParseAddr("fd6d:6163:726f::53")

// Gateway6 is the router's link-local address on every pod's veth.
var Gateway6 = ipam.Gateway6

const (
	uplinkName  = "up0"
	transferNet = "100.64.0.0/10"
)

// Config configures a Router.
type Config struct {
	// Dir keeps the router's state and network namespaces.
	Dir string
	// Cluster names the cluster; tenant prefixes derive from it.
	Cluster string
	// Egress reports whether a tenant's pods may reach outside the VPC
	// (through the node, masqueraded); nil means every tenant may.
	// Egress("") is the node's default: when true, the host forwards for
	// the router (see enableForwarding).
	Egress func(tenant string) bool
	// Upstream resolvers for names outside the VPC ("host:port").
	Upstream []string
	// MeshImpl chooses the mesh's WireGuard device: "kernel" (the
	// kernel's module), "userspace" (wireguard-go in a process of its
	// own) or "" and "auto" (the kernel's where it can make one).
	MeshImpl string
	// MeshDevice is the command that runs the userspace device process
	// (MeshDeviceMain), the state directory appended; nil: this binary
	// with MeshDeviceCommand.
	MeshDevice []string
	Log        *slog.Logger
}

// Attachment is a pod's place in its VPC.
type Attachment struct {
	Netns      string // path of the pod's network namespace
	IPv6       netip.Addr
	IPv4       netip.Addr
	Subnet6    netip.Prefix
	Subnet4    netip.Prefix
	Gateway6   netip.Addr
	Gateway4   netip.Addr
	Nameserver netip.Addr
	// Nameserver4 is the same server over IPv4: the pod's IPv4 gateway.
	Nameserver4 netip.Addr
}

// Overlay is a pod's address on one of its tenant's IPv4 overlays with a
// subnet of its own (a Docker network with an IPAM subnet, driver ipip).
// The API chose the address (types.Endpoint); the router carries it: the
// address on the pod's eth0 with a route to the subnet through the
// router, a /32 route in the tenant's table, the address in the pod's
// anti-spoofing set. Overlays of a tenant never overlap, so one tenant
// table routes them all; the mesh carries them across nodes as it carries
// the pods' default addresses (remote /32s in the same tenant table).
type Overlay struct {
	Network string       `json:"network"` // network ID
	Addr    netip.Addr   `json:"addr"`
	Subnet  netip.Prefix `json:"subnet"`
}

// overlaysOf are the overlay addresses pod's spec gives it, by network ID.
func overlaysOf(pod types.Pod) []Overlay {
	if pod.Spec.Network == "none" {
		return nil
	}
	var out []Overlay
	for _, e := range pod.Spec.Networks {
		a, err1 := netip.ParseAddr(e.IPv4Address)
		sub, err2 := netip.ParsePrefix(e.Subnet)
		if err1 != nil || err2 != nil || !a.Is4() || !sub.Contains(a) {
			continue
		}
		out = append(out, Overlay{Network: e.NetworkID, Addr: a, Subnet: sub})
	}
	slices.SortFunc(out, func(a, b Overlay) int { return strings.Compare(a.Network, b.Network) })
	return out
}

// HostShare is what a router puts into the host's namespace, as written
// to DIR/host.json.
type HostShare struct {
	Link     string `json:"link"`     // veth to the router
	NftTable string `json:"nftTable"` // inet family
}

// Router is one node's router.
type Router struct {
	cfg   Config
	log   *slog.Logger
	ns    string // router namespace path
	host  HostShare
	names *dns.Table
	dns   *dns.Server
	links *links // interface names for DNS over IPv4

	marksMu sync.RWMutex
	marks   map[uint32]string // tenant mark -> tenant, for DNS over IPv4

	mu    sync.Mutex
	alloc *ipam.Allocator
	st    state
	wired map[string]bool // pods this process has attached and checked
	// released is closed (and replaced) when a pod is detached: Attach
	// waits on it for an address another pod still holds.
	released chan struct{}
	mesh     *meshState // nil until StartMesh
}

type state struct {
	IPAM    ipam.State          `json:"ipam"`
	Pods    map[string]podState `json:"pods"`
	Tenants map[string]int      `json:"tenants"` // tenant -> index
	Uplink  netip.Prefix        `json:"uplink"`  // router side of the transfer /30
	// Mesh is the rules' view of the mesh as last applied: a new router
	// keeps letting the mesh's traffic through (its device outlives the
	// router) until it has started the mesh and applied a plan.
	Mesh *meshRuleSet `json:"mesh,omitempty"`
}

type podState struct {
	Tenant    string    `json:"tenant"`
	Namespace string    `json:"namespace"`
	Names     []string  `json:"names"`
	Overlays  []Overlay `json:"overlays,omitempty"`
	// Open is kr.network.policy=open: the outside may open connections
	// to the pod's IPv6 address.
	Open bool `json:"open,omitempty"`
	// Stopped pods keep their addresses but not their names in DNS, as
	// Docker drops a stopped container from its embedded DNS.
	Stopped bool `json:"stopped,omitempty"`
}

// Tag is the short name of the node whose router keeps its state in dir:
// 8 hex digits of its absolute path.
func Tag(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		abs = dir
	}
	h := sha256.Sum256([]byte(abs))
	return hex.EncodeToString(h[:4])
}

// HostShareOf is the host share of the router in dir.
func HostShareOf(dir string) HostShare {
	t := Tag(dir)
	return HostShare{Link: "mh" + t, NftTable: "macro_" + t}
}

// Open creates the router in cfg.Dir or adopts the one a previous process
// left there (pods keep their network meanwhile), and starts its DNS
// server.
func Open(ctx context.Context, cfg Config) (*Router, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Egress == nil {
		cfg.Egress = func(string) bool { return true }
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, err
	}
	cfg.Dir = dir
	if err := os.MkdirAll(filepath.Join(dir, "ns"), 0o711); err != nil {
		return nil, err
	}
	r := &Router{
		cfg:   cfg,
		log:   cfg.Log.With("subsystem", "router"),
		ns:    filepath.Join(dir, "router"),
		host:  HostShareOf(dir),
		names: dns.NewTable(),
		links: &links{ns: filepath.Join(dir, "router"), m: map[int]string{}},
		marks: map[uint32]string{},
		st:    state{Pods: map[string]podState{}, Tenants: map[string]int{}},
		wired: map[string]bool{},

		released: make(chan struct{}),
	}
	data, err := json.Marshal(r.host)
	if err != nil {
		return nil, err
	}
	if err := atomicfile.Write(filepath.Join(dir, "host.json"), data, 0o600); err != nil {
		return nil, err
	}
	if data, err := os.ReadFile(r.statePath()); err == nil {
		if err := json.Unmarshal(data, &r.st); err != nil {
			return nil, fmt.Errorf("router state: %w", err)
		}
		if r.st.Pods == nil {
			r.st.Pods = map[string]podState{}
		}
		if r.st.Tenants == nil {
			r.st.Tenants = map[string]int{}
		}
	}
	r.alloc = ipam.New(cfg.Cluster, r.st.IPAM)
	for t, idx := range r.st.Tenants {
		r.marks[tenantMark(idx)] = t
	}
	if err := r.setup(ctx); err != nil {
		return nil, err
	}
	for id, p := range r.st.Pods {
		r.publish(id, p)
	}
	if err := r.startDNS(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Router) statePath() string { return filepath.Join(r.cfg.Dir, "state.json") }

// Directory is the router's name table, which its DNS server answers from.
func (r *Router) Directory() *dns.Table { return r.names }

// setup makes (or repairs) the router namespace, its uplink and rules.
func (r *Router) setup(ctx context.Context) error {
	if _, err := newNetns(ctx, r.ns); err != nil {
		return fmt.Errorf("router namespace: %w", err)
	}
	if _, err := run(ctx, r.ns, "", "sysctl", "-q", "-w",
		"net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
		"net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
		// The router's own answers go back by the asker's tenant table:
		// ICMP and TCP replies take the mark of what they answer.
		"net.ipv4.fwmark_reflect=1", "net.ipv6.fwmark_reflect=1", "net.ipv4.tcp_fwmark_accept=1"); err != nil {
		return err
	}
	// The uplink: both ends or neither.
	if !linkExists(ctx, r.ns, uplinkName) || !linkExists(ctx, "", r.host.Link) {
		ipBatch(ctx, "", true, "link del "+r.host.Link)
		if _, err := run(ctx, "", "", "ip", "link", "add", r.host.Link, "type", "veth", "peer", "name", uplinkName, "netns", r.ns); err != nil {
			return fmt.Errorf("uplink: %w", err)
		}
	}
	if !r.st.Uplink.IsValid() {
		p, err := pickTransfer(ctx, r.host.Link)
		if err != nil {
			return err
		}
		r.st.Uplink = p
	}
	hostAddr := r.hostAddr()
	host6, router6 := r.uplink6()
	if err := ipBatch(ctx, "", false,
		fmt.Sprintf("addr replace %s/30 dev %s", hostAddr, r.host.Link),
		fmt.Sprintf("addr replace %s/126 dev %s nodad", host6, r.host.Link),
		"link set "+r.host.Link+" up"); err != nil {
		return err
	}
	if err := ipBatch(ctx, r.ns, false,
		"link set lo up",
		fmt.Sprintf("addr replace %s dev %s", r.st.Uplink, uplinkName),
		fmt.Sprintf("addr replace %s/126 dev %s nodad", router6, uplinkName),
		"link set "+uplinkName+" up",
		fmt.Sprintf("addr replace %s/128 dev lo", DNSAddr)); err != nil {
		return err
	}
	for tenant, idx := range r.st.Tenants {
		if err := r.tenantRoutes(ctx, tenant, idx); err != nil {
			return err
		}
	}
	if err := nftApply(ctx, "", hostRules(r.host.NftTable, r.host.Link, r.st.Uplink.Addr(), router6, nil)); err != nil {
		return err
	}
	if err := r.applyRules(ctx); err != nil {
		return err
	}
	if err := r.saveLocked(); err != nil {
		return err
	}
	if r.cfg.Egress("") {
		r.enableForwarding(ctx)
	}
	return nil
}

// enableForwarding lets the host forward the router's packets out and their
// replies back, per interface (IPv4 forwards by the input device's
// conf/<dev>/forwarding): the uplink veth and the devices of the host's
// default routes. The global net.ipv4.ip_forward stays as the admin set it.
func (r *Router) enableForwarding(ctx context.Context) {
	devs := []string{r.host.Link}
	out, _ := run(ctx, "", "", "ip", "-4", "route", "show", "default")
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "dev" {
				devs = append(devs, f[i+1])
			}
		}
	}
	for _, d := range devs {
		if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+d+"/forwarding", []byte("1"), 0o644); err != nil {
			r.log.Warn("egress: cannot enable forwarding", "dev", d, "err", err)
		}
	}
	// IPv6 forwarding is one switch for the whole namespace (per-device
	// forwarding only changes router behaviour, not forwarding). Interfaces
	// configured by router advertisements keep them only with accept_ra=2:
	// say so rather than change the host's addressing behind its back.
	const fwd6 = "/proc/sys/net/ipv6/conf/all/forwarding"
	if b, err := os.ReadFile(fwd6); err == nil && strings.TrimSpace(string(b)) != "1" {
		if err := os.WriteFile(fwd6, []byte("1"), 0o644); err != nil {
			r.log.Warn("egress: cannot enable IPv6 forwarding", "err", err)
		} else {
			r.log.Info("IPv6 forwarding enabled on the host for the pods' IPv6 egress (net.ipv6.conf.all.forwarding=1); interfaces that take router advertisements need accept_ra=2")
		}
	}
}

func (r *Router) hostAddr() netip.Addr { return r.st.Uplink.Masked().Addr().Next() }

// uplink6 is the IPv6 transfer /126 of the uplink, from the node's tag
// (unique per data dir, so that several nodes on one machine differ):
// fd6d:6163:726f:1:<tag>::/126, the host ::1, the router ::2.
func (r *Router) uplink6() (host, router netip.Addr) {
	var a [16]byte
	copy(a[:], DNSAddr.AsSlice()[:6])
	a[7] = 1
	tag, _ := hex.DecodeString(Tag(r.cfg.Dir))
	copy(a[8:12], tag)
	a[15] = 1
	host = netip.AddrFrom16(a)
	a[15] = 2
	return host, netip.AddrFrom16(a)
}

// pickTransfer chooses the /30 of the uplink: a slot of 100.64.0.0/10 from
// the link's name, moved on past any the host already uses.
func pickTransfer(ctx context.Context, link string) (netip.Prefix, error) {
	out, err := run(ctx, "", "", "ip", "-o", "-4", "addr", "show")
	if err != nil {
		return netip.Prefix{}, err
	}
	var used []netip.Prefix
	for _, f := range strings.Fields(out) {
		if p, err := netip.ParsePrefix(f); err == nil {
			used = append(used, p)
		}
	}
	space := netip.MustParsePrefix(transferNet)
	h := sha256.Sum256([]byte(link))
	slot := binary.BigEndian.Uint32(h[:4]) % (1 << 20)
	for range 1 << 20 {
		base := space.Addr().As4()
		v := binary.BigEndian.Uint32(base[:]) + slot*4
		var a [4]byte
		binary.BigEndian.PutUint32(a[:], v)
		p := netip.PrefixFrom(netip.AddrFrom4(a), 30)
		if !slices.ContainsFunc(used, p.Overlaps) {
			// The router takes .2, the host .1.
			return netip.PrefixFrom(p.Addr().Next().Next(), 30), nil
		}
		slot = (slot + 1) % (1 << 20)
	}
	return netip.Prefix{}, errors.New("no free /30 in " + transferNet)
}

// tenantRoutes makes the tenant's policy rule and default routes, and
// the host's route to the tenant's prefix (for answers to its pods' IPv6
// egress and for pods open to the outside).
func (r *Router) tenantRoutes(ctx context.Context, tenant string, idx int) error {
	table, mark := tenantTable(idx), tenantMark(idx)
	for _, family := range []string{"-4", "-6"} {
		opts := []string{family}
		ipBatchArgs(ctx, r.ns, true, opts, fmt.Sprintf("rule del fwmark 0x%x lookup %d", mark, table))
		if err := ipBatchArgs(ctx, r.ns, false, opts, fmt.Sprintf("rule add fwmark 0x%x lookup %d pref 1000", mark, table)); err != nil {
			return err
		}
	}
	// A lookup ends in the tenant's table, with a default route out of
	// the uplink (nftables decides who may use it), never on to the main
	// table, which has every tenant's pods.
	host6, router6 := r.uplink6()
	if err := ipBatchArgs(ctx, r.ns, false, []string{"-6"}, fmt.Sprintf("route replace default via %s dev %s table %d", host6, uplinkName, table)); err != nil {
		return err
	}
	if err := ipBatchArgs(ctx, "", false, []string{"-6"}, fmt.Sprintf("route replace %s via %s dev %s", ipam.TenantPrefix(r.cfg.Cluster, tenant), router6, r.host.Link)); err != nil {
		return err
	}
	return ipBatch(ctx, r.ns, false,
		fmt.Sprintf("route replace default via %s dev %s table %d", r.hostAddr(), uplinkName, table))
}

func (r *Router) tenantIndex(ctx context.Context, tenant string) (int, error) {
	if idx, ok := r.st.Tenants[tenant]; ok {
		return idx, nil
	}
	idx := 1
	for _, i := range r.st.Tenants {
		if i >= idx {
			idx = i + 1
		}
	}
	r.st.Tenants[tenant] = idx
	r.marksMu.Lock()
	r.marks[tenantMark(idx)] = tenant
	r.marksMu.Unlock()
	return idx, r.tenantRoutes(ctx, tenant, idx)
}

func vethName(podID string) string {
	if len(podID) > 12 {
		podID = podID[:12]
	}
	return "v" + podID
}

func (r *Router) netnsPath(podID string) string { return filepath.Join(r.cfg.Dir, "ns", podID) }

// Attach gives the pod its network namespace and addresses, or checks and
// repairs what it already has (after a restart of macro or the machine).
// It is idempotent.
//
// A pod whose address another pod here still holds waits, up to
// heldWait, for that pod's detach: the cluster gives an address to one
// pod at a time, so the holder is a pod already removed whose teardown
// has not reached this node yet (`docker rm -f a && docker run ...` takes
// the lowest free address, a's).
func (r *Router) Attach(ctx context.Context, pod types.Pod) (Attachment, error) {
	deadline := time.Now().Add(heldWait)
	for {
		att, released, err := r.attach(ctx, pod)
		if !errors.Is(err, ipam.ErrHeld) || !time.Now().Before(deadline) {
			return att, err
		}
		t := time.NewTimer(time.Until(deadline))
		select {
		case <-released:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return att, err
		}
		t.Stop()
	}
}

// heldWait bounds how long Attach waits for another pod to give up an
// address: that pod's teardown on this node.
const heldWait = 30 * time.Second

// attach is Attach's one try; released is closed by the next detach.
func (r *Router) attach(ctx context.Context, pod types.Pod) (Attachment, <-chan struct{}, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	released := r.released
	att, err := r.attachLocked(ctx, pod)
	return att, released, err
}

func (r *Router) attachLocked(ctx context.Context, pod types.Pod) (Attachment, error) {
	addrs, err := r.addresses(pod)
	if err != nil {
		return Attachment{}, err
	}
	idx, err := r.tenantIndex(ctx, pod.Tenant)
	if err != nil {
		return Attachment{}, err
	}
	// Subnets and gateway are the pod's own: a pod this node addressed
	// before the cluster recorded its namespace's subnets keeps the /24
	// the node chose, beside pods in the recorded one.
	subnet6, _ := addrs.IPv6.Prefix(64)
	subnet4, _ := addrs.IPv4.Prefix(24)
	gw4 := ipam.Gateway4(addrs.IPv4)
	att := Attachment{
		Netns: r.netnsPath(pod.ID), IPv6: addrs.IPv6, IPv4: addrs.IPv4,
		Subnet6: subnet6, Subnet4: subnet4,
		Gateway6: Gateway6, Gateway4: gw4, Nameserver: DNSAddr, Nameserver4: gw4,
	}
	overlays := overlaysOf(pod)
	if err := r.checkOverlays(pod.ID, pod.Tenant, addrs.IPv4, overlays); err != nil {
		return Attachment{}, err
	}
	if p, ok := r.st.Pods[pod.ID]; ok && r.wired[pod.ID] && isNetns(att.Netns) && slices.Equal(p.Overlays, overlays) {
		// Wired by this process already (create, then start): nothing
		// to check again. After a restart the first attach checks all.
		if p.Stopped {
			p.Stopped = false
			r.st.Pods[pod.ID] = p
			if err := r.saveLocked(); err != nil {
				return Attachment{}, err
			}
			r.publish(pod.ID, p)
		}
		return att, nil
	}
	veth := vethName(pod.ID)
	defer r.links.forget()
	fresh, err := newNetns(ctx, att.Netns)
	if err != nil {
		return Attachment{}, fmt.Errorf("pod network namespace: %w", err)
	}
	table := tenantTable(idx)
	create := fmt.Sprintf("link add %s type veth peer name eth0 netns %s", veth, att.Netns)
	routerSide := []string{
		"link set " + veth + " up",
		fmt.Sprintf("addr replace %s/64 dev %s nodad", Gateway6, veth),
		fmt.Sprintf("addr replace %s/32 dev %s", att.Gateway4, veth),
		fmt.Sprintf("route replace %s/32 dev %s table %d", att.IPv4, veth, table),
		fmt.Sprintf("route replace %s/128 dev %s table %d", att.IPv6, veth, table),
		// IPv6 addresses are unique on the node: the main table routes
		// the router's own (unmarked) UDP answers, DNS, back to the pod.
		fmt.Sprintf("route replace %s/128 dev %s", att.IPv6, veth),
	}
	switch {
	case fresh:
		// A new namespace has no eth0: one batch makes the pair and the
		// router's side (the common path: a pod's first start).
		if err := ipBatch(ctx, r.ns, false, append([]string{create}, routerSide...)...); err != nil {
			// A veth left by a crash between two steps: start over.
			ipBatch(ctx, r.ns, true, "link del "+veth)
			if err := ipBatch(ctx, r.ns, false, append([]string{create}, routerSide...)...); err != nil {
				return Attachment{}, err
			}
		}
	default:
		// An existing namespace (restart, adoption): repair what is missing.
		if !linkExists(ctx, r.ns, veth) || !linkExists(ctx, att.Netns, "eth0") {
			ipBatch(ctx, r.ns, true, "link del "+veth)
			ipBatch(ctx, att.Netns, true, "link del eth0")
			routerSide = append([]string{create}, routerSide...)
		}
		if err := ipBatch(ctx, r.ns, false, routerSide...); err != nil {
			return Attachment{}, err
		}
	}
	if err := ipBatch(ctx, att.Netns, false,
		"link set lo up",
		"link set eth0 up",
		fmt.Sprintf("addr replace %s/64 dev eth0 nodad noprefixroute", att.IPv6),
		fmt.Sprintf("addr replace %s/%d dev eth0 noprefixroute", att.IPv4, att.Subnet4.Bits()),
		fmt.Sprintf("route replace %s dev eth0 scope link", att.Gateway4),
		fmt.Sprintf("route replace default via %s dev eth0", att.Gateway4),
		fmt.Sprintf("route replace ::/0 via %s dev eth0", Gateway6)); err != nil {
		return Attachment{}, err
	}
	if err := r.wireOverlays(ctx, pod.ID, table, att.Gateway4, r.st.Pods[pod.ID].Overlays, overlays); err != nil {
		return Attachment{}, err
	}
	p := podState{Tenant: pod.Tenant, Namespace: pod.Namespace, Names: podNames(pod), Overlays: overlays, Open: isOpen(pod)}
	r.st.Pods[pod.ID] = p
	if err := r.applyRules(ctx); err != nil {
		return Attachment{}, err
	}
	if err := r.saveLocked(); err != nil {
		return Attachment{}, err
	}
	r.publish(pod.ID, p)
	r.wired[pod.ID] = true
	return att, nil
}

// addresses are the pod's: those the cluster recorded (types.Pod.VPC),
// which every node gives it alike, or for a pod created before records,
// those this node's allocator chose (and keeps in its state).
func (r *Router) addresses(pod types.Pod) (ipam.Pod, error) {
	v := pod.VPC
	if v == nil || !v.IPv4.IsValid() || !v.Subnet4.Contains(v.IPv4) {
		return r.alloc.Pod(pod.ID, pod.Tenant, pod.Namespace)
	}
	n := ipam.Namespace{Tenant: pod.Tenant, Name: pod.Namespace,
		Subnet6: ipam.Subnet6(ipam.TenantPrefix(r.cfg.Cluster, pod.Tenant), v.Subnet6ID), Subnet4: v.Subnet4}
	p := ipam.Pod{ID: pod.ID, Tenant: pod.Tenant, Namespace: pod.Namespace, IPv6: ipam.PodIPv6(n.Subnet6, pod.ID, nil), IPv4: v.IPv4}
	if err := r.alloc.Assign(p, n); err != nil {
		return ipam.Pod{}, err
	}
	return p, nil
}

// isOpen reports kr.network.policy=open, Kraud's label for a pod whose
// IPv6 address the outside may reach.
func isOpen(pod types.Pod) bool { return pod.Spec.Labels["kr.network.policy"] == "open" }

// podNames are the names a pod answers to: its own and its aliases.
func podNames(pod types.Pod) []string {
	names := []string{pod.Name}
	for _, a := range pod.Spec.Aliases {
		if a != "" && !slices.Contains(names, a) {
			names = append(names, a)
		}
	}
	return names
}

// publish puts the pod into the DNS table, or takes a stopped one out.
func (r *Router) publish(id string, p podState) {
	a, ok := r.alloc.Lookup(id)
	if !ok || p.Stopped {
		r.names.Delete(id)
		return
	}
	e := dns.Entry{ID: id, Tenant: p.Tenant, Namespace: p.Namespace, Names: p.Names, IPv6: a.IPv6, IPv4: a.IPv4, Link: vethName(id)}
	for _, o := range p.Overlays {
		if e.Overlays == nil {
			e.Overlays = map[string]netip.Addr{}
		}
		e.Overlays[o.Network] = o.Addr
	}
	r.names.Set(e)
}

// Update follows a change of the pod's spec: the names it answers to
// (docker rename, aliases) and its overlay addresses (docker network
// connect and disconnect), live on a running pod. A pod the router has
// not attached yet gets them at its Attach.
func (r *Router) Update(ctx context.Context, pod types.Pod) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.st.Pods[pod.ID]
	if !ok {
		return nil
	}
	names, overlays := podNames(pod), overlaysOf(pod)
	if slices.Equal(names, p.Names) && slices.Equal(overlays, p.Overlays) {
		return nil
	}
	p.Names = names
	if !slices.Equal(overlays, p.Overlays) {
		a, _ := r.alloc.Lookup(pod.ID)
		if err := r.checkOverlays(pod.ID, p.Tenant, a.IPv4, overlays); err != nil {
			return err
		}
		if isNetns(r.netnsPath(pod.ID)) {
			if err := r.wireOverlays(ctx, pod.ID, tenantTable(r.st.Tenants[p.Tenant]), ipam.Gateway4(a.IPv4), p.Overlays, overlays); err != nil {
				return err
			}
		}
		p.Overlays = overlays
		r.st.Pods[pod.ID] = p
		if err := r.applyRules(ctx); err != nil {
			return err
		}
	}
	r.st.Pods[pod.ID] = p
	if err := r.saveLocked(); err != nil {
		return err
	}
	r.publish(pod.ID, p)
	return nil
}

// checkOverlays refuses overlay addresses another pod of the tenant on
// this node holds, as its default or overlay address (the API keeps
// overlay addresses unique; this guards what it cannot see, a namespace's
// default /24 that happens to be an overlay's subnet).
func (r *Router) checkOverlays(podID, tenant string, own4 netip.Addr, overlays []Overlay) error {
	for _, o := range overlays {
		if o.Addr == own4 {
			return fmt.Errorf("overlay address %s is the pod's default address", o.Addr)
		}
		for id, q := range r.st.Pods {
			if id == podID || q.Tenant != tenant {
				continue
			}
			if a, ok := r.alloc.Lookup(id); ok && a.IPv4 == o.Addr {
				return fmt.Errorf("overlay address %s: Address already in use: %w (%s)", o.Addr, ipam.ErrHeld, id)
			}
			for _, qo := range q.Overlays {
				if qo.Addr == o.Addr {
					return fmt.Errorf("overlay address %s: Address already in use: %w (%s)", o.Addr, ipam.ErrHeld, id)
				}
			}
		}
	}
	return nil
}

// wireOverlays takes the pod from the overlay addresses in old to those
// in new: on the pod's eth0 (with a route to each subnet through the
// router, from that address) and as /32 routes in the tenant's table.
func (r *Router) wireOverlays(ctx context.Context, podID string, table uint32, gw4 netip.Addr, old, new []Overlay) error {
	netns, veth := r.netnsPath(podID), vethName(podID)
	var inPod, inRouter []string
	for _, o := range old {
		if slices.Contains(new, o) {
			continue
		}
		ipBatch(ctx, netns, true,
			fmt.Sprintf("route del %s", o.Subnet),
			fmt.Sprintf("addr del %s/%d dev eth0", o.Addr, o.Subnet.Bits()))
		ipBatch(ctx, r.ns, true, fmt.Sprintf("route del %s/32 table %d", o.Addr, table))
	}
	for _, o := range new {
		inPod = append(inPod,
			fmt.Sprintf("addr replace %s/%d dev eth0 noprefixroute", o.Addr, o.Subnet.Bits()),
			fmt.Sprintf("route replace %s via %s dev eth0 src %s", o.Subnet, gw4, o.Addr))
		inRouter = append(inRouter, fmt.Sprintf("route replace %s/32 dev %s table %d", o.Addr, veth, table))
	}
	if len(new) == 0 {
		return nil
	}
	if err := ipBatch(ctx, r.ns, false, inRouter...); err != nil {
		return fmt.Errorf("overlay routes: %w", err)
	}
	if err := ipBatch(ctx, netns, false, inPod...); err != nil {
		return fmt.Errorf("overlay addresses: %w", err)
	}
	return nil
}

// Stopped takes the pod's names out of DNS until its next Attach; its
// addresses and namespace stay.
func (r *Router) Stopped(podID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.st.Pods[podID]
	if !ok || p.Stopped {
		return
	}
	p.Stopped = true
	r.st.Pods[podID] = p
	if err := r.saveLocked(); err != nil {
		r.log.Warn("save state", "err", err)
	}
	r.publish(podID, p)
}

// Detach removes the pod's network namespace, veth pair and addresses.
// Detaching a pod that has none is not an error.
func (r *Router) Detach(ctx context.Context, podID string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.detachLocked(ctx, podID)
}

func (r *Router) detachLocked(ctx context.Context, podID string) error {
	r.names.Delete(podID)
	ipBatch(ctx, r.ns, true, "link del "+vethName(podID))
	r.links.forget()
	err := removeNetns(r.netnsPath(podID))
	_, known := r.st.Pods[podID]
	delete(r.st.Pods, podID)
	delete(r.wired, podID)
	r.alloc.Release(podID)
	close(r.released)
	r.released = make(chan struct{})
	if known {
		err = errors.Join(err, r.applyRules(ctx), r.saveLocked())
	}
	return err
}

// Reconcile removes the network of every pod not in keep, including
// namespaces and veths no state mentions (a crash between steps).
func (r *Router) Reconcile(ctx context.Context, keep map[string]bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for id := range r.st.Pods {
		if !keep[id] {
			r.log.Info("removing network of a pod that is gone", "pod", id)
			errs = append(errs, r.detachLocked(ctx, id))
		}
	}
	ents, _ := os.ReadDir(filepath.Join(r.cfg.Dir, "ns"))
	for _, e := range ents {
		if _, ok := r.st.Pods[e.Name()]; !ok && !keep[e.Name()] {
			errs = append(errs, r.detachLocked(ctx, e.Name()))
		}
	}
	known := map[string]bool{}
	for id := range r.st.Pods {
		known[vethName(id)] = true
	}
	out, _ := run(ctx, r.ns, "", "ip", "-o", "link", "show", "type", "veth")
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		if strings.HasPrefix(name, "v") && !known[name] {
			ipBatch(ctx, r.ns, true, "link del "+name)
		}
	}
	return errors.Join(errs...)
}

// Refresh applies the rules again, after Config.Egress changed its mind
// about a tenant.
func (r *Router) Refresh(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.applyRules(ctx)
}

func (r *Router) applyRules(ctx context.Context) error {
	var pods []rulePod
	for id, p := range r.st.Pods {
		a, ok := r.alloc.Lookup(id)
		if !ok {
			continue
		}
		rp := rulePod{Veth: vethName(id), Tenant: r.st.Tenants[p.Tenant], IPv6: a.IPv6, IPv4: a.IPv4, Open: p.Open && !p.Stopped}
		for _, o := range p.Overlays {
			rp.Overlays = append(rp.Overlays, o.Addr)
		}
		pods = append(pods, rp)
	}
	var egress []int
	for t, idx := range r.st.Tenants {
		if r.cfg.Egress(t) {
			egress = append(egress, idx)
		}
	}
	slices.Sort(egress)
	return nftApply(ctx, r.ns, routerRules(pods, egress, uplinkName, r.st.Uplink.Addr(), DNSAddr, r.meshRules()))
}

func (r *Router) saveLocked() error {
	r.st.IPAM = r.alloc.State()
	data, err := json.Marshal(&r.st)
	if err != nil {
		return err
	}
	return atomicfile.Write(r.statePath(), data, 0o600)
}

// startDNS listens on DNSAddr:53 inside the router namespace, and on
// port 53 of every IPv4 address there (pods' gateways; see dns4.go).
func (r *Router) startDNS() error {
	var pc, pc4 net.PacketConn
	var l, l4 net.Listener
	addr := netip.AddrPortFrom(DNSAddr, 53).String()
	err := inNetns(r.ns, func() error {
		var err error
		if pc, err = net.ListenPacket("udp6", addr); err != nil {
			return err
		}
		if l, err = net.Listen("tcp6", addr); err != nil {
			return err
		}
		if pc4, err = net.ListenPacket("udp4", "0.0.0.0:53"); err != nil {
			return err
		}
		l4, err = net.Listen("tcp4", "0.0.0.0:53")
		return err
	})
	if err == nil {
		var p *pktConn
		if p, err = newPktConn(pc4); err == nil {
			pc4 = p
		}
	}
	if err != nil {
		for _, c := range []io.Closer{pc, l, pc4, l4} {
			if c != nil {
				c.Close()
			}
		}
		return fmt.Errorf("dns: %w", err)
	}
	r.dns = &dns.Server{Dir: r.names, Upstream: r.cfg.Upstream, Identify: r.identify}
	r.dns.Serve(pc, l)
	r.dns.Serve(pc4, markListener{l4})
	return nil
}

// Close stops the DNS server and leaves the network in place for the next
// process to adopt.
func (r *Router) Close() error {
	r.mu.Lock()
	r.closeMesh()
	r.mu.Unlock()
	if r.dns == nil {
		return nil
	}
	return r.dns.Shutdown(context.Background())
}

// Destroy removes everything the router made: pods' namespaces, the router
// namespace, the host's veth and nftables table.
func (r *Router) Destroy(ctx context.Context) error {
	r.Close()
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for id := range r.st.Pods {
		errs = append(errs, removeNetns(r.netnsPath(id)))
	}
	errs = append(errs, RemoveHostShare(ctx, r.cfg.Dir), removeNetns(r.ns))
	os.Remove(r.statePath())
	return errors.Join(errs...)
}

// RemoveHostShare removes what the router in dir put into the host's
// namespace, per dir/host.json (or the names derived from dir), and ends
// its mesh device process. The namespaces under dir are the caller's to
// unmount.
func RemoveHostShare(ctx context.Context, dir string) error {
	if err := stopMeshDev(dir, slog.Default()); err != nil {
		return err
	}
	hs := HostShareOf(dir)
	if data, err := os.ReadFile(filepath.Join(dir, "host.json")); err == nil {
		json.Unmarshal(data, &hs)
	}
	ipBatch(ctx, "", true, "link del "+hs.Link)
	out, err := run(ctx, "", "", "nft", "list", "tables", "inet")
	if err == nil && strings.Contains(out, " "+hs.NftTable+"\n") {
		if _, err := run(ctx, "", "", "nft", "delete", "table", "inet", hs.NftTable); err != nil {
			return err
		}
	}
	return nil
}

// DialContext connects from inside the router's namespace, where every
// pod of the node is routed: the ingress reaches pods this way. Pods'
// IPv6 addresses are unique across tenants; their IPv4 ones are not, so
// dial pods by IPv6.
func (r *Router) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := inNetns(r.ns, func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}
