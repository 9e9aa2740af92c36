package docker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"maps"
	"net/http"
	"net/netip"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/moby/moby/api/types/network"

	"github.com/macro-cloud/macro/store"
	"github.com/macro-cloud/macro/types"
)

// Networks of the Docker API. Every network a tenant creates is one of a
// namespace's IPv4 overlays (driver ipip): the namespace is the compose
// project that made it (label com.docker.compose.project), else
// "default". Clients name networks as they created them ("shop_default"),
// and "<namespace>/<name>" finds one too. Docker's predefined bridge, host
// and none are listed so that clients that look for them work: bridge is
// the pod network every container gets, none a pod without one, host is
// refused (pods never share the node's network).

// predefined networks, with fixed IDs so that they are stable across calls.
var predefined = []types.Network{
	{ID: predefinedID("bridge"), Name: "bridge", Driver: "bridge"},
	{ID: predefinedID("host"), Name: "host", Driver: "host"},
	{ID: predefinedID("none"), Name: "none", Driver: "null"},
}

func predefinedID(name string) string {
	sum := sha256.Sum256([]byte("macro predefined network " + name))
	return hex.EncodeToString(sum[:])
}

func isPredefined(name string) bool {
	for _, n := range predefined {
		if n.Name == name {
			return true
		}
	}
	return false
}

func (s *Server) routeNetworks(mux *http.ServeMux) {
	s.handle(mux, "GET /networks", s.listNetworks)
	// {id...}: "<namespace>/<name>" names a network too.
	s.handle(mux, "GET /networks/{id...}", s.inspectNetwork)
	s.handle(mux, "POST /networks/create", s.createNetwork)
	s.handle(mux, "DELETE /networks/{id...}", s.removeNetwork)
	s.handle(mux, "POST /networks/{id}/connect", s.connectNetwork)
	s.handle(mux, "POST /networks/{id}/disconnect", s.disconnectNetwork)
	s.handle(mux, "POST /networks/prune", s.pruneNetworks)
}

// networkCreateRequest is the body of POST /networks/create.
type networkCreateRequest struct {
	Name           string
	CheckDuplicate bool
	Driver         string
	Scope          string
	Internal       bool
	Attachable     bool
	Ingress        bool
	EnableIPv6     *bool
	EnableIPv4     *bool
	ConfigOnly     bool
	ConfigFrom     *struct{ Network string }
	IPAM           *struct {
		Driver  string
		Options map[string]string
		Config  []struct {
			Subnet     string
			IPRange    string
			Gateway    string
			AuxAddress map[string]string `json:"AuxiliaryAddresses"`
		}
	}
	Options map[string]string
	Labels  map[string]string
}

// validNetworkName: Docker's names, one character allowed.
var validNetworkName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

func (s *Server) createNetwork(w http.ResponseWriter, r *http.Request) error {
	var req networkCreateRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	n, err := networkFromCreate(req)
	if err != nil {
		return err
	}
	n.Tenant = tenantOf(r)
	n.ID = newID()
	n.Created = time.Now().UTC()
	existing, err := s.store.Networks(r.Context(), n.Tenant)
	if err != nil {
		return err
	}
	for _, e := range existing {
		// dockerd refuses a duplicate name since API 1.44 (and with
		// CheckDuplicate before); compose relies on the conflict.
		if e.Name == n.Name {
			return conflict("network with name %s already exists", n.Name)
		}
	}
	// A tenant's overlays share its routing table: their subnets never
	// overlap (dockerd refuses the same on one host).
	for _, e := range existing {
		if sub, ok := overlaySubnet(e); ok {
			if mine, ok := overlaySubnet(n); ok && mine.Overlaps(sub) {
				return errorf(http.StatusForbidden, "Pool overlaps with other one on this address space")
			}
		}
	}
	if err := s.store.CreateNetwork(r.Context(), &n); err != nil {
		return err
	}
	s.publish(r.Context(), types.Event{Tenant: n.Tenant, Type: "network", Action: "create", ID: n.ID, Attrs: map[string]string{"name": n.Name, "type": n.Driver}})
	writeJSON(w, http.StatusCreated, network.CreateResponse{ID: n.ID})
	return nil
}

