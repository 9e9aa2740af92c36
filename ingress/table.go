package ingress

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync/atomic"
	"time"
)

// Backend is one pod as the ingress sees it.
type Backend struct {
	Tenant  string
	Pod     string // id
	Name    string
	Created time.Time
	Labels  map[string]string
	// Addr is the pod's address in its VPC; invalid while it has none.
	Addr netip.Addr
	// Ready is true while the pod runs and its healthcheck, if any, does
	// not say unhealthy.
	Ready bool
	// Suspended pods are frozen: the proxy wakes them for a request.
	Suspended bool
	// Node runs the pod; the proxy reaches pods of other nodes through
	// Options.DialRemote.
	Node string
	// Starting is true while the pod runs and its healthcheck has not
	// said healthy yet: served only when no replica is Ready.
	Starting bool
}

// Config is what a Table needs to know of the cloud.
type Config struct {
	// Domain is the cluster's domain: tenant alice's default domain is
	// alice.<Domain>, and a tenant may claim hosts under its own default
	// domain only.
	Domain string
	// Verified lists, per tenant, the custom domains (outside Domain) it
	// proved it owns; a host is covered by a verified domain when it is
	// that domain or under it.
	Verified map[string][]string
}

// Table is the ingress's routing state: which host and path goes to which
// pods. It is immutable once built.
type Table struct {
	hosts map[string][]*Route // by host, longest path first
	tcp   map[int]*TCPRoute
	// Problems are the labels that gave no route, with why, per pod id.
	Problems map[string][]string
}

// Route is one host and path prefix of one tenant with its targets.
type Route struct {
	Tenant string
	Host   string
	Path   string
	HTTPS  bool
	// Auth is the route's authentication, from its earliest pod; nil when
	// the route is open.
	Auth    *Auth
	Targets []Target

	next atomic.Uint64 // round robin
}

// Target is one pod port behind a route.
type Target struct {
	Tenant    string
	Pod       string
	Name      string
	Port      int            // the pod's port
	Addr      netip.AddrPort // invalid while the pod has no address
	Ready     bool
	Suspended bool
	Starting  bool
	Node      string

	// rp is the proxy's reverse proxy of this target, kept once made
	// (Proxy.proxyFor); shared by the copies of the Target.
	rp *atomic.Pointer[targetProxy]
}

// TCPRoute is a public TCP port of one tenant with its targets.
type TCPRoute struct {
	Tenant     string
	PublicPort int
	Targets    []Target

	next atomic.Uint64 // round robin
}

// claim is one pod's rule, before conflicts between tenants are settled.
type claim struct {
	b    Backend
	rule Rule
}

// Build computes the table for backends. A host belongs to one tenant:
// the tenant whose earliest pod claimed it first (its pods are the only
// ones served for it; other tenants' claims are Problems). Hosts under
// cfg.Domain must be under the claiming tenant's own default domain;
// hosts outside it must be verified for that tenant.
func Build(cfg Config, backends []Backend) *Table {
	t := &Table{hosts: map[string][]*Route{}, tcp: map[int]*TCPRoute{}, Problems: map[string][]string{}}
	sorted := append([]Backend(nil), backends...)
	sort.Slice(sorted, func(i, j int) bool {
		a, b := sorted[i], sorted[j]
		if !a.Created.Equal(b.Created) {
			return a.Created.Before(b.Created)
		}
		if a.Tenant != b.Tenant {
			return a.Tenant < b.Tenant
		}
		return a.Pod < b.Pod
	})
	owner := map[string]string{}  // host -> tenant
	tcpOwner := map[int]string{}  // public port -> tenant
	routes := map[string]*Route{} // tenant \x00 host \x00 path
	var claims []claim
	for _, b := range sorted {
		rules, tcp, err := ParseLabels(b.Tenant, cfg.Domain, b.Labels)
		if err != nil {
			t.problem(b.Pod, err.Error())
			continue
		}
		for _, r := range rules {
			if err := cfg.allowed(b.Tenant, r.Host); err != nil {
				t.problem(b.Pod, err.Error())
				continue
			}
			if o, ok := owner[r.Host]; ok && o != b.Tenant {
				t.problem(b.Pod, fmt.Sprintf("host %s is held by another tenant", r.Host))
				continue
			}
			owner[r.Host] = b.Tenant
			claims = append(claims, claim{b, r})
		}
		for _, r := range tcp {
			if o, ok := tcpOwner[r.PublicPort]; ok && o != b.Tenant {
				t.problem(b.Pod, fmt.Sprintf("public TCP port %d is held by another tenant", r.PublicPort))
				continue
			}
			tcpOwner[r.PublicPort] = b.Tenant
			tr := t.tcp[r.PublicPort]
			if tr == nil {
				tr = &TCPRoute{Tenant: b.Tenant, PublicPort: r.PublicPort}
				t.tcp[r.PublicPort] = tr
			}
			tr.Targets = append(tr.Targets, target(b, r.Port))
		}
	}
	for _, c := range claims {
		key := c.b.Tenant + "\x00" + c.rule.Host + "\x00" + c.rule.Path
		r := routes[key]
		if r == nil {
			r = &Route{Tenant: c.b.Tenant, Host: c.rule.Host, Path: c.rule.Path, Auth: c.rule.Auth}
			routes[key] = r
			t.hosts[r.Host] = append(t.hosts[r.Host], r)
		} else if r.Auth.key() != c.rule.Auth.key() {
			// Replicas that disagree on who may pass would let a client
			// through one and not the other: the earliest pod's rule
			// holds, and pods with another are left out of the route.
			t.problem(c.b.Pod, fmt.Sprintf("route %s%s: its kr.ingress.auth labels differ from those of the route's earliest pod; not served", r.Host, r.Path))
			continue
		}
		r.HTTPS = r.HTTPS || c.rule.HTTPS
		r.Targets = append(r.Targets, target(c.b, c.rule.Port))
	}
	for _, rs := range t.hosts {
		sort.Slice(rs, func(i, j int) bool { return len(rs[i].Path) > len(rs[j].Path) })
	}
	return t
}

