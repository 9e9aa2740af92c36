package api

import (
	"net/http"
	"net/netip"
	"sort"
	"strings"

	"github.com/macro-cloud/macro/net/ipam"
	"github.com/macro-cloud/macro/types"
)

// SetVPC says that this cloud wires pods into VPCs, when its network
// opens after the Server is made, before the Server serves. The addresses
// the API shows are the cluster's, recorded in the store (store/vpc.go).
func (s *Server) SetVPC(on bool) { s.vpc = on }

// VPCInfo is GET /vpc: the tenant's IPv6 prefix and its namespaces'
// subnets.
type VPCInfo struct {
	Prefix     string         `json:"prefix"`
	Namespaces []NamespaceNet `json:"namespaces"`
}

// NamespaceNet is a namespace's share of the VPC.
type NamespaceNet struct {
	Name    string `json:"name"`
	Subnet6 string `json:"subnet6"`
	Subnet4 string `json:"subnet4"` // its default overlay
	Pods    int    `json:"pods"`
}

// Overlay is one IPv4 overlay of a namespace, as `kra overlays` shows it:
// a Docker network (driver ipip), or the namespace's default overlay.
type Overlay struct {
	// Name is "<namespace>/<overlay>"; Network the Docker network's name
	// ("shop_backend"), empty for a default overlay nobody created.
	Name      string          `json:"name"`
	Namespace string          `json:"namespace"`
	Network   string          `json:"network,omitempty"`
	ID        string          `json:"id,omitempty"`
	Driver    string          `json:"driver"`
	Subnet    string          `json:"subnet"`
	Members   []OverlayMember `json:"members"`
}

// OverlayMember is a pod on an overlay and its address there.
type OverlayMember struct {
	Pod     string `json:"pod"`
	ID      string `json:"id"`
	Address string `json:"address"` // empty for a pod from before addresses were recorded, until it runs
}

// vpcSubnets returns the tenant's prefix, its namespaces and their
// subnets (and those of the namespaces in more): those the cluster
// recorded, or for a namespace without pods yet those its first pod will
// get.
func (s *Server) vpcSubnets(r *http.Request, tenant string, more ...string) (netip.Prefix, map[string]ipam.Namespace, map[string]*Namespace, error) {
	if !s.vpc {
		return netip.Prefix{}, nil, nil, errorf(http.StatusNotFound, "this cloud runs pods without a VPC (macro server --vpc=false)")
	}
	nss, err := s.namespaces(r, tenant)
	if err != nil {
		return netip.Prefix{}, nil, nil, err
	}
	names := append([]string{}, more...)
	for n := range nss {
		names = append(names, n)
	}
	nets, err := s.store.NamespaceNets(r.Context(), tenant, names)
	if err != nil {
		return netip.Prefix{}, nil, nil, err
	}
	prefix := ipam.TenantPrefix(s.cluster, tenant)
	subnets := map[string]ipam.Namespace{}
	for name, n := range nets {
		subnets[name] = ipam.Namespace{Tenant: tenant, Name: name, Subnet6: ipam.Subnet6(prefix, n.Subnet6ID), Subnet4: n.Subnet4}
	}
	return prefix, subnets, nss, nil
}

func (s *Server) getVPC(w http.ResponseWriter, r *http.Request) error {
	prefix, subnets, nss, err := s.vpcSubnets(r, caller(r).Tenant)
	if err != nil {
		return err
	}
	out := VPCInfo{Prefix: prefix.String(), Namespaces: []NamespaceNet{}}
	for name, n := range nss {
		sn := subnets[name]
		out.Namespaces = append(out.Namespaces, NamespaceNet{Name: name, Subnet6: sn.Subnet6.String(), Subnet4: sn.Subnet4.String(), Pods: n.Pods})
	}
	sort.Slice(out.Namespaces, func(i, j int) bool { return out.Namespaces[i].Name < out.Namespaces[j].Name })
	writeJSON(w, http.StatusOK, out)
	return nil
}

