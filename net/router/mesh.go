package router

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/macro-cloud/macro/net/dns"
	"github.com/macro-cloud/macro/net/mesh"
)

// The mesh joins the node's router to the other nodes' routers: a
// WireGuard device (wireguard-go, in this process) whose TUN interface
// lives in the router namespace and whose UDP socket lives in the host's
// namespace, where the other nodes reach it. Remote pods' /128s are routed
// through it in their tenant's table; what comes out of it is marked with
// the tenant of its source address (which WireGuard has checked against
// the sending node's allowed addresses) and forwarded only to that
// tenant's pods.
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
	dev    *device.Device
	port   uint16
	peers  map[mesh.Key]mesh.Peer
	routes map[meshRoute]bool
	src    map[netip.Addr]int // remote pod address -> tenant index
	names  map[string]bool    // DNS table IDs of remote pods
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
// returns the port. Routes and peers come with ApplyMesh.
func (r *Router) StartMesh(ctx context.Context, key mesh.Key, port uint16) (uint16, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mesh != nil {
		return r.mesh.port, nil
	}
	// A device left by a process that died with it open is gone with it;
	// one of the same name held by a live process is not ours.
	var td tun.Device
	err := inNetns(r.ns, func() error {
		var err error
		td, err = tun.CreateTUN(meshName, MeshMTU)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("mesh: TUN device in the router namespace: %w", err)
	}
	log := r.log.With("subsystem", "mesh")
	logger := &device.Logger{
		Verbosef: func(format string, args ...any) { log.Debug(fmt.Sprintf(format, args...)) },
		Errorf:   func(format string, args ...any) { log.Warn(fmt.Sprintf(format, args...)) },
	}
	// The bind's sockets are opened by this goroutine, in the host's
	// namespace (inNetns has given its thread back).
	dev := device.NewDevice(fixedMTU{td, MeshMTU}, conn.NewStdNetBind(), logger)
	cfg := fmt.Sprintf("private_key=%s\nlisten_port=%d\n", hex.EncodeToString(key[:]), port)
	if err := dev.IpcSet(cfg); err != nil {
		// The port is taken (another node on this machine): any port
		// does, the node registers the one it got.
		log.Warn("mesh port taken: using another", "port", port, "err", err)
		if err := dev.IpcSet(fmt.Sprintf("private_key=%s\nlisten_port=0\n", hex.EncodeToString(key[:]))); err != nil {
			dev.Close()
			return 0, fmt.Errorf("mesh: configure: %w", err)
		}
	}
	if err := dev.Up(); err != nil {
		dev.Close()
		return 0, fmt.Errorf("mesh: up: %w", err)
	}
	got, err := listenPort(dev)
	if err != nil {
		dev.Close()
		return 0, err
	}
	if err := ipBatch(ctx, r.ns, false, "link set "+meshName+" up"); err != nil {
		dev.Close()
		return 0, fmt.Errorf("mesh: %w", err)
	}
	r.mesh = &meshState{dev: dev, port: got, peers: map[mesh.Key]mesh.Peer{}, routes: map[meshRoute]bool{},
		src: map[netip.Addr]int{}, names: map[string]bool{},
		carriers: map[string]carrier{}, fdb: map[fdbEntry]bool{}, routes4: map[meshRoute4]string{},
		standby: map[mesh.Key]mesh.Key{}, promoted: map[mesh.Key]mesh.Key{}}
	return got, nil
}

func listenPort(dev *device.Device) (uint16, error) {
	st, err := dev.IpcGet()
	if err != nil {
		return 0, fmt.Errorf("mesh: %w", err)
	}
	for _, line := range strings.Split(st, "\n") {
		if v, ok := strings.CutPrefix(line, "listen_port="); ok {
			p, err := strconv.ParseUint(v, 10, 16)
			return uint16(p), err
		}
	}
	return 0, errors.New("mesh: the device has no listen port")
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
	var uapi strings.Builder
	fmt.Fprintf(&uapi, "private_key=%s\n", hex.EncodeToString(key[:]))
	for k := range r.mesh.peers {
		// Turning the keepalive on sends one at once.
		fmt.Fprintf(&uapi, "public_key=%s\npersistent_keepalive_interval=0\npersistent_keepalive_interval=25\n", hex.EncodeToString(k[:]))
	}
	return r.mesh.dev.IpcSet(uapi.String())
}

// standBy keeps a device peer for each rotating node's next key, with
// its endpoint and no allowed address (nothing is sent to it), and
// starts the watch that moves the node's allowed addresses to it once it
// has shaken hands: the rotating node switches keys and greets its peers
// (SetMeshKey), and traffic moves within one handshake and a watch tick
// instead of waiting for the control plane's view of the new key.
func (r *Router) standBy(plan []mesh.Peer) error {
	m := r.mesh
	var uapi strings.Builder
	want := map[mesh.Key]mesh.Key{}
	for _, p := range plan {
		if p.Next == (mesh.Key{}) {
			continue
		}
		want[p.Key] = p.Next
		if m.standby[p.Key] != p.Next {
			fmt.Fprintf(&uapi, "public_key=%s\nendpoint=%s\nreplace_allowed_ips=true\n", hex.EncodeToString(p.Next[:]), p.Endpoint)
		}
	}
	for cur, next := range m.standby {
		if want[cur] == next {
			continue
		}
		if _, ok := m.peers[next]; !ok {
			fmt.Fprintf(&uapi, "public_key=%s\nremove=true\n", hex.EncodeToString(next[:]))
		}
	}
	if uapi.Len() > 0 {
		if err := m.dev.IpcSet(uapi.String()); err != nil {
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
	st, err := m.dev.IpcGet()
	if err != nil {
		return err
	}
	shook := map[string]bool{}
	var cur string
	for _, line := range strings.Split(st, "\n") {
		if v, ok := strings.CutPrefix(line, "public_key="); ok {
			cur = v
		} else if v, ok := strings.CutPrefix(line, "last_handshake_time_sec="); ok && v != "0" {
			shook[cur] = true
		}
	}
	var uapi strings.Builder
	for old, next := range m.standby {
		if !shook[hex.EncodeToString(next[:])] {
			continue
		}
		p, ok := m.peers[old]
		if !ok {
			continue
		}
		fmt.Fprintf(&uapi, "public_key=%s\npersistent_keepalive_interval=25\nreplace_allowed_ips=true\n", hex.EncodeToString(next[:]))
		for _, a := range p.Allowed {
			fmt.Fprintf(&uapi, "allowed_ip=%s\n", a)
		}
		fmt.Fprintf(&uapi, "public_key=%s\nremove=true\n", hex.EncodeToString(old[:]))
		delete(m.peers, old)
		delete(m.standby, old)
		p.Key, p.Next = next, mesh.Key{}
		m.peers[next] = p
		m.promoted[old] = next
		r.log.Info("mesh: a rotating node's new key took over", "node", p.Node, "key", next)
	}
	if uapi.Len() == 0 {
		return nil
	}
	return m.dev.IpcSet(uapi.String())
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
	var uapi strings.Builder
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
		if old, ok := m.peers[p.Key]; ok && old.Endpoint == p.Endpoint && slices.Equal(old.Allowed, p.Allowed) {
			continue
		}
		fmt.Fprintf(&uapi, "public_key=%s\nendpoint=%s\npersistent_keepalive_interval=25\nreplace_allowed_ips=true\n", hex.EncodeToString(p.Key[:]), p.Endpoint)
		for _, a := range p.Allowed {
			fmt.Fprintf(&uapi, "allowed_ip=%s\n", a)
		}
	}
	for k := range m.peers {
		if _, ok := want[k]; !ok {
			fmt.Fprintf(&uapi, "public_key=%s\nremove=true\n", hex.EncodeToString(k[:]))
		}
	}
	if uapi.Len() > 0 {
		if err := m.dev.IpcSet(uapi.String()); err != nil {
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

// CloseMesh stops the device; its interface and routes go with it.
func (r *Router) closeMesh() {
	if r.mesh != nil {
		r.mesh.dev.Close()
		r.mesh = nil
	}
}