func target(b Backend, port int) Target {
	t := Target{rp: new(atomic.Pointer[targetProxy]), Tenant: b.Tenant, Pod: b.Pod, Name: b.Name, Port: port, Ready: b.Ready, Suspended: b.Suspended, Starting: b.Starting, Node: b.Node}
	if b.Addr.IsValid() {
		t.Addr = netip.AddrPortFrom(b.Addr, uint16(port))
	}
	return t
}

func (t *Table) problem(pod, msg string) {
	t.Problems[pod] = append(t.Problems[pod], msg)
}

// allowed says whether tenant may claim host.
func (c Config) allowed(tenant, host string) error {
	if c.Domain != "" && under(host, c.Domain) {
		if !under(host, tenant+"."+c.Domain) {
			return fmt.Errorf("host %s: tenant %s may claim hosts under %s.%s only", host, tenant, tenant, c.Domain)
		}
		return nil
	}
	for _, d := range c.Verified[tenant] {
		if under(host, d) {
			return nil
		}
	}
	return fmt.Errorf("host %s: not a verified domain of tenant %s (kra domains add)", host, tenant)
}

// under is true when host is domain or a name below it.
func under(host, domain string) bool {
	return host == domain || strings.HasSuffix(host, "."+domain)
}

// Lookup finds the route for host and path; nil when there is none.
func (t *Table) Lookup(host, path string) *Route {
	for _, r := range t.hosts[host] {
		if matchPath(r.Path, path) {
			return r
		}
	}
	return nil
}

// HasHost is true when some route serves host (for TLS certificates).
func (t *Table) HasHost(host string) bool { return len(t.hosts[host]) > 0 }

// HasOIDC is true when some route of host logs users in with OIDC: the
// host then answers the login paths under /.macro/.
func (t *Table) HasOIDC(host string) bool {
	for _, r := range t.hosts[host] {
		if r.Auth != nil && r.Auth.OIDC {
			return true
		}
	}
	return false
}

// TCP is the route for a public TCP port; nil when there is none.
func (t *Table) TCP(port int) *TCPRoute { return t.tcp[port] }

// Routes lists every route, by host then path.
func (t *Table) Routes() []*Route {
	var out []*Route
	for _, rs := range t.hosts {
		out = append(out, rs...)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Host != out[j].Host {
			return out[i].Host < out[j].Host
		}
		return out[i].Path < out[j].Path
	})
	return out
}

// TCPPorts lists the public TCP ports that have a route.
func (t *Table) TCPPorts() []int {
	ports := make([]int, 0, len(t.tcp))
	for p := range t.tcp {
		ports = append(ports, p)
	}
	sort.Ints(ports)
	return ports
}
