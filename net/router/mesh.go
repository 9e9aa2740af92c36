package router

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/macro-cloud/macro/net/dns"
	"github.com/macro-cloud/macro/net/mesh"
)

// The mesh joins the node's router to the other nodes' routers: a
// WireGuard device wg0 in the router namespace whose UDP socket lives in
// the host's namespace, where the other nodes reach it. It is the
// kernel's where the kernel can make one, else wireguard-go on a TUN
// device, in a process of its own (meshdev.go); either outlives the
// router (an agent restart) and is configured only through wgctrl.
// Remote pods' /128s are routed through it in their tenant's table;
// what comes out of it is marked with the tenant of its source address
// (which WireGuard has checked against the sending node's allowed
// addresses) and forwarded only to that tenant's pods.
//
// IPv4, which overlaps between tenants, rides a VXLAN device per tenant
// (vx<tenant index>, the tenant's cluster-wide VNI) over wg0, from this
// node's mesh address to the remote pod's node's (mesh.NodeAddr, each
// node's in its peer's allowed addresses): static forwarding and
// neighbour entries, no learning, /32 routes in the tenant's table. What
// comes in is checked before it is unwrapped (rules.go): the sending node
// (outer source, authenticated by WireGuard), the VNI and the inner
// source must be a remote pod of that tenant on that node.
const (
	meshName = "wg0"
	// MeshMTU leaves room for WireGuard's 80 bytes over IPv6 in a 1500
	// byte underlay.
	MeshMTU = 1420
	// CarrierMTU is the IPv4 carrier's: wg0's less VXLAN over IPv6 (40
	// IPv6, 8 UDP, 8 VXLAN, 14 Ethernet). TCP's MSS is clamped to it.
	CarrierMTU = MeshMTU - 70
	vxlanPort  = 4789
	// meshTable routes the nodes' mesh addresses (the carrier's
	// underlay) through wg0, whatever the mark of the packet carried.
	meshTable = 9999
)

// meshState is the mesh as applied: the device and what it was told.
type meshState struct {
	wg     *wgctrl.Client
	dev    string // wgctrl's name of the device
	kernel bool
	// adopted: the device was a previous router's; so may be its
	// carrier, which is kept when it is as this router would make it.
	adopted bool
	port    uint16
	peers   map[mesh.Key]mesh.Peer
	routes  map[meshRoute]bool
	src     map[netip.Addr]int // remote pod address -> tenant index
	names   map[string]bool    // DNS table IDs of remote pods
	// cluster are the other nodes' (and the servers') addresses: the
	// host forwards no pod traffic to them.
	cluster []netip.Addr

	// Rotations of other nodes: standby peers (current key -> next
	// key) and those that took over (old key -> new key) before the
	// view said so.
	standby  map[mesh.Key]mesh.Key
	promoted map[mesh.Key]mesh.Key
	watching bool

	// The IPv4 carrier: this node's mesh address, the tenants' devices,
	// their forwarding entries and routes, and what the rules let in.
	addr     netip.Addr
	carriers map[string]carrier // by tenant
	fdb      map[fdbEntry]bool
	routes4  map[meshRoute4]string // -> remote MAC
	vxIn     []vxIn                // sorted
}

// carrier is a tenant's VXLAN device.
type carrier struct {
	dev string
	idx int
	vni uint32
	mac string
}

type fdbEntry struct {
	dev, mac string
	dst      netip.Addr
}

type meshRoute4 struct {
	table uint32
	dev   string
	addr  netip.Addr
}

// vxIn is what the carrier accepts: from node (its mesh address), with
// vni, the inner IPv4 source src.
type vxIn struct {
	node netip.Addr
	vni  uint32
	src  netip.Addr
}

type vxInJSON struct {
	Node netip.Addr `json:"node"`
	VNI  uint32     `json:"vni"`
	Src  netip.Addr `json:"src"`
}

func (v vxIn) MarshalJSON() ([]byte, error) {
	return json.Marshal(vxInJSON{v.node, v.vni, v.src})
}

func (v *vxIn) UnmarshalJSON(b []byte) error {
	var j vxInJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*v = vxIn{j.Node, j.VNI, j.Src}
	return nil
}

func (v vxIn) compare(w vxIn) int {
	return cmpOr(v.node.Compare(w.node), cmpU32(v.vni, w.vni), v.src.Compare(w.src))
}

