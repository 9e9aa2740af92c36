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
const (
	meshName = "wg0"
	// MeshMTU leaves room for WireGuard's 80 bytes over IPv6 in a 1500
	// byte underlay.
	MeshMTU = 1420
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
		src: map[netip.Addr]int{}, names: map[string]bool{}}
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
func (r *Router) SetMeshKey(key mesh.Key) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mesh == nil {
		return errors.New("mesh: not started")
	}
	return r.mesh.dev.IpcSet("private_key=" + hex.EncodeToString(key[:]) + "\n")
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
	for _, p := range plan.Peers {
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
	m.peers = want

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
	rulesChanged := !mapsEqual(src, m.src) || !slices.Equal(cluster, m.cluster)
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
		r.names.Set(dns.Entry{ID: id, Tenant: n.Tenant, Namespace: n.Namespace, Names: n.Names, IPv6: n.IPv6})
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

// meshRules are the rules' view of the mesh.
func (r *Router) meshRules() meshRuleSet {
	if r.mesh == nil {
		return meshRuleSet{}
	}
	return meshRuleSet{Dev: meshName, Src: r.mesh.src}
}

// CloseMesh stops the device; its interface and routes go with it.
func (r *Router) closeMesh() {
	if r.mesh != nil {
		r.mesh.dev.Close()
		r.mesh = nil
	}
}
