// Package dns is the DNS server every node runs for its pods. A pod asks
// by its own (IPv6) address, which tells the server its tenant and
// namespace; it then answers:
//
//   - <name>: the pods called name (their own name or an alias) in the
//     asker's namespace, all of them when several share an alias;
//   - <name>.<namespace>: the same in another namespace of the asker's
//     tenant;
//
// with AAAA for VPC addresses and A for IPv4: the pod's address on the
// overlays (networks with a subnet) it shares with the asker, else its
// address on its namespace's default overlay.
// Single-label names are always the VPC's: one that no pod of the asker's
// namespace has is NXDOMAIN, never asked upstream, so another tenant's
// names cannot resolve and do not leak. Two-label names whose second label
// is none of the tenant's namespaces, and every other name, go to the
// upstream resolvers (the host's).
//
// Names come from a Directory: a Table that the node's router fills from
// the pods it wires today, and that the cluster issue fills from the
// control plane.
package dns

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	mdns "github.com/miekg/dns"
)

// TTL of the VPC's answers: short, pods come and go.
const TTL = 5

// Asker is the pod that asks: its tenant, namespace and the overlays
// (network IDs) it has an address on.
type Asker struct {
	Tenant    string
	Namespace string
	Overlays  map[string]netip.Addr
}

// Directory is what the server knows about pods.
type Directory interface {
	// Client returns the pod with address addr (its VPC IPv6 address).
	Client(addr netip.Addr) (Asker, bool)
	// Lookup returns the addresses of the pods called name in the
	// namespace of the asker's tenant, as the asker sees them; found is
	// false when no pod there has that name.
	Lookup(asker Asker, namespace, name string) (addrs []netip.Addr, found bool)
	// HasNamespace reports whether the tenant has the namespace.
	HasNamespace(tenant, namespace string) bool
}

// Entry is one pod as the Table knows it.
type Entry struct {
	ID        string
	Tenant    string
	Namespace string
	// Names are the pod's name and its aliases.
	Names []string
	IPv6  netip.Addr
	IPv4  netip.Addr // invalid when the pod has none
	// Overlays are the pod's addresses on overlays with a subnet, by
	// network ID.
	Overlays map[string]netip.Addr
	// Link is the node's end of the pod's interface (its veth in the
	// router): a query over IPv4 is known by the link it came in on.
	Link string
}

// Table is an in-memory Directory, safe for concurrent use.
type Table struct {
	mu      sync.RWMutex
	byID    map[string]Entry
	byAddr  map[netip.Addr]string      // IPv6 -> id
	byLink  map[string]string          // Link -> id
	byAddr4 map[string]string          // tenant\x00IPv4 -> id (default and overlay addresses)
	byName  map[string]map[string]bool // tenant\x00ns\x00name -> ids
	nsCount map[string]int             // tenant\x00ns -> entries
}

var _ Directory = (*Table)(nil)

// NewTable returns an empty Table.
func NewTable() *Table {
	return &Table{byID: map[string]Entry{}, byAddr: map[netip.Addr]string{}, byLink: map[string]string{}, byAddr4: map[string]string{}, byName: map[string]map[string]bool{}, nsCount: map[string]int{}}
}

func nameKey(tenant, ns, name string) string {
	return tenant + "\x00" + strings.ToLower(ns) + "\x00" + strings.ToLower(name)
}

func nsKey(tenant, ns string) string { return tenant + "\x00" + strings.ToLower(ns) }

// Set adds or replaces the entry with e.ID.
func (t *Table) Set(e Entry) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.deleteLocked(e.ID)
	t.byID[e.ID] = e
	if e.IPv6.IsValid() {
		t.byAddr[e.IPv6] = e.ID
	}
	if e.Link != "" {
		t.byLink[e.Link] = e.ID
	}
	for _, a := range e.addrs4() {
		t.byAddr4[e.Tenant+"\x00"+a.String()] = e.ID
	}
	for _, n := range e.Names {
		k := nameKey(e.Tenant, e.Namespace, n)
		if t.byName[k] == nil {
			t.byName[k] = map[string]bool{}
		}
		t.byName[k][e.ID] = true
	}
	t.nsCount[nsKey(e.Tenant, e.Namespace)]++
}

// Delete removes the entry with id.
func (t *Table) Delete(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.deleteLocked(id)
}