func cmpU32(a, b uint32) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func cmpOr(c ...int) int {
	for _, x := range c {
		if x != 0 {
			return x
		}
	}
	return 0
}

type meshRoute struct {
	table uint32
	addr  netip.Addr
}

// fixedMTU is the TUN device with the MTU it was made with: wireguard-go
// asks the MTU by name from whatever namespace its goroutine is in, which
// is not the router's.
type fixedMTU struct {
	tun.Device
	mtu int
}

func (t fixedMTU) MTU() (int, error) { return t.mtu, nil }

// StartMesh makes the node's WireGuard device with private key key,
// listening on UDP port (0: any free one) of the host's namespace, and
// returns the port; or it adopts the device a previous process left
// (peers and their sessions stay: pods' traffic to other nodes goes on
// meanwhile), keeping its port. Routes and peers come with ApplyMesh.
//
// The device is the kernel's where Config.MeshImpl allows it and the
// kernel can make one, else wireguard-go in a process of its own
// (meshdev.go). Either is configured the same way, through wgctrl:
// netlink for the kernel's, the UAPI socket for wireguard-go.
func (r *Router) StartMesh(ctx context.Context, key mesh.Key, port uint16) (uint16, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mesh != nil {
		return r.mesh.port, nil
	}
	log := r.log.With("subsystem", "mesh")
	impl := r.cfg.MeshImpl
	switch impl {
	case "":
		impl = "auto"
	case "auto", "kernel", "userspace":
	default:
		return 0, fmt.Errorf("mesh: implementation %q: want auto, kernel or userspace", impl)
	}
	kernel, adopted, err := r.meshDevice(ctx, impl, log)
	if err != nil {
		return 0, err
	}
	name := meshDevName(r.cfg.Dir)
	var wg *wgctrl.Client
	if kernel {
		// Its netlink socket in the router namespace, where wg0 is.
		name = meshName
		err = inNetns(r.ns, func() error {
			var err error
			wg, err = wgctrl.New()
			return err
		})
	} else {
		wg, err = wgctrl.New()
	}
	if err != nil {
		return 0, fmt.Errorf("mesh: wgctrl: %w", err)
	}
	fail := func(err error) (uint16, error) {
		wg.Close()
		return 0, fmt.Errorf("mesh: %w", err)
	}
	d, err := wg.Device(name)
	if err != nil {
		return fail(err)
	}
	var cfg wgtypes.Config
	if d.PrivateKey != wgtypes.Key(key) {
		k := wgtypes.Key(key)
		cfg.PrivateKey = &k
	}
	if !adopted || d.ListenPort == 0 {
		p := int(port)
		cfg.ListenPort = &p
	}
	if cfg.PrivateKey != nil || cfg.ListenPort != nil {
		if err := wg.ConfigureDevice(name, cfg); err != nil {
			if cfg.ListenPort == nil || *cfg.ListenPort == 0 {
				return fail(fmt.Errorf("configure: %w", err))
			}
			// The port is taken (another node on this machine): any port
			// does, the node registers the one it got.
			log.Warn("mesh port taken: using another", "port", port, "err", err)
			zero := 0
			cfg.ListenPort = &zero
			if err := wg.ConfigureDevice(name, cfg); err != nil {
				return fail(fmt.Errorf("configure: %w", err))
			}
		}
	}
	if d, err = wg.Device(name); err != nil {
		return fail(err)
	}
	if err := ipBatch(ctx, r.ns, false, "link set "+meshName+" up"); err != nil {
		return fail(err)
	}
	m := &meshState{wg: wg, dev: name, kernel: kernel, adopted: adopted, port: uint16(d.ListenPort),
		peers: map[mesh.Key]mesh.Peer{}, routes: map[meshRoute]bool{},
		src: map[netip.Addr]int{}, names: map[string]bool{},
		carriers: map[string]carrier{}, fdb: map[fdbEntry]bool{}, routes4: map[meshRoute4]string{},
		standby: map[mesh.Key]mesh.Key{}, promoted: map[mesh.Key]mesh.Key{}}
	if adopted {
		// The peers as they are: ApplyMesh leaves alone those the plan
		// keeps, and removes the others (a standby peer among them).
		for _, p := range d.Peers {
			mp := mesh.Peer{Key: mesh.Key(p.PublicKey)}
			if p.Endpoint != nil {
				mp.Endpoint = p.Endpoint.AddrPort()
				mp.Endpoint = netip.AddrPortFrom(mp.Endpoint.Addr().Unmap(), mp.Endpoint.Port())
			}
			for _, a := range p.AllowedIPs {
				if pf, ok := netipPrefix(a); ok {
					mp.Allowed = append(mp.Allowed, pf)
				}
			}
			m.peers[mp.Key] = mp
		}
	}
	impls := map[bool]string{true: "kernel", false: "userspace"}
	log.Info("mesh device", "impl", impls[kernel], "adopted", adopted, "port", m.port, "peers", len(m.peers))
	r.mesh = m
	return m.port, nil
}

