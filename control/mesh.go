package control

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/macro-cloud/macro/types"
)

// meshNodes caches the store's node list for the mesh views: every
// node's stream asks for it each second, etcd is asked at most once.
type meshNodes struct {
	mu    sync.Mutex
	at    time.Time
	nodes []types.Node
	rot   map[string]int64
}

// meshRefresh is how stale the node list of a mesh view may be.
const meshRefresh = time.Second

// Mesh is node's view of the VPC mesh: the other live nodes with their
// keys and endpoints, and the running pods, wherever they run, of the
// tenants that have pods on node (a node learns nothing of the others),
// with the addresses their nodes reported.
func (n *NodeAPI) Mesh(ctx context.Context, node string) (types.MeshView, error) {
	n.meshMu.Lock()
	if time.Since(n.mesh.at) > meshRefresh {
		nodes, err := n.store.Nodes(ctx)
		if err != nil {
			n.meshMu.Unlock()
			return types.MeshView{}, err
		}
		rot, err := n.store.MeshRotations(ctx)
		if err != nil {
			n.meshMu.Unlock()
			return types.MeshView{}, err
		}
		n.mesh.nodes, n.mesh.rot, n.mesh.at = nodes, rot, time.Now()
	}
	nodes, rot := n.mesh.nodes, n.mesh.rot
	n.meshMu.Unlock()
	var v types.MeshView
	for _, nd := range nodes {
		if nd.Ready && nd.MeshKey != "" && nd.MeshEndpoint != "" {
			v.Nodes = append(v.Nodes, types.MeshNode{Name: nd.Name, Key: nd.MeshKey, Endpoint: nd.MeshEndpoint, NextKey: nd.MeshNextKey, Addrs: nd.HostAddrs})
		}
	}
	v.RotateKey = rot[node]
	v.Pods = n.stateOf().meshPods(node)
	return v, nil
}

// meshPods lists the running pods, with addresses reported by the node
// they are placed on, of the tenants that have pods on node.
func (s *State) meshPods(node string) []types.MeshPod {
	s.mu.RLock()
	defer s.mu.RUnlock()
	tenants := map[string]bool{}
	for _, p := range s.byNode[node] {
		tenants[p.Tenant] = true
	}
	var out []types.MeshPod
	for _, nodePods := range s.byNode {
		for _, p := range nodePods {
			if !tenants[p.Tenant] {
				continue
			}
			st, ok := s.status[p.ID]
			if !ok || st.Node != p.Node || !st.Phase.Up() || st.IPv6 == "" {
				continue
			}
			names := []string{p.Name}
			for _, a := range p.Spec.Aliases {
				if a != "" && !slices.Contains(names, a) {
					names = append(names, a)
				}
			}
			mp := types.MeshPod{ID: p.ID, Tenant: p.Tenant, Namespace: p.Namespace, Node: p.Node,
				Names: names, IPv6: st.IPv6, IPv4: st.IPv4}
			// Overlay addresses are the API's choice, kept in the spec:
			// the node wires them as they are (net/router).
			if p.Spec.Network != "none" {
				for _, e := range p.Spec.Networks {
					if e.NetworkID != "" && e.IPv4Address != "" {
						if mp.Overlays == nil {
							mp.Overlays = map[string]string{}
						}
						mp.Overlays[e.NetworkID] = e.IPv4Address
					}
				}
			}
			out = append(out, mp)
		}
	}
	slices.SortFunc(out, func(a, b types.MeshPod) int {
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	return out
}
