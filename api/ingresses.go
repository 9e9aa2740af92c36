package api

import (
	"net/http"
	"sort"

	"github.com/macro-cloud/macro/ingress"
)

// Ingress is one route of the caller's in GET /ingresses: a host and path
// that the ingress passes to the pods behind it.
type Ingress struct {
	URL     string          `json:"url"` // https://host/path
	Host    string          `json:"host"`
	Path    string          `json:"path"`
	HTTPS   bool            `json:"https"`
	Targets []IngressTarget `json:"targets"`
}

// IngressTarget is one pod port behind a route.
type IngressTarget struct {
	Pod       string `json:"pod"` // the pod's name
	Namespace string `json:"namespace"`
	Port      int    `json:"port"`
	State     string `json:"state"` // ready, starting, suspended, down, no address
	// Node runs the pod: every server's ingress reaches it, from its own
	// node or through that node's tunnel.
	Node string `json:"node,omitempty"`
}

// IngressList is the answer of GET /ingresses: the caller's routes, raw
// TCP ports, and the labels of its pods that give no route, with why.
type IngressList struct {
	Routes   []Ingress        `json:"routes"`
	TCP      []TCPIngress     `json:"tcp"`
	Problems []IngressProblem `json:"problems"`
}

// TCPIngress is a public TCP port of the caller's.
type TCPIngress struct {
	PublicPort int             `json:"publicPort"`
	Targets    []IngressTarget `json:"targets"`
}

// IngressProblem says why a pod's ingress label gives no route.
type IngressProblem struct {
	Pod       string `json:"pod"`
	Namespace string `json:"namespace"`
	Problem   string `json:"problem"`
}

// GET /ingresses. The table is computed over every tenant's pods, as the
// ingress computes it, since who holds a host depends on all claims; only
// the caller's part is answered.
func (s *Server) listIngresses(w http.ResponseWriter, r *http.Request) error {
	tenant := caller(r).Tenant
	snap, err := s.store.Snapshot(r.Context())
	if err != nil {
		return err
	}
	backends := make([]ingress.Backend, 0, len(snap.Pods))
	namespace := map[string]string{}
	names := map[string]string{}
	for _, p := range snap.Pods {
		backends = append(backends, ingress.FromPod(p, snap.Statuses[p.ID]))
		if p.Tenant == tenant {
			namespace[p.ID], names[p.ID] = p.Namespace, p.Name
		}
	}
	verified, err := s.store.VerifiedDomains(r.Context())
	if err != nil {
		return err
	}
	t := ingress.Build(ingress.Config{Domain: s.domain, Verified: verified}, backends)
	out := IngressList{Routes: []Ingress{}, TCP: []TCPIngress{}, Problems: []IngressProblem{}}
	targets := func(ts []ingress.Target) []IngressTarget {
		list := []IngressTarget{}
		for _, tg := range ts {
			it := IngressTarget{Pod: tg.Name, Namespace: namespace[tg.Pod], Port: int(tg.Port), State: "down", Node: tg.Node}
			switch {
			case tg.Suspended:
				it.State = "suspended"
			case (tg.Ready || tg.Starting) && !tg.Addr.IsValid():
				it.State = "no address"
			case tg.Ready:
				it.State = "ready"
			case tg.Starting:
				it.State = "starting" // served only while no replica is ready
			}
			list = append(list, it)
		}
		return list
	}
	for _, rt := range t.Routes() {
		if rt.Tenant != tenant {
			continue
		}
		scheme := "http://"
		if rt.HTTPS {
			scheme = "https://"
		}
		path := rt.Path
		if path == "/" {
			path = ""
		}
		out.Routes = append(out.Routes, Ingress{URL: scheme + rt.Host + path, Host: rt.Host, Path: rt.Path, HTTPS: rt.HTTPS, Targets: targets(rt.Targets)})
	}
	for _, port := range t.TCPPorts() {
		if tr := t.TCP(port); tr.Tenant == tenant {
			out.TCP = append(out.TCP, TCPIngress{PublicPort: port, Targets: targets(tr.Targets)})
		}
	}
	for id, problems := range t.Problems {
		if _, mine := namespace[id]; !mine {
			continue
		}
		for _, msg := range problems {
			out.Problems = append(out.Problems, IngressProblem{Pod: names[id], Namespace: namespace[id], Problem: msg})
		}
	}
	sort.Slice(out.Problems, func(i, j int) bool {
		a, b := out.Problems[i], out.Problems[j]
		if a.Pod != b.Pod {
			return a.Pod < b.Pod
		}
		return a.Problem < b.Problem
	})
	writeJSON(w, http.StatusOK, out)
	return nil
}