// netipPrefix is a as a netip.Prefix.
func netipPrefix(a net.IPNet) (netip.Prefix, bool) {
	ip, ok := netip.AddrFromSlice(a.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := a.Mask.Size()
	if ip.Is4In6() && ones >= 96 {
		ip, ones = ip.Unmap(), ones-96
	} else if ip.Is4In6() {
		ip = ip.Unmap()
	}
	return netip.PrefixFrom(ip, ones), true
}

// meshDevice finds or makes the device wg0 in the router namespace: a
// userspace device process of a previous router is adopted; so is a
// kernel device (it outlives any process); else a new one is made, the
// kernel's if impl allows and the kernel can.
func (r *Router) meshDevice(ctx context.Context, impl string, log *slog.Logger) (kernel, adopted bool, err error) {
	if meshDevAlive(meshDevState(r.cfg.Dir)) {
		if impl != "kernel" && meshDevUp(ctx, r.cfg.Dir) {
			return false, true, nil
		}
		log.Warn("mesh: ending the device process of a previous router", "impl", impl)
		if err := stopMeshDev(r.cfg.Dir, log); err != nil {
			return false, false, fmt.Errorf("mesh: %w", err)
		}
	}
	out, err := run(ctx, r.ns, "", "ip", "-d", "link", "show", meshName)
	if err == nil {
		if strings.Contains(out, " wireguard ") && impl != "userspace" {
			return true, true, nil
		}
		// A kernel device the flag no longer wants, or a TUN device
		// nobody serves.
		ipBatch(ctx, r.ns, true, "link del "+meshName)
	}
	if impl == "auto" {
		impl = "userspace"
		if meshKernelWorks(ctx, r.ns) {
			impl = "kernel"
		}
	}
	if impl == "userspace" {
		if err := r.startMeshDev(); err != nil {
			return false, false, fmt.Errorf("mesh: %w", err)
		}
		return false, false, nil
	}
	// The kernel's device keeps its UDP socket in the namespace it was
	// made in: made in the host's under a name of this router's, then
	// moved into the router namespace as wg0.
	tmp := "mxw" + Tag(r.cfg.Dir)
	ipBatch(ctx, "", true, "link del "+tmp)
	if err := ipBatch(ctx, "", false,
		"link add "+tmp+" type wireguard",
		fmt.Sprintf("link set %s mtu %d", tmp, MeshMTU),
		fmt.Sprintf("link set %s netns %s", tmp, r.ns)); err != nil {
		ipBatch(ctx, "", true, "link del "+tmp)
		return false, false, fmt.Errorf("mesh: kernel WireGuard device: %w", err)
	}
	if err := ipBatch(ctx, r.ns, false, "link set "+tmp+" name "+meshName); err != nil {
		ipBatch(ctx, r.ns, true, "link del "+tmp)
		return false, false, fmt.Errorf("mesh: kernel WireGuard device: %w", err)
	}
	return true, false, nil
}

// meshKernelWorks tells whether the kernel makes WireGuard links (it has
// the module, or loads it), by making one in the namespace ns.
func meshKernelWorks(ctx context.Context, ns string) bool {
	const probe = "mxprobe0"
	ipBatch(ctx, ns, true, "link del "+probe)
	if err := ipBatch(ctx, ns, false, "link add "+probe+" type wireguard"); err != nil {
		return false
	}
	ipBatch(ctx, ns, true, "link del "+probe)
	return true
}

// configure applies cfg to the device (never replacing its peers).
func (m *meshState) configure(cfg wgtypes.Config) error {
	cfg.ReplacePeers = false
	return m.wg.ConfigureDevice(m.dev, cfg)
}

// SetMeshKey replaces the device's private key (a rotation). Peers
// handshake again once they know the new public key.
// It then greets every peer (a keepalive, which needs a handshake): the
// peers that stand by for the new key (mesh.Peer.Next) take it at once.
func (r *Router) SetMeshKey(key mesh.Key) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mesh == nil {
		return errors.New("mesh: not started")
	}
	k := wgtypes.Key(key)
	// Turning the keepalive on sends one at once (wireguard-go and the
	// kernel alike).
	off, on := wgtypes.Config{PrivateKey: &k}, wgtypes.Config{}
	for k := range r.mesh.peers {
		off.Peers = append(off.Peers, wgtypes.PeerConfig{PublicKey: wgtypes.Key(k), UpdateOnly: true, PersistentKeepaliveInterval: ptr(time.Duration(0))})
		on.Peers = append(on.Peers, wgtypes.PeerConfig{PublicKey: wgtypes.Key(k), UpdateOnly: true, PersistentKeepaliveInterval: ptr(keepalive)})
	}
	if err := r.mesh.configure(off); err != nil {
		return err
	}
	if len(on.Peers) == 0 {
		return nil
	}
	return r.mesh.configure(on)
}

