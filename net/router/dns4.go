package router

import (
	"net"
	"net/netip"
	"sync"
	"syscall"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/macro-cloud/macro/net/dns"
)

// DNS over IPv4. Pods with IPv4 also find the node's DNS server at their
// IPv4 gateway (10.a.b.1:53, the router's end of their link). IPv4
// addresses overlap across tenants, so the source address alone does not
// say who asks:
//
//   - UDP: the link the query came in on (IP_PKTINFO's interface index →
//     the pod's veth → the pod); the answer goes back out of that link
//     from the address that was asked;
//   - TCP: the accepted socket carries the tenant mark of the SYN
//     (net.ipv4.tcp_fwmark_accept=1), and tenant plus source address name
//     one pod (addresses are unique within a tenant).
//
// Anti-spoofing (nftables) guarantees the source address and link match.

// linkAddr is a UDP client address with the link it came in on.
type linkAddr struct {
	*net.UDPAddr
	ifindex int
	dst     net.IP // the address the pod asked
}

// markAddr is a TCP client address with the mark of its connection.
type markAddr struct {
	*net.TCPAddr
	mark uint32
}

// pktConn is a UDP socket that tells each datagram's link.
type pktConn struct {
	net.PacketConn
	p *ipv4.PacketConn
}

func newPktConn(c net.PacketConn) (*pktConn, error) {
	p := ipv4.NewPacketConn(c)
	if err := p.SetControlMessage(ipv4.FlagInterface|ipv4.FlagDst, true); err != nil {
		return nil, err
	}
	return &pktConn{PacketConn: c, p: p}, nil
}

func (c *pktConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, cm, src, err := c.p.ReadFrom(b)
	if err != nil {
		return n, src, err
	}
	ua, _ := src.(*net.UDPAddr)
	if cm == nil || ua == nil {
		return n, src, nil
	}
	return n, &linkAddr{UDPAddr: ua, ifindex: cm.IfIndex, dst: cm.Dst}, nil
}

func (c *pktConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	la, ok := addr.(*linkAddr)
	if !ok {
		return c.PacketConn.WriteTo(b, addr)
	}
	// Out of the link it came in on, from the address asked: the pod's
	// route is in its tenant's table, not in the main one a plain reply
	// would use.
	return c.p.WriteTo(b, &ipv4.ControlMessage{IfIndex: la.ifindex, Src: la.dst}, la.UDPAddr)
}

// markListener accepts TCP connections with their mark.
type markListener struct{ net.Listener }

func (l markListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return c, err
	}
	var mark int
	if sc, ok := c.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			raw.Control(func(fd uintptr) {
				mark, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK)
			})
		}
	}
	ta, _ := c.RemoteAddr().(*net.TCPAddr)
	return markConn{Conn: c, remote: &markAddr{TCPAddr: ta, mark: uint32(mark)}}, nil
}

type markConn struct {
	net.Conn
	remote *markAddr
}

func (c markConn) RemoteAddr() net.Addr { return c.remote }

// links maps interface indexes of the router's namespace to names; it is
// emptied whenever a link comes or goes, so an index is never taken for
// an older link's.
type links struct {
	ns string
	mu sync.Mutex
	m  map[int]string
}

func (l *links) name(ifindex int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n, ok := l.m[ifindex]; ok {
		return n
	}
	var name string
	inNetns(l.ns, func() error {
		ifi, err := net.InterfaceByIndex(ifindex)
		if err == nil {
			name = ifi.Name
		}
		return err
	})
	if name != "" {
		l.m[ifindex] = name
	}
	return name
}

func (l *links) forget() {
	l.mu.Lock()
	defer l.mu.Unlock()
	clear(l.m)
}

// identify tells who asks: by IPv6 address, by link (UDP over IPv4) or by
// tenant mark and address (TCP over IPv4).
func (r *Router) identify(remote net.Addr) (dns.Asker, bool) {
	switch a := remote.(type) {
	case *linkAddr:
		if a.IP.To4() == nil {
			return r.names.Client(dns.AddrOf(a.UDPAddr))
		}
		name := r.links.name(a.ifindex)
		if name == "" {
			return dns.Asker{}, false
		}
		return r.names.ClientOnLink(name)
	case *markAddr:
		if a.IP.To4() == nil {
			return r.names.Client(dns.AddrOf(a.TCPAddr))
		}
		tenant, ok := r.tenantOfMark(a.mark)
		if !ok {
			return dns.Asker{}, false
		}
		ip, _ := netip.AddrFromSlice(a.IP)
		return r.names.ClientV4(tenant, ip.Unmap())
	}
	return r.names.Client(dns.AddrOf(remote))
}

// tenantOfMark is the tenant whose pods' packets carry mark.
func (r *Router) tenantOfMark(mark uint32) (string, bool) {
	r.marksMu.RLock()
	defer r.marksMu.RUnlock()
	t, ok := r.marks[mark]
	return t, ok
}