func (t *Table) deleteLocked(id string) {
	e, ok := t.byID[id]
	if !ok {
		return
	}
	delete(t.byID, id)
	if t.byAddr[e.IPv6] == id {
		delete(t.byAddr, e.IPv6)
	}
	if t.byLink[e.Link] == id {
		delete(t.byLink, e.Link)
	}
	for _, a := range e.addrs4() {
		if k := e.Tenant + "\x00" + a.String(); t.byAddr4[k] == id {
			delete(t.byAddr4, k)
		}
	}
	for _, n := range e.Names {
		k := nameKey(e.Tenant, e.Namespace, n)
		delete(t.byName[k], id)
		if len(t.byName[k]) == 0 {
			delete(t.byName, k)
		}
	}
	nk := nsKey(e.Tenant, e.Namespace)
	if t.nsCount[nk]--; t.nsCount[nk] <= 0 {
		delete(t.nsCount, nk)
	}
}

// Client implements Directory.
func (t *Table) Client(addr netip.Addr) (Asker, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	id, ok := t.byAddr[addr.Unmap()]
	if !ok {
		return Asker{}, false
	}
	e := t.byID[id]
	return Asker{Tenant: e.Tenant, Namespace: e.Namespace, Overlays: e.Overlays}, true
}

// addrs4 are the entry's IPv4 addresses: default and overlays.
func (e Entry) addrs4() []netip.Addr {
	var out []netip.Addr
	if e.IPv4.IsValid() {
		out = append(out, e.IPv4)
	}
	for _, a := range e.Overlays {
		out = append(out, a)
	}
	return out
}

func (t *Table) asker(id string, ok bool) (Asker, bool) {
	if !ok {
		return Asker{}, false
	}
	e := t.byID[id]
	return Asker{Tenant: e.Tenant, Namespace: e.Namespace, Overlays: e.Overlays}, true
}

// ClientOnLink returns the pod whose interface is link (see Entry.Link).
func (t *Table) ClientOnLink(link string) (Asker, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	id, ok := t.byLink[link]
	return t.asker(id, ok)
}

// ClientV4 returns the tenant's pod with IPv4 address addr (IPv4
// addresses are unique only within a tenant).
func (t *Table) ClientV4(tenant string, addr netip.Addr) (Asker, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	id, ok := t.byAddr4[tenant+"\x00"+addr.Unmap().String()]
	return t.asker(id, ok)
}

// Lookup implements Directory.
func (t *Table) Lookup(asker Asker, ns, name string) ([]netip.Addr, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	ids := t.byName[nameKey(asker.Tenant, ns, name)]
	if len(ids) == 0 {
		return nil, false
	}
	var out []netip.Addr
	for id := range ids {
		e := t.byID[id]
		if e.IPv6.IsValid() {
			out = append(out, e.IPv6)
		}
		shared := false
		for nw, a := range e.Overlays {
			if _, ok := asker.Overlays[nw]; ok {
				out = append(out, a)
				shared = true
			}
		}
		if !shared && e.IPv4.IsValid() {
			out = append(out, e.IPv4)
		}
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return out, true
}

// HasNamespace implements Directory.
func (t *Table) HasNamespace(tenant, ns string) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.nsCount[nsKey(tenant, ns)] > 0
}

// Answer decides the reply to req, asked by a pod of tenant's namespace.
// It returns forward=true (and no reply) for names that are not the VPC's.
func Answer(dir Directory, asker Asker, req *mdns.Msg) (resp *mdns.Msg, forward bool) {
	tenant, namespace := asker.Tenant, asker.Namespace
	resp = new(mdns.Msg)
	resp.SetReply(req)
	resp.RecursionAvailable = true
	if req.Opcode != mdns.OpcodeQuery {
		resp.SetRcode(req, mdns.RcodeNotImplemented)
		return resp, false
	}
	if len(req.Question) != 1 {
		resp.SetRcode(req, mdns.RcodeFormatError)
		return resp, false
	}
	q := req.Question[0]
	if q.Qclass != mdns.ClassINET && q.Qclass != mdns.ClassANY {
		return nil, true
	}
	labels := mdns.SplitDomainName(q.Name)
	var name, ns string
	switch {
	case len(labels) == 1:
		name, ns = labels[0], namespace
	case len(labels) == 2 && dir.HasNamespace(tenant, labels[1]):
		name, ns = labels[0], labels[1]
	default:
		return nil, true
	}
	resp.Authoritative = true
	addrs, found := dir.Lookup(asker, ns, name)
	if !found {
		resp.SetRcode(req, mdns.RcodeNameError)
		return resp, false
	}
	hdr := func(t uint16) mdns.RR_Header {
		return mdns.RR_Header{Name: q.Name, Rrtype: t, Class: mdns.ClassINET, Ttl: TTL}
	}
	for _, a := range addrs {
		switch {
		case a.Is4() && (q.Qtype == mdns.TypeA || q.Qtype == mdns.TypeANY):
			resp.Answer = append(resp.Answer, &mdns.A{Hdr: hdr(mdns.TypeA), A: net.IP(a.AsSlice())})
		case a.Is6() && (q.Qtype == mdns.TypeAAAA || q.Qtype == mdns.TypeANY):
			resp.Answer = append(resp.Answer, &mdns.AAAA{Hdr: hdr(mdns.TypeAAAA), AAAA: net.IP(a.AsSlice())})
		}
	}
	return resp, false
}