// keepalive is the peers' persistent keepalive interval.
const keepalive = 25 * time.Second

func ptr[T any](v T) *T { return &v }

// peerConfig is p with all its allowed addresses, replacing the device's.
func peerConfig(key mesh.Key, p mesh.Peer) wgtypes.PeerConfig {
	pc := wgtypes.PeerConfig{PublicKey: wgtypes.Key(key), ReplaceAllowedIPs: true, PersistentKeepaliveInterval: ptr(keepalive)}
	if p.Endpoint.IsValid() {
		pc.Endpoint = net.UDPAddrFromAddrPort(p.Endpoint)
	}
	for _, a := range p.Allowed {
		pc.AllowedIPs = append(pc.AllowedIPs, net.IPNet{IP: a.Addr().AsSlice(), Mask: net.CIDRMask(a.Bits(), a.Addr().BitLen())})
	}
	return pc
}

// standBy keeps a device peer for each rotating node's next key, with
// its endpoint and no allowed address (nothing is sent to it), and
// starts the watch that moves the node's allowed addresses to it once it
// has shaken hands: the rotating node switches keys and greets its peers
// (SetMeshKey), and traffic moves within one handshake and a watch tick
// instead of waiting for the control plane's view of the new key.
func (r *Router) standBy(plan []mesh.Peer) error {
	m := r.mesh
	var cfg wgtypes.Config
	want := map[mesh.Key]mesh.Key{}
	for _, p := range plan {
		if p.Next == (mesh.Key{}) {
			continue
		}
		want[p.Key] = p.Next
		if m.standby[p.Key] != p.Next {
			pc := wgtypes.PeerConfig{PublicKey: wgtypes.Key(p.Next), ReplaceAllowedIPs: true}
			if p.Endpoint.IsValid() {
				pc.Endpoint = net.UDPAddrFromAddrPort(p.Endpoint)
			}
			cfg.Peers = append(cfg.Peers, pc)
		}
	}
	for cur, next := range m.standby {
		if want[cur] == next {
			continue
		}
		if _, ok := m.peers[next]; !ok {
			cfg.Peers = append(cfg.Peers, wgtypes.PeerConfig{PublicKey: wgtypes.Key(next), Remove: true})
		}
	}
	if len(cfg.Peers) > 0 {
		if err := m.configure(cfg); err != nil {
			return fmt.Errorf("mesh: standby peers: %w", err)
		}
	}
	m.standby = want
	if len(want) > 0 && !m.watching {
		m.watching = true
		go r.watchStandby(m)
	}
	return nil
}

// standbyTick is how often the device is asked whether a standby peer
// has shaken hands.
const standbyTick = 50 * time.Millisecond

// watchStandby promotes standby peers that have shaken hands, until none
// is left.
func (r *Router) watchStandby(m *meshState) {
	t := time.NewTicker(standbyTick)
	defer t.Stop()
	for range t.C {
		r.mu.Lock()
		if r.mesh != m || len(m.standby) == 0 {
			m.watching = false
			r.mu.Unlock()
			return
		}
		if err := r.promoteLocked(); err != nil {
			r.log.Warn("mesh: standby peers", "err", err)
		}
		r.mu.Unlock()
	}
}

