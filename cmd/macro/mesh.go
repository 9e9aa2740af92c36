package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/macro-cloud/macro/agent"
	"github.com/macro-cloud/macro/net/mesh"
	"github.com/macro-cloud/macro/net/router"
	"github.com/macro-cloud/macro/types"
)

// meshConfig are the mesh flags of a node.
type meshConfig struct {
	on       bool
	port     int
	endpoint string
}

// nodeMesh is a node's end of the VPC mesh: its key (DATA-DIR/mesh), its
// WireGuard device in the router, and the loop that follows the control
// plane's view into the router.
type nodeMesh struct {
	r       *router.Router
	keys    mesh.KeyStore
	cluster string
	name    string
	servers []netip.Addr
	log     *slog.Logger

	mu       sync.Mutex
	key      mesh.Key
	gen      int64
	next     *mesh.Key // announced, not yet used (a rotation)
	endpoint string
}

// startNodeMesh starts the node's WireGuard device and decides the
// endpoint other nodes reach it on: --mesh-endpoint, else defaultHost
// (when not empty), else the address this machine reaches the first
// server from.
func startNodeMesh(ctx context.Context, mc meshConfig, r *router.Router, dataDir, cluster, name, defaultHost string, servers []string, log *slog.Logger) (*nodeMesh, error) {
	if mc.port < 0 || mc.port > 65535 {
		return nil, fmt.Errorf("--mesh-port %d: want 0 to 65535", mc.port)
	}
	// The endpoint first: a bad flag starts nothing.
	host, fwdPort := mc.endpoint, uint16(0)
	if h, p, err := net.SplitHostPort(mc.endpoint); err == nil {
		host = h
		if n, err := strconv.ParseUint(p, 10, 16); err == nil && n > 0 {
			fwdPort = uint16(n) // a port forwarded to ours
		}
	}
	if host == "" {
		host = defaultHost
	}
	if host == "" {
		var err error
		if host, err = meshHostToward(servers); err != nil {
			return nil, fmt.Errorf("mesh endpoint (set --mesh-endpoint): %w", err)
		}
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return nil, fmt.Errorf("--mesh-endpoint %q: want an IP address, optionally with :PORT", mc.endpoint)
	}
	m := &nodeMesh{r: r, keys: mesh.KeyStore{Dir: filepath.Join(dataDir, "mesh")}, cluster: cluster, name: name,
		log: log.With("subsystem", "mesh")}
	if m.key, m.gen, err = m.keys.Load(); err != nil {
		return nil, fmt.Errorf("mesh key: %w", err)
	}
	port, err := r.StartMesh(ctx, m.key, uint16(mc.port))
	if err != nil {
		return nil, err
	}
	if fwdPort != 0 {
		port = fwdPort
	}
	for _, s := range servers {
		if a := serverAddr(ctx, s); a.IsValid() {
			m.servers = append(m.servers, a)
		}
	}
	m.endpoint = netip.AddrPortFrom(addr.Unmap(), port).String()
	m.log.Info("mesh up", "endpoint", m.endpoint, "key", m.key.Public())
	return m, nil
}