// Server answers pods' queries from a Directory and forwards the rest.
type Server struct {
	Dir Directory
	// Upstream are "host:port" resolvers asked in turn for names that are
	// not the VPC's; none means SERVFAIL for them.
	Upstream []string
	// Timeout of one upstream exchange; 0 means 2s.
	Timeout time.Duration
	// Identify, when set, tells who asks from the client's address (which
	// may carry more than an IP: the link or mark it came with); it
	// replaces Dir.Client.
	Identify func(remote net.Addr) (Asker, bool)

	mu      sync.Mutex
	servers []*mdns.Server
}

// ServeDNS implements mdns.Handler.
func (s *Server) ServeDNS(w mdns.ResponseWriter, req *mdns.Msg) {
	resp := s.Handle(w.RemoteAddr(), w.LocalAddr().Network(), req)
	if resp != nil {
		w.WriteMsg(resp)
	}
}

// Handle answers req from the client at remote over network ("udp",
// "tcp"); nil means no answer at all.
func (s *Server) Handle(remote net.Addr, network string, req *mdns.Msg) *mdns.Msg {
	var asker Asker
	var ok bool
	if s.Identify != nil {
		asker, ok = s.Identify(remote)
	} else {
		asker, ok = s.Dir.Client(AddrOf(remote))
	}
	if !ok {
		// Not a pod this node knows: no answer about anyone's names.
		resp := new(mdns.Msg)
		resp.SetRcode(req, mdns.RcodeRefused)
		return resp
	}
	resp, forward := Answer(s.Dir, asker, req)
	if !forward {
		return resp
	}
	return s.forward(network, req)
}

// AddrOf is the IP address of a UDP or TCP address.
func AddrOf(remote net.Addr) netip.Addr {
	var ip netip.Addr
	switch a := remote.(type) {
	case *net.UDPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	case *net.TCPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	}
	return ip.Unmap()
}

func (s *Server) forward(network string, req *mdns.Msg) *mdns.Msg {
	timeout := s.Timeout
	if timeout == 0 {
		timeout = 2 * time.Second
	}
	if strings.HasPrefix(network, "tcp") {
		network = "tcp"
	} else {
		network = "udp"
	}
	c := &mdns.Client{Net: network, Timeout: timeout}
	for _, up := range s.Upstream {
		resp, _, err := c.Exchange(req, up)
		if err == nil && resp != nil {
			resp.Id = req.Id
			return resp
		}
	}
	resp := new(mdns.Msg)
	resp.SetRcode(req, mdns.RcodeServerFailure)
	return resp
}

// Serve answers on pc (UDP) and l (TCP), either may be nil, until
// Shutdown. It returns once both serve.
func (s *Server) Serve(pc net.PacketConn, l net.Listener) {
	var wg sync.WaitGroup
	start := func(srv *mdns.Server) {
		wg.Add(1)
		srv.NotifyStartedFunc = wg.Done
		s.mu.Lock()
		s.servers = append(s.servers, srv)
		s.mu.Unlock()
		go srv.ActivateAndServe()
	}
	if pc != nil {
		start(&mdns.Server{PacketConn: pc, Handler: s})
	}
	if l != nil {
		start(&mdns.Server{Listener: l, Handler: s})
	}
	wg.Wait()
}

// Shutdown stops serving and closes the sockets.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	servers := s.servers
	s.servers = nil
	s.mu.Unlock()
	var first error
	for _, srv := range servers {
		if err := srv.ShutdownContext(ctx); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// UpstreamsFromResolvConf returns the nameservers of a resolv.conf as
// "host:53" addresses.
func UpstreamsFromResolvConf(data []byte) []string {
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "nameserver" {
			if ip, err := netip.ParseAddr(f[1]); err == nil {
				out = append(out, netip.AddrPortFrom(ip, 53).String())
			}
		}
	}
	return out
}