func (r *Router) promoteLocked() error {
	m := r.mesh
	d, err := m.wg.Device(m.dev)
	if err != nil {
		return err
	}
	shook := map[mesh.Key]bool{}
	for _, p := range d.Peers {
		if !p.LastHandshakeTime.IsZero() && p.LastHandshakeTime.Unix() != 0 {
			shook[mesh.Key(p.PublicKey)] = true
		}
	}
	var cfg wgtypes.Config
	for old, next := range m.standby {
		if !shook[next] {
			continue
		}
		p, ok := m.peers[old]
		if !ok {
			continue
		}
		pc := peerConfig(next, mesh.Peer{Allowed: p.Allowed})
		pc.UpdateOnly = true
		cfg.Peers = append(cfg.Peers, pc, wgtypes.PeerConfig{PublicKey: wgtypes.Key(old), Remove: true})
		delete(m.peers, old)
		delete(m.standby, old)
		p.Key, p.Next = next, mesh.Key{}
		m.peers[next] = p
		m.promoted[old] = next
		r.log.Info("mesh: a rotating node's new key took over", "node", p.Node, "key", next)
	}
	if len(cfg.Peers) == 0 {
		return nil
	}
	return m.configure(cfg)
}

// ApplyMesh brings the device's peers, the tenants' routes to remote pods,
// the rules and the DNS table to plan. cluster are the addresses of the
// other nodes and the servers, which pods may not reach through the
// host's egress.
func (r *Router) ApplyMesh(ctx context.Context, plan mesh.Plan, cluster []netip.Addr) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.mesh
	if m == nil {
		return errors.New("mesh: not started")
	}
	// Peers: the changed ones with all their allowed addresses, the gone
	// ones removed; the others (and their sessions) are left alone.
	var cfg wgtypes.Config
	want := map[mesh.Key]mesh.Peer{}
	promoted := map[mesh.Key]mesh.Key{}
	for _, p := range plan.Peers {
		// A view that has not caught up with a rotation that took over
		// (promoteLocked) names the old key: keep the new one.
		if next, ok := m.promoted[p.Key]; ok && (p.Next == next || p.Next == mesh.Key{}) {
			promoted[p.Key] = next
			p.Key, p.Next = next, mesh.Key{}
		}
		want[p.Key] = p
		if old, ok := m.peers[p.Key]; ok && old.Endpoint == p.Endpoint && samePrefixes(old.Allowed, p.Allowed) {
			continue
		}
		cfg.Peers = append(cfg.Peers, peerConfig(p.Key, p))
	}
	for k := range m.peers {
		if _, ok := want[k]; !ok {
			cfg.Peers = append(cfg.Peers, wgtypes.PeerConfig{PublicKey: wgtypes.Key(k), Remove: true})
		}
	}
	if len(cfg.Peers) > 0 {
		if err := m.configure(cfg); err != nil {
			return fmt.Errorf("mesh: peers: %w", err)
		}
	}
	m.peers, m.promoted = want, promoted
	var standby []mesh.Peer
	for _, p := range want {
		standby = append(standby, p)
	}
	if err := r.standBy(standby); err != nil {
		return err
	}

	// Routes in the tenants' tables.
	routes := map[meshRoute]bool{}
	src := map[netip.Addr]int{}
	var add, del []string
	for _, rt := range plan.Routes {
		idx, ok := r.st.Tenants[rt.Tenant]
		if !ok {
			continue // no pod of the tenant here (any more)
		}
		k := meshRoute{table: tenantTable(idx), addr: rt.Addr}
		routes[k] = true
		src[rt.Addr] = idx
		if !m.routes[k] {
			add = append(add, fmt.Sprintf("route replace %s/128 dev %s table %d", rt.Addr, meshName, k.table))
		}
	}
	for k := range m.routes {
		if !routes[k] {
			del = append(del, fmt.Sprintf("route del %s/128 dev %s table %d", k.addr, meshName, k.table))
		}
	}
	if len(del) > 0 {
		ipBatch(ctx, r.ns, true, del...)
	}
	if len(add) > 0 {
		if err := ipBatch(ctx, r.ns, false, add...); err != nil {
			return fmt.Errorf("mesh: routes: %w", err)
		}
	}
	m.routes = routes
	carriersChanged, err := r.applyCarriers(ctx, plan)
	if err != nil {
		return err
	}
	rulesChanged := carriersChanged || !mapsEqual(src, m.src) || !slices.Equal(cluster, m.cluster)
	m.src = src
	hostChanged := !slices.Equal(cluster, m.cluster)
	m.cluster = slices.Clone(cluster)
	if rulesChanged {
		if err := r.applyRules(ctx); err != nil {
			return err
		}
		rs := r.meshRules()
		r.st.Mesh = &rs
		if err := r.saveLocked(); err != nil {
			return err
		}
	}
	if hostChanged {
		_, router6 := r.uplink6()
		if err := nftApply(ctx, "", hostRules(r.host.NftTable, r.host.Link, r.st.Uplink.Addr(), router6, m.cluster)); err != nil {
			return err
		}
	}

	// Names of remote pods, beside the local ones (IDs apart: a pod that
	// moves here is briefly both).
	names := map[string]bool{}
	for _, n := range plan.Names {
		if _, ok := r.st.Tenants[n.Tenant]; !ok {
			continue
		}
		id := "mesh/" + n.ID
		names[id] = true
		e := dns.Entry{ID: id, Tenant: n.Tenant, Namespace: n.Namespace, Names: n.Names, IPv6: n.IPv6}
		// IPv4 only where the carrier routes it.
		if c, ok := m.carriers[n.Tenant]; ok {
			table := tenantTable(c.idx)
			if m.routes4[meshRoute4{table, c.dev, n.IPv4}] != "" {
				e.IPv4 = n.IPv4
			}
			for nw, a := range n.Overlays {
				if m.routes4[meshRoute4{table, c.dev, a}] != "" {
					if e.Overlays == nil {
						e.Overlays = map[string]netip.Addr{}
					}
					e.Overlays[nw] = a
				}
			}
		}
		r.names.Set(e)
	}
	for id := range m.names {
		if !names[id] {
			r.names.Delete(id)
		}
	}
	m.names = names
	return nil
}