// serverAddr is the IP address of a server URL's host ("" when it does not
// resolve).
func serverAddr(ctx context.Context, server string) netip.Addr {
	u, err := url.Parse(server)
	if err != nil {
		return netip.Addr{}
	}
	if a, err := netip.ParseAddr(u.Hostname()); err == nil {
		return a.Unmap()
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", u.Hostname())
	if err != nil || len(ips) == 0 {
		return netip.Addr{}
	}
	return ips[0].Unmap()
}

// meshHostToward is this machine's address on the route to the first
// server that has one.
func meshHostToward(servers []string) (string, error) {
	var last error
	for _, s := range servers {
		h, err := localAddrToward(s)
		if err == nil {
			return h, nil
		}
		last = err
	}
	if last == nil {
		last = fmt.Errorf("no servers")
	}
	return "", last
}

// serverMeshHost is the address a server's own node offers the mesh by
// default: the host of --api-addr when it names one, else the source
// address of the machine's default route; "" when it has neither.
func serverMeshHost(apiAddr string) string {
	if h, _, err := net.SplitHostPort(apiAddr); err == nil {
		if a, err := netip.ParseAddr(h); err == nil && !a.IsUnspecified() {
			return a.Unmap().String()
		}
	}
	for _, probe := range []string{"192.0.2.1:9", "[2001:db8::1]:9"} { // documentation addresses: nothing is sent
		if c, err := net.Dial("udp", probe); err == nil {
			a := c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
			c.Close()
			return a.String()
		}
	}
	return ""
}

// pollMesh is the mesh stream of a server's own node: its node API's
// view, each time it changes.
func pollMesh(ctx context.Context, api interface {
	Mesh(context.Context, string) (types.MeshView, error)
}, node string) <-chan types.MeshView {
	out := make(chan types.MeshView, 1)
	go func() {
		defer close(out)
		var last types.MeshView
		first := true
		for {
			if v, err := api.Mesh(ctx, node); err == nil && (first || !reflect.DeepEqual(v, last)) {
				last, first = v, false
				select {
				case <-out:
				default:
				}
				out <- v
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}()
	return out
}

// node adds the mesh's key and endpoint to the node's record.
func (m *nodeMesh) node(n types.Node) types.Node {
	m.mu.Lock()
	defer m.mu.Unlock()
	n.MeshKey = m.key.Public().String()
	n.MeshEndpoint = m.endpoint
	if m.next != nil {
		n.MeshNextKey = m.next.Public().String()
	}
	n.HostAddrs = hostAddrs()
	return n
}

// hostAddrs are this machine's addresses, loopback and link-local aside,
// sorted.
func hostAddrs() []string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range addrs {
		p, err := netip.ParsePrefix(a.String())
		if err != nil {
			continue
		}
		ip := p.Addr().Unmap()
		if ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsMulticast() || ip.IsUnspecified() {
			continue
		}
		out = append(out, ip)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	out = slices.Compact(out)
	strs := make([]string, len(out))
	for i, a := range out {
		strs[i] = a.String()
	}
	return strs
}

// meshServer registers the node with its current mesh key.
type meshServer struct {
	agent.Server
	m *nodeMesh
}

func (s meshServer) RegisterNode(ctx context.Context, n types.Node) error {
	return s.Server.RegisterNode(ctx, s.m.node(n))
}

// run follows the views into the router until ctx ends. register re-records
// the node at once after a key rotation.
func (m *nodeMesh) run(ctx context.Context, views <-chan types.MeshView, register func(context.Context) error) {
	var last types.MeshView
	var clashes []string
	have := false
	again := time.NewTicker(10 * time.Second)
	defer again.Stop()
	for {
		select {
		case v, ok := <-views:
			if !ok {
				return
			}
			last, have = v, true
			m.rotate(ctx, v.RotateKey, register)
		case <-again.C:
			// Tenants whose first pod here came after their view.
		case <-ctx.Done():
			return
		}
		if !have {
			continue
		}
		plan := mesh.Compute(m.cluster, m.name, last)
		if !slices.Equal(plan.Clashes, clashes) {
			clashes = plan.Clashes
			if len(clashes) > 0 {
				m.log.Warn("tenants share a VXLAN network identifier: their IPv4 does not cross nodes here", "tenants", clashes)
			}
		}
		cluster := slices.Clone(m.servers)
		for _, p := range plan.Peers {
			cluster = append(cluster, p.Endpoint.Addr().Unmap())
		}
		for _, n := range last.Nodes {
			if n.Name == m.name {
				continue
			}
			for _, s := range n.Addrs {
				if a, err := netip.ParseAddr(s); err == nil {
					cluster = append(cluster, a.Unmap())
				}
			}
		}
		slices.SortFunc(cluster, netip.Addr.Compare)
		cluster = slices.Compact(cluster)
		if err := m.r.ApplyMesh(ctx, plan, cluster); err != nil {
			m.log.Warn("apply mesh", "err", err)
		}
	}
}

// rotate makes a new key when the control plane asks for generation gen
// and this node has made fewer.
//
// Make before break: the new key is announced first (types.Node's
// MeshNextKey), the others stand by for it, and after meshKeyOverlap the
// node switches and greets them (router.SetMeshKey): traffic moves over
// within a handshake. A node whose view came late falls back to the new
// key in its view, as before.
func (m *nodeMesh) rotate(ctx context.Context, gen int64, register func(context.Context) error) {
	m.mu.Lock()
	if gen <= m.gen || m.next != nil {
		m.mu.Unlock()
		return
	}
	next, err := mesh.NewPrivateKey()
	if err != nil {
		m.mu.Unlock()
		m.log.Warn("mesh key rotation", "err", err)
		return
	}
	m.next = &next
	m.mu.Unlock()
	m.log.Info("mesh key rotation: the next key is announced", "generation", gen, "key", next.Public())
	if err := register(ctx); err != nil {
		m.log.Warn("register the next mesh key", "err", err)
	}
	go func() {
		select {
		case <-time.After(meshKeyOverlap):
		case <-ctx.Done():
			return
		}
		m.mu.Lock()
		err := m.keys.Save(next, gen)
		if err == nil {
			err = m.r.SetMeshKey(next)
		}
		m.next = nil // on failure, the next view asks again
		if err != nil {
			m.mu.Unlock()
			m.log.Warn("mesh key rotation", "err", err)
			return
		}
		m.key, m.gen = next, gen
		m.mu.Unlock()
		m.log.Info("mesh key rotated", "generation", gen, "key", next.Public())
		if err := register(ctx); err != nil {
			m.log.Warn("register the new mesh key", "err", err)
		}
	}()
}

// meshKeyOverlap is how long a rotating node announces its next key
// before it uses it: the other nodes' views carry it within about two
// seconds (a server drops its node cache on the registration; the view
// stream polls each second).
const meshKeyOverlap = 2500 * time.Millisecond

// serverNodeMesh is the mesh of a server's own node, nil (logged) when it
// cannot have one: a single machine does not need it.
func serverNodeMesh(ctx context.Context, cfg serverConfig, r *router.Router, dataDir, cluster, name string, log *slog.Logger) *nodeMesh {
	host := serverMeshHost(cfg.apiAddr)
	if cfg.mesh.endpoint == "" && host == "" {
		log.Info("no mesh: this machine has no address for other nodes to reach (set --mesh-endpoint)")
		return nil
	}
	nm, err := startNodeMesh(ctx, cfg.mesh, r, dataDir, cluster, name, host, nil, log)
	if err != nil {
		log.Warn("no mesh", "err", err)
		return nil
	}
	return nm
}