// networkFromCreate checks a create request and makes the network of it.
func networkFromCreate(req networkCreateRequest) (types.Network, error) {
	var n types.Network
	if req.Name == "" {
		return n, badRequest("network name must not be empty")
	}
	if isPredefined(req.Name) {
		return n, errorf(http.StatusForbidden, "%s is a pre-defined network and cannot be created", req.Name)
	}
	if !validNetworkName.MatchString(req.Name) {
		return n, badRequest("invalid network name %q: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", req.Name)
	}
	switch req.Driver {
	case "", "bridge", "ipip", "overlay":
	default:
		return n, badRequest("network driver %q is not supported: networks are the namespace's overlays (ipip; bridge and overlay are accepted as such)", req.Driver)
	}
	switch {
	case req.Ingress:
		return n, badRequest("ingress networks are not supported: use a kr.ingress.<port> label")
	case req.ConfigOnly || req.ConfigFrom != nil && req.ConfigFrom.Network != "":
		return n, badRequest("config-only networks are not supported")
	case req.Scope != "" && req.Scope != "local" && req.Scope != "swarm" && req.Scope != "global":
		return n, badRequest("invalid network scope %q", req.Scope)
	}
	if len(req.Options) > 0 {
		keys := make([]string, 0, len(req.Options))
		for k := range req.Options {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		return n, badRequest("network driver options are not supported: %s", strings.Join(keys, ", "))
	}
	n = types.Network{
		Name:       req.Name,
		Namespace:  types.DefaultNamespace,
		Driver:     req.Driver,
		Labels:     req.Labels,
		Internal:   req.Internal,
		Attachable: req.Attachable,
		EnableIPv6: req.EnableIPv6 != nil && *req.EnableIPv6,
	}
	if n.Driver == "" {
		n.Driver = "bridge"
	}
	if p := req.Labels["com.docker.compose.project"]; p != "" {
		n.Namespace = p
	}
	if ipam := req.IPAM; ipam != nil {
		if ipam.Driver != "" && ipam.Driver != "default" {
			return n, badRequest("IPAM driver %q is not supported", ipam.Driver)
		}
		if len(ipam.Options) > 0 {
			return n, badRequest("IPAM options are not supported")
		}
		for _, c := range ipam.Config {
			if len(c.AuxAddress) > 0 {
				return n, badRequest("IPAM auxiliary addresses are not supported")
			}
			var rg types.IPAMRange
			if c.Subnet != "" {
				p, err := netip.ParsePrefix(c.Subnet)
				if err != nil {
					return n, badRequest("invalid subnet %s: %v", c.Subnet, err)
				}
				if p != p.Masked() {
					return n, badRequest("invalid subnet %s: it should be %s", c.Subnet, p.Masked())
				}
				if !p.Addr().Is4() {
					return n, badRequest("invalid subnet %s: overlays are IPv4 (every pod has its VPC's IPv6 address already)", c.Subnet)
				}
				if p.Bits() < 8 || p.Bits() > 29 {
					return n, badRequest("invalid subnet %s: an overlay's prefix is /8 to /29", c.Subnet)
				}
				rg.Subnet = p.String()
			}
			if c.IPRange != "" {
				p, err := netip.ParsePrefix(c.IPRange)
				if err != nil || rg.Subnet == "" || !netip.MustParsePrefix(rg.Subnet).Contains(p.Masked().Addr()) || p.Bits() < netip.MustParsePrefix(rg.Subnet).Bits() {
					return n, badRequest("invalid ip range %s: it must be inside the subnet", c.IPRange)
				}
				rg.IPRange = p.Masked().String()
			}
			if c.Gateway != "" {
				a, err := netip.ParseAddr(c.Gateway)
				if err != nil || rg.Subnet == "" || !netip.MustParsePrefix(rg.Subnet).Contains(a) {
					return n, badRequest("invalid gateway %s: it must be inside the subnet", c.Gateway)
				}
				rg.Gateway = a.String()
			}
			n.IPAM = append(n.IPAM, rg)
		}
	}
	return n, nil
}

// findNetwork resolves a reference the way dockerd does: full ID, exact
// name, then a unique ID prefix; "<namespace>/<name>" too. Predefined
// networks resolve to themselves.
func (s *Server) findNetwork(ctx context.Context, tenant, ref string) (types.Network, error) {
	for _, n := range predefined {
		if ref == n.Name || ref == n.ID {
			return n, nil
		}
	}
	nets, err := s.store.Networks(ctx, tenant)
	if err != nil {
		return types.Network{}, err
	}
	for _, n := range nets {
		if n.ID == ref {
			return n, nil
		}
	}
	for _, n := range nets {
		if n.Name == ref || n.Namespace+"/"+n.Name == ref || n.Namespace+"/"+strings.TrimPrefix(n.Name, n.Namespace+"_") == ref {
			return n, nil
		}
	}
	var found []types.Network
	for _, n := range nets {
		if ref != "" && strings.HasPrefix(n.ID, ref) {
			found = append(found, n)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return types.Network{}, notFound("network %s not found", ref)
	}
	return types.Network{}, badRequest("network %s is ambiguous (%d matches found based on ID prefix)", ref, len(found))
}

func (s *Server) network(r *http.Request) (types.Network, error) {
	return s.findNetwork(r.Context(), tenantOf(r), r.PathValue("id"))
}

// networkJSON is Docker's network document; containers are those of the
// tenant's pods that joined it. A network without a subnet of its own is
// its namespace's default overlay: it shows the namespace's recorded /24
// (nets, store.RecordedNamespaceNets) and its pods' default addresses.
func (s *Server) networkJSON(n types.Network, pods []types.Pod, nets map[string]types.NamespaceNet) network.Inspect {
	scope := "local"
	driver := n.Driver
	out := network.Inspect{
		Network: network.Network{
			Name: n.Name, ID: n.ID, Created: n.Created, Scope: scope, Driver: driver,
			EnableIPv4: n.Driver != "null" && n.Driver != "host", EnableIPv6: n.EnableIPv6,
			IPAM:     network.IPAM{Driver: "default", Options: map[string]string{}, Config: []network.IPAMConfig{}},
			Internal: n.Internal, Attachable: n.Attachable,
			Options: n.Options, Labels: n.Labels,
		},
		Containers: map[string]network.EndpointResource{},
	}
	if out.Options == nil {
		out.Options = map[string]string{}
	}
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	// The namespace the network belongs to is not in Options: compose v1
	// recreates a network whose options differ from its file's.
	for _, c := range n.IPAM {
		var ic network.IPAMConfig
		ic.Subnet, _ = netip.ParsePrefix(c.Subnet)
		ic.IPRange, _ = netip.ParsePrefix(c.IPRange)
		ic.Gateway, _ = netip.ParseAddr(c.Gateway)
		out.IPAM.Config = append(out.IPAM.Config, ic)
	}
	_, ownSubnet := overlaySubnet(n)
	if rec, ok := nets[n.Namespace]; ok && n.Tenant != "" && !ownSubnet {
		out.IPAM.Config = append(out.IPAM.Config, network.IPAMConfig{Subnet: rec.Subnet4, Gateway: rec.Subnet4.Addr().Next()})
	}
	for _, p := range pods {
		ep, ok := p.Spec.Networks[n.Name]
		if !ok || ep.NetworkID != n.ID {
			continue
		}
		er := network.EndpointResource{Name: p.Name, EndpointID: p.ID}
		if ep.IPv4Address != "" {
			if a, err := netip.ParseAddr(ep.IPv4Address); err == nil {
				// With the subnet's length, as dockerd shows it.
				bits := 32
				if sub, err := netip.ParsePrefix(ep.Subnet); err == nil {
					bits = sub.Bits()
				}
				er.IPv4Address = netip.PrefixFrom(a, bits)
			}
		} else if p.VPC != nil && !ownSubnet {
			er.IPv4Address = netip.PrefixFrom(p.VPC.IPv4, 24)
		}
		out.Containers[p.ID] = er
	}
	return out
}

func (s *Server) listNetworks(w http.ResponseWriter, r *http.Request) error {
	f, err := parseFilters(r)
	if err != nil {
		return err
	}
	if err := f.only("name", "id", "label", "driver", "type", "scope", "dangling"); err != nil {
		return err
	}
	tenant := tenantOf(r)
	nets, err := s.store.Networks(r.Context(), tenant)
	if err != nil {
		return err
	}
	pods, err := s.store.Pods(r.Context(), tenant)
	if err != nil {
		return err
	}
	recorded, err := s.store.RecordedNamespaceNets(r.Context(), tenant)
	if err != nil {
		return err
	}
	all := append(append([]types.Network{}, predefined...), nets...)
	out := []network.Inspect{}
	for _, n := range all {
		builtin := n.Tenant == ""
		if !f.matchAny("name", func(v string) bool { return strings.Contains(n.Name, v) }) ||
			!f.matchAny("id", func(v string) bool { return strings.HasPrefix(n.ID, v) }) ||
			!f.matchAny("driver", func(v string) bool { return v == n.Driver }) ||
			!f.matchAny("scope", func(v string) bool { return v == "local" }) ||
			!f.matchAny("type", func(v string) bool { return v == "builtin" && builtin || v == "custom" && !builtin }) ||
			!f.matchLabels(n.Labels) {
			continue
		}
		j := s.networkJSON(n, pods, recorded)
		if !f.matchAny("dangling", func(v string) bool { return (v == "true" || v == "1") == (!builtin && len(j.Containers) == 0) }) {
			continue
		}
		// dockerd leaves Containers empty in lists.
		j.Containers = map[string]network.EndpointResource{}
		out = append(out, j)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) inspectNetwork(w http.ResponseWriter, r *http.Request) error {
	n, err := s.network(r)
	if err != nil {
		return err
	}
	pods, err := s.store.Pods(r.Context(), tenantOf(r))
	if err != nil {
		return err
	}
	recorded, err := s.store.RecordedNamespaceNets(r.Context(), tenantOf(r))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.networkJSON(n, pods, recorded))
	return nil
}

func (s *Server) removeNetwork(w http.ResponseWriter, r *http.Request) error {
	n, err := s.network(r)
	if err != nil {
		return err
	}
	if n.Tenant == "" {
		return errorf(http.StatusForbidden, "%s is a pre-defined network and cannot be removed", n.Name)
	}
	if err := s.deleteNetwork(r.Context(), n); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// deleteNetwork removes a network no pod is attached to.
func (s *Server) deleteNetwork(ctx context.Context, n types.Network) error {
	pods, err := s.store.Pods(ctx, n.Tenant)
	if err != nil {
		return err
	}
	var users []string
	for _, p := range pods {
		if ep, ok := p.Spec.Networks[n.Name]; ok && ep.NetworkID == n.ID {
			users = append(users, p.Name)
		}
	}
	if len(users) > 0 {
		return errorf(http.StatusForbidden, "error while removing network: network %s id %s has active endpoints (%s)", n.Name, n.ID, strings.Join(users, ", "))
	}
	if err := s.store.DeleteNetwork(ctx, n.Tenant, n.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	s.publish(ctx, types.Event{Tenant: n.Tenant, Type: "network", Action: "destroy", ID: n.ID, Attrs: map[string]string{"name": n.Name, "type": n.Driver}})
	return nil
}

func (s *Server) pruneNetworks(w http.ResponseWriter, r *http.Request) error {
	f, err := parseFilters(r)
	if err != nil {
		return err
	}
	if err := f.only("label", "label!", "until"); err != nil {
		return err
	}
	nets, err := s.store.Networks(r.Context(), tenantOf(r))
	if err != nil {
		return err
	}
	report := network.PruneReport{NetworksDeleted: []string{}}
	for _, n := range nets {
		if !f.matchLabels(n.Labels) || !f.untilOK(n.Created) {
			continue
		}
		if err := s.deleteNetwork(r.Context(), n); err == nil {
			report.NetworksDeleted = append(report.NetworksDeleted, n.Name)
		}
	}
	writeJSON(w, http.StatusOK, report)
	return nil
}

// connectRequest is the body of POST /networks/{id}/connect; the endpoint
// config decodes leniently (see endpointConfig).
type connectRequest struct {
	Container      string
	EndpointConfig *endpointConfig
	Force          bool
}

func (s *Server) connectNetwork(w http.ResponseWriter, r *http.Request) error {
	n, err := s.network(r)
	if err != nil {
		return err
	}
	var req connectRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	p, err := s.store.ResolvePod(r.Context(), tenantOf(r), req.Container)
	if err != nil {
		return notFound("No such container: %s", req.Container)
	}
	switch n.Name {
	case "host":
		return badRequest("network host is not supported: pods never share the node's network")
	case "none", "bridge":
		return badRequest("container cannot be connected to network %s: every pod has the bridge network or none, chosen at create", n.Name)
	}
	ep, err := endpointFrom(req.EndpointConfig)
	if err != nil {
		return err
	}
	ep.NetworkID = n.ID
	if p.Spec.Network == "none" {
		return errorf(http.StatusForbidden, "container cannot be disconnected from host network or connected to host network")
	}
	if err := s.liveNetworkChange(r.Context(), p, "connect to", n.Name); err != nil {
		return err
	}
	// The address is chosen from the tenant's pods as they are when the
	// change commits (see createPod).
	_, err = s.store.UpdatePodGuarded(r.Context(), p.Tenant, p.ID, func(cur *types.Pod) error {
		if e, ok := cur.Spec.Networks[n.Name]; ok && e.NetworkID == n.ID {
			return errorf(http.StatusForbidden, "endpoint with name %s already exists in network %s", cur.Name, n.Name)
		}
		cur.Spec.Networks = maps.Clone(cur.Spec.Networks)
		if cur.Spec.Networks == nil {
			cur.Spec.Networks = map[string]types.Endpoint{}
		}
		cur.Spec.Networks[n.Name] = ep
		cur.Spec.Aliases = podAliases(cur.Spec)
		return nil
	}, func(_ types.Pod, after *types.Pod, tp store.TenantPods) error {
		ep := after.Spec.Networks[n.Name]
		if err := assignAddress(n, &ep, overlayAddresses(tp.Pods, after.ID)); err != nil {
			return err
		}
		after.Spec.Networks[n.Name] = ep
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return notFound("No such container: %s", req.Container)
	}
	if err != nil {
		return err
	}
	s.publish(r.Context(), types.Event{Tenant: p.Tenant, Type: "network", Action: "connect", ID: n.ID, Attrs: map[string]string{"name": n.Name, "type": n.Driver, "container": p.ID}})
	w.WriteHeader(http.StatusOK)
	return nil
}

func (s *Server) disconnectNetwork(w http.ResponseWriter, r *http.Request) error {
	n, err := s.network(r)
	if err != nil {
		return err
	}
	var req struct {
		Container string
		Force     bool
	}
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	p, err := s.store.ResolvePod(r.Context(), tenantOf(r), req.Container)
	if err != nil {
		return notFound("No such container: %s", req.Container)
	}
	if err := s.liveNetworkChange(r.Context(), p, "disconnect from", n.Name); err != nil {
		return err
	}
	_, err = s.store.UpdatePod(r.Context(), p.Tenant, p.ID, func(cur *types.Pod) error {
		if e, ok := cur.Spec.Networks[n.Name]; !ok || e.NetworkID != n.ID {
			return errorf(http.StatusForbidden, "container %s is not connected to network %s", cur.ID, n.Name)
		}
		delete(cur.Spec.Networks, n.Name)
		cur.Spec.Aliases = podAliases(cur.Spec)
		return nil
	})
	if err != nil {
		return err
	}
	s.publish(r.Context(), types.Event{Tenant: p.Tenant, Type: "network", Action: "disconnect", ID: n.ID, Attrs: map[string]string{"name": n.Name, "type": n.Driver, "container": p.ID}})
	w.WriteHeader(http.StatusOK)
	return nil
}

// liveNetworkChange refuses to change the networks of a running gVisor
// pod: its sandbox copies the pod's addresses into its own network stack
// when it starts, so a change now would show in docker inspect and not in
// the pod. A stopped one changes as any other, at its next start.
func (s *Server) liveNetworkChange(ctx context.Context, p types.Pod, verb, network string) error {
	if p.Spec.Runtime != "gvisor" {
		return nil
	}
	_, st, _, err := s.store.PodState(ctx, p.Tenant, p.ID)
	if err != nil {
		return err
	}
	if st.Phase == types.PhaseRunning || st.Phase == types.PhasePaused {
		return conflict("container %s runs under gVisor, whose network stack takes the container's addresses when it starts: stop it, %s network %s, and start it again", p.Name, verb, network)
	}
	return nil
}

// Overlays with a subnet (driver ipip, an IPAM subnet) give their pods
// addresses of their own: the API decides them, so that a pod keeps its
// address wherever it runs and the node only wires what the pod's spec
// says (Endpoint.IPv4Address, Endpoint.Subnet). Networks without a subnet
// are the namespace's default overlay: pods have their default IPv4
// address there. Addresses are unique within a tenant (its overlays share
// one routing table on every node; subnets never overlap). The choice is
// made inside the store's guarded write of the pod (createPod, connect),
// against the tenant's pods as they are when it commits: two API servers
// never hand out the same address.

// overlaySubnet is n's IPv4 subnet, if it has one.
func overlaySubnet(n types.Network) (netip.Prefix, bool) {
	for _, c := range n.IPAM {
		if p, err := netip.ParsePrefix(c.Subnet); err == nil && p.Addr().Is4() {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// addrSet is what a choice of addresses asks of those in use: a map of
// them (addrMap), or the claims the store keeps (store.AddrClaims, read a
// /24 at a time as the choice goes). Held addresses are a pod's; Taken
// ones also those freed a moment ago, which a choice of a free address
// leaves to rest while it finds another.
type addrSet interface {
	Taken(netip.Addr) bool
	Held(netip.Addr) bool
	Take(netip.Addr)
}

// addrMap holds addresses in use, with the pod that holds each.
type addrMap map[netip.Addr]string

func (m addrMap) Taken(a netip.Addr) bool { _, ok := m[a]; return ok }
func (m addrMap) Held(a netip.Addr) bool  { return m.Taken(a) }
func (m addrMap) Take(a netip.Addr)       { m[a] = "" }

// overlayAddresses are the overlay addresses that pods other than podID
// hold, and every pod's default address (an overlay's subnet may be a
// namespace's default /24).
func overlayAddresses(pods []types.Pod, podID string) addrMap {
	taken := addrMap{}
	for _, p := range pods {
		if p.VPC != nil {
			taken[p.VPC.IPv4] = p.ID
		}
		if p.ID == podID {
			continue
		}
		for _, e := range p.Spec.Networks {
			if a, err := netip.ParseAddr(e.IPv4Address); err == nil && e.Subnet != "" {
				taken[a] = p.ID
			}
		}
	}
	return taken
}

// hasSubnet says whether one of nets is an overlay with a subnet, whose
// endpoints get addresses of their own.
func hasSubnet(nets map[string]types.Network) bool {
	for _, n := range nets {
		if _, ok := overlaySubnet(n); ok {
			return true
		}
	}
	return false
}

// assignAddress gives ep its address on n: the fixed one it asked for,
// checked with dockerd's wording, or the lowest free one of the subnet
// (of its IP range when it has one). The subnet's first address is the
// gateway's, as with dockerd, and never a pod's. The address is added to
// taken.
func assignAddress(n types.Network, ep *types.Endpoint, taken addrSet) error {
	sub, ok := overlaySubnet(n)
	if !ok {
		if ep.IPv4Address != "" {
			return badRequest("user specified IP address is supported only when connecting to networks with user configured subnets")
		}
		return nil
	}
	gw := sub.Addr().Next()
	pool := sub
	for _, c := range n.IPAM {
		if c.Gateway != "" {
			gw = netip.MustParseAddr(c.Gateway)
		}
		if p, err := netip.ParsePrefix(c.IPRange); err == nil && sub.Contains(p.Masked().Addr()) && p.Bits() >= sub.Bits() {
			pool = p.Masked()
		}
	}
	last := lastAddr(sub)
	usable := func(a netip.Addr) bool {
		return sub.Contains(a) && a != sub.Addr() && a != last && a != gw
	}
	ep.Subnet = sub.String()
	if ep.IPv4Address != "" {
		a := netip.MustParseAddr(ep.IPv4Address)
		if !sub.Contains(a) {
			return badRequest("Invalid address %s: It does not belong to any of this network's subnets", a)
		}
		if !usable(a) || taken.Held(a) {
			return errorf(http.StatusForbidden, "Address already in use")
		}
		ep.Fixed = true
		taken.Take(a)
		return nil
	}
	// The lowest free address, or when there is none the lowest that
	// rests (freed a moment ago).
	for _, inUse := range []func(netip.Addr) bool{taken.Taken, taken.Held} {
		for a := pool.Addr(); pool.Contains(a); a = a.Next() {
			if usable(a) && !inUse(a) {
				ep.IPv4Address = a.String()
				taken.Take(a)
				return nil
			}
		}
	}
	return errorf(http.StatusServiceUnavailable, "no available IPv4 addresses on this network's address pools: %s (%s)", n.Name, sub)
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= 1<<(32-p.Bits()) - 1
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// assignAddresses gives each of a new pod's endpoints its overlay
// address, with taken the addresses other pods hold.
func assignAddresses(taken addrSet, spec *types.PodSpec, nets map[string]types.Network) error {
	if len(spec.Networks) == 0 {
		return nil
	}
	names := make([]string, 0, len(spec.Networks))
	for name := range spec.Networks {
		names = append(names, name)
	}
	// Fixed addresses first, so that a free one is never taken from a
	// sibling endpoint that asked for it.
	sort.Slice(names, func(i, j int) bool {
		fi, fj := spec.Networks[names[i]].IPv4Address != "", spec.Networks[names[j]].IPv4Address != ""
		if fi != fj {
			return fi
		}
		return names[i] < names[j]
	})
	for _, name := range names {
		ep := spec.Networks[name]
		if err := assignAddress(nets[name], &ep, taken); err != nil {
			return err
		}
		spec.Networks[name] = ep
	}
	return nil
}