// samePrefixes tells whether a and b hold the same prefixes, in any
// order (a device lists a peer's allowed addresses in an order of its
// own).
func samePrefixes(a, b []netip.Prefix) bool {
	if len(a) != len(b) {
		return false
	}
	set := map[netip.Prefix]bool{}
	for _, p := range a {
		set[p] = true
	}
	for _, p := range b {
		if !set[p] {
			return false
		}
	}
	return true
}

func mapsEqual(a, b map[netip.Addr]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// applyCarriers brings the IPv4 carrier to plan: this node's mesh
// address on wg0, a VXLAN device per carried tenant, forwarding and
// neighbour entries and /32 routes for the remote pods. A remote address
// that a local pod of the tenant holds is not routed (the local pod
// keeps it). It reports whether the rules' view changed.
func (r *Router) applyCarriers(ctx context.Context, plan mesh.Plan) (bool, error) {
	m := r.mesh
	changed := false
	if !m.addr.IsValid() && m.adopted && meshAddrIs(ctx, r.ns, plan.Addr) {
		// A previous router's, as this one would make it: kept.
		m.addr = plan.Addr
		changed = true
	}
	if plan.Addr != m.addr {
		// A new address (never, but for a renamed node): devices anew.
		var del []string
		for t, c := range m.carriers {
			del = append(del, "link del "+c.dev)
			delete(m.carriers, t)
		}
		if m.addr.IsValid() {
			del = append(del, fmt.Sprintf("addr del %s/128 dev %s", m.addr, meshName))
		}
		ipBatch(ctx, r.ns, true, del...)
		m.fdb, m.routes4 = map[fdbEntry]bool{}, map[meshRoute4]string{}
		ipBatchArgs(ctx, r.ns, true, []string{"-6"}, fmt.Sprintf("rule del to %s lookup %d", mesh.NodePrefix, meshTable))
		if err := ipBatchArgs(ctx, r.ns, false, []string{"-6"},
			fmt.Sprintf("addr replace %s/128 dev %s nodad", plan.Addr, meshName),
			fmt.Sprintf("route replace %s dev %s table %d", mesh.NodePrefix, meshName, meshTable),
			// Before the tenants' mark rules (pref 1000): the carrier's
			// packets keep the mark of the packet they carry.
			fmt.Sprintf("rule add to %s lookup %d pref 900", mesh.NodePrefix, meshTable)); err != nil {
			return false, fmt.Errorf("mesh address: %w", err)
		}
		m.addr = plan.Addr
		changed = true
	}

	// Devices.
	want := map[string]carrier{}
	for _, c := range plan.Carriers {
		idx, ok := r.st.Tenants[c.Tenant]
		if !ok {
			continue
		}
		want[c.Tenant] = carrier{dev: fmt.Sprintf("vx%d", idx), idx: idx, vni: c.VNI, mac: c.MAC}
	}
	var del, add []string
	for t, c := range m.carriers {
		if w, ok := want[t]; !ok || w != c {
			del = append(del, "link del "+c.dev)
			delete(m.carriers, t)
			changed = true
			for e := range m.fdb {
				if e.dev == c.dev {
					delete(m.fdb, e)
				}
			}
			for k := range m.routes4 {
				if k.dev == c.dev {
					delete(m.routes4, k)
				}
			}
		}
	}
	for t, c := range want {
		if _, ok := m.carriers[t]; ok {
			continue
		}
		if m.adopted && vxlanIs(ctx, r.ns, c, m.addr) {
			// A previous router's, as this one would make it: kept,
			// and the traffic in it.
			m.carriers[t] = c
			changed = true
			continue
		}
		// A device of the name left by a previous process goes first.
		del = append(del, "link del "+c.dev)
		// No UDP checksum: WireGuard authenticates the whole packet, and
		// a checksum would be computed per segment (in wireguard-go,
		// which gets them one by one: wg0 takes no tunnel offload).
		add = append(add,
			fmt.Sprintf("link add %s address %s mtu %d type vxlan id %d local %s dstport %d nolearning udp6zerocsumtx udp6zerocsumrx dev %s",
				c.dev, c.mac, CarrierMTU, c.vni, m.addr, vxlanPort, meshName),
			// No IPv6 link-local address: nothing but the tenants' IPv4
			// goes into the carrier.
			"link set "+c.dev+" addrgenmode none",
			"link set "+c.dev+" up")
	}
	if len(del) > 0 {
		ipBatch(ctx, r.ns, true, del...)
	}
	if len(add) > 0 {
		if err := ipBatch(ctx, r.ns, false, add...); err != nil {
			return true, fmt.Errorf("mesh carrier: %w", err)
		}
		for t, c := range want {
			m.carriers[t] = c
		}
		changed = true
	}

	// Remote pods: forwarding entries, neighbours, routes.
	local := r.localAddrs4()
	fdb := map[fdbEntry]bool{}
	routes4 := map[meshRoute4]string{}
	var in []vxIn
	for _, rt := range plan.Routes4 {
		c, ok := m.carriers[rt.Tenant]
		if !ok || local[addr4Key{rt.Tenant, rt.Addr}] {
			continue
		}
		fdb[fdbEntry{dev: c.dev, mac: rt.MAC, dst: rt.NodeAddr}] = true
		routes4[meshRoute4{table: tenantTable(c.idx), dev: c.dev, addr: rt.Addr}] = rt.MAC
		in = append(in, vxIn{node: rt.NodeAddr, vni: c.vni, src: rt.Addr})
	}
	var fdbAdd, fdbDel []string
	for e := range fdb {
		if !m.fdb[e] {
			fdbAdd = append(fdbAdd, fmt.Sprintf("fdb replace %s dev %s dst %s self permanent", e.mac, e.dev, e.dst))
		}
	}
	for e := range m.fdb {
		if !fdb[e] {
			fdbDel = append(fdbDel, fmt.Sprintf("fdb del %s dev %s dst %s self", e.mac, e.dev, e.dst))
		}
	}
	del, add = nil, nil
	for k, mac := range routes4 {
		if m.routes4[k] != mac {
			add = append(add,
				fmt.Sprintf("neigh replace %s lladdr %s dev %s nud permanent", k.addr, mac, k.dev),
				fmt.Sprintf("route replace %s/32 dev %s table %d", k.addr, k.dev, k.table))
		}
	}
	for k := range m.routes4 {
		if _, ok := routes4[k]; !ok {
			del = append(del,
				fmt.Sprintf("route del %s/32 dev %s table %d", k.addr, k.dev, k.table),
				fmt.Sprintf("neigh del %s dev %s", k.addr, k.dev))
		}
	}
	if len(del) > 0 {
		ipBatch(ctx, r.ns, true, del...)
	}
	if len(fdbDel) > 0 {
		bridgeBatch(ctx, r.ns, true, fdbDel...)
	}
	if len(fdbAdd) > 0 {
		if err := bridgeBatch(ctx, r.ns, false, fdbAdd...); err != nil {
			return true, fmt.Errorf("mesh carrier: %w", err)
		}
	}
	if len(add) > 0 {
		if err := ipBatch(ctx, r.ns, false, add...); err != nil {
			return true, fmt.Errorf("mesh carrier: %w", err)
		}
	}
	m.fdb, m.routes4 = fdb, routes4
	slices.SortFunc(in, vxIn.compare)
	in = slices.Compact(in)
	if !slices.Equal(in, m.vxIn) {
		m.vxIn = in
		changed = true
	}
	return changed, nil
}

// meshAddrIs tells whether the router namespace in ns has addr on wg0
// and the rule that routes the nodes' mesh addresses through it.
func meshAddrIs(ctx context.Context, ns string, addr netip.Addr) bool {
	if !addr.IsValid() {
		return false
	}
	out, err := run(ctx, ns, "", "ip", "-6", "addr", "show", "dev", meshName)
	if err != nil || !strings.Contains(out, " "+addr.String()+"/128 ") {
		return false
	}
	out, err = run(ctx, ns, "", "ip", "-6", "rule", "show", "pref", "900")
	return err == nil && strings.Contains(out, fmt.Sprintf("to %s lookup %d", mesh.NodePrefix, meshTable))
}

// vxlanIs tells whether the router namespace in ns has c's device as
// applyCarriers makes it, over local.
func vxlanIs(ctx context.Context, ns string, c carrier, local netip.Addr) bool {
	out, err := run(ctx, ns, "", "ip", "-j", "-d", "link", "show", "dev", c.dev)
	if err != nil {
		return false
	}
	var links []struct {
		Address  string `json:"address"`
		MTU      int    `json:"mtu"`
		LinkInfo struct {
			Kind string `json:"info_kind"`
			Data struct {
				ID       uint32 `json:"id"`
				Local6   string `json:"local6"`
				Link     string `json:"link"`
				Port     int    `json:"port"`
				Learning bool   `json:"learning"`
			} `json:"info_data"`
		} `json:"linkinfo"`
	}
	if json.Unmarshal([]byte(out), &links) != nil || len(links) != 1 {
		return false
	}
	l, d := links[0], links[0].LinkInfo.Data
	return l.LinkInfo.Kind == "vxlan" && strings.EqualFold(l.Address, c.mac) && l.MTU == CarrierMTU &&
		d.ID == c.vni && d.Local6 == local.String() && d.Link == meshName && d.Port == vxlanPort && !d.Learning
}

type addr4Key struct {
	tenant string
	addr   netip.Addr
}

// localAddrs4 are the IPv4 addresses, default and overlay, of the pods
// wired here, by tenant.
func (r *Router) localAddrs4() map[addr4Key]bool {
	out := map[addr4Key]bool{}
	for id, p := range r.st.Pods {
		if a, ok := r.alloc.Lookup(id); ok && a.IPv4.IsValid() {
			out[addr4Key{p.Tenant, a.IPv4}] = true
		}
		for _, o := range p.Overlays {
			out[addr4Key{p.Tenant, o.Addr}] = true
		}
	}
	return out
}

// meshRules are the rules' view of the mesh.
func (r *Router) meshRules() meshRuleSet {
	if r.mesh == nil {
		if r.st.Mesh != nil {
			return *r.st.Mesh
		}
		return meshRuleSet{}
	}
	rs := meshRuleSet{Dev: meshName, Src: r.mesh.src, Addr: r.mesh.addr, In: r.mesh.vxIn}
	for _, c := range r.mesh.carriers {
		if rs.Carriers == nil {
			rs.Carriers = map[string]int{}
		}
		rs.Carriers[c.dev] = c.idx
	}
	return rs
}

// closeMesh lets go of the device, which goes on carrying the pods'
// traffic, as the pods go on running: the next router adopts it
// (StartMesh). Destroy and RemoveHostShare end it.
func (r *Router) closeMesh() {
	if r.mesh != nil {
		r.mesh.wg.Close()
		r.mesh = nil
	}
}