// overlays lists the tenant's overlays: its Docker networks, and the
// default overlay of every namespace (the network compose made for it,
// "<project>_default", when there is one).
func (s *Server) overlays(r *http.Request, tenant string) ([]Overlay, error) {
	ctx := r.Context()
	nets, err := s.store.Networks(ctx, tenant)
	if err != nil {
		return nil, err
	}
	var netNS []string
	for _, n := range nets {
		netNS = append(netNS, n.Namespace)
	}
	_, subnets, nss, err := s.vpcSubnets(r, tenant, netNS...)
	if err != nil {
		return nil, err
	}
	pods, err := s.store.Pods(ctx, tenant)
	if err != nil {
		return nil, err
	}
	defaultAddr := map[string]string{} // pod -> its default IPv4: recorded, or once it ran
	for _, p := range pods {
		if p.VPC != nil {
			defaultAddr[p.ID] = p.VPC.IPv4.String()
		} else if st, err := s.store.Status(ctx, tenant, p.ID); err == nil {
			defaultAddr[p.ID] = st.IPv4
		}
	}
	podNS := func(p types.Pod) string {
		if p.Namespace == "" {
			return types.DefaultNamespace
		}
		return p.Namespace
	}
	byName := map[string]*Overlay{}
	for name := range nss {
		byName[name+"/default"] = &Overlay{Name: name + "/default", Namespace: name, Driver: "ipip", Subnet: subnets[name].Subnet4.String()}
	}
	for _, n := range nets {
		short := strings.TrimPrefix(n.Name, n.Namespace+"_")
		o := &Overlay{Name: n.Namespace + "/" + short, Namespace: n.Namespace, Network: n.Name, ID: n.ID, Driver: n.Driver}
		for _, c := range n.IPAM {
			if p, err := netip.ParsePrefix(c.Subnet); err == nil && p.Addr().Is4() {
				o.Subnet = p.String()
			}
		}
		if o.Subnet == "" {
			if short != "default" {
				// A network without a subnet of its own: its pods have
				// their namespace's default address there.
				o.Subnet = subnets[n.Namespace].Subnet4.String()
			} else if d := byName[o.Name]; d != nil {
				o.Subnet = d.Subnet
			}
		}
		byName[o.Name] = o
	}
	for _, p := range pods {
		if p.Spec.Network == "none" {
			continue
		}
		if d := byName[podNS(p)+"/default"]; d != nil && (d.ID == "" || !joined(p, d.ID)) {
			d.Members = append(d.Members, OverlayMember{Pod: p.Name, ID: p.ID, Address: defaultAddr[p.ID]})
		}
		for _, o := range byName {
			if o.ID == "" || !joined(p, o.ID) {
				continue
			}
			addr := defaultAddr[p.ID]
			for _, e := range p.Spec.Networks {
				if e.NetworkID == o.ID && e.Subnet != "" {
					addr = e.IPv4Address
				}
			}
			o.Members = append(o.Members, OverlayMember{Pod: p.Name, ID: p.ID, Address: addr})
		}
	}
	out := make([]Overlay, 0, len(byName))
	for _, o := range byName {
		if o.Members == nil {
			o.Members = []OverlayMember{}
		}
		sort.Slice(o.Members, func(i, j int) bool { return o.Members[i].Pod < o.Members[j].Pod })
		out = append(out, *o)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func joined(p types.Pod, networkID string) bool {
	for _, e := range p.Spec.Networks {
		if e.NetworkID == networkID {
			return true
		}
	}
	return false
}

func (s *Server) listOverlays(w http.ResponseWriter, r *http.Request) error {
	list, err := s.overlays(r, caller(r).Tenant)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, list)
	return nil
}

// getOverlay finds an overlay by "<namespace>/<overlay>", by its Docker
// network's name or ID, or by a bare overlay name in namespace default.
func (s *Server) getOverlay(w http.ResponseWriter, r *http.Request) error {
	ref := r.PathValue("ref")
	list, err := s.overlays(r, caller(r).Tenant)
	if err != nil {
		return err
	}
	for _, want := range []func(o Overlay) bool{
		func(o Overlay) bool { return o.Name == ref || o.Network == ref || o.ID != "" && o.ID == ref },
		func(o Overlay) bool { return o.Name == types.DefaultNamespace+"/"+ref },
	} {
		for _, o := range list {
			if want(o) {
				writeJSON(w, http.StatusOK, o)
				return nil
			}
		}
	}
	return errorf(http.StatusNotFound, "overlay %q not found", ref)
}
