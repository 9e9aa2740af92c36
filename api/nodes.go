package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/macro-cloud/macro/store"
	"github.com/macro-cloud/macro/types"
)

// zoneLabel is the node label that names its zone (macro agent --label
// zone=eu-1); pods ask for one with kr.zone.
const zoneLabel = "zone"

// Node is a node as a tenant sees it (GET /nodes): what it offers, whether
// it is ready, and how many of the caller's own pods are placed on it.
type Node struct {
	Name        string            `json:"name"`
	Zone        string            `json:"zone,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Arch        string            `json:"arch"`
	CPUs        int               `json:"cpus"`
	MemoryBytes int64             `json:"memoryBytes"`
	Ready       bool              `json:"ready"`
	// Pods counts the pods placed on the node: the caller's own on the
	// tenant side, every tenant's on the admin side.
	Pods int `json:"pods"`
}

// AdminNode is a node as the admin API shows it (GET /nodes on the admin
// socket): a Node with every tenant's pods, what they request of it (as
// the scheduler counts: the memory and CPU limits of the pods placed on
// it), and what the agent registered.
type AdminNode struct {
	Node
	RequestedMemoryBytes int64    `json:"requestedMemoryBytes"`
	RequestedNanoCPUs    int64    `json:"requestedNanoCPUs"`
	Runtimes             []string `json:"runtimes"`
	OS                   string   `json:"os,omitempty"`
	Kernel               string   `json:"kernel,omitempty"`
	Address              string   `json:"address,omitempty"`
	// MeshKey and MeshEndpoint are the node's WireGuard public key and
	// address:port in the VPC mesh.
	MeshKey      string `json:"meshKey,omitempty"`
	MeshEndpoint string `json:"meshEndpoint,omitempty"`
	// Registered is when the agent last registered (it does again after
	// its lease expired or its capacity changed).
	Registered time.Time `json:"registered"`
}

// RemovedNode is the answer of DELETE /nodes/{name} (admin).
type RemovedNode struct {
	Name string `json:"name"`
	// Pinned counts the pods that stay placed on the forgotten node: their
	// data lives only there (a node-local volume).
	Pinned int `json:"pinned"`
}

func nodeOf(n types.Node) Node {
	return Node{Name: n.Name, Zone: n.Labels[zoneLabel], Labels: n.Labels, Arch: n.Arch,
		CPUs: n.CPUs, MemoryBytes: n.MemoryBytes, Ready: n.Ready}
}

// GET /nodes (tenant): every node, with the caller's pods only.
func (s *Server) listNodes(w http.ResponseWriter, r *http.Request) error {
	nodes, err := s.store.Nodes(r.Context())
	if err != nil {
		return err
	}
	pods, err := s.store.Pods(r.Context(), caller(r).Tenant)
	if err != nil {
		return err
	}
	count := map[string]int{}
	for _, p := range pods {
		if p.Node != "" {
			count[p.Node]++
		}
	}
	out := make([]Node, 0, len(nodes))
	for _, n := range nodes {
		v := nodeOf(n)
		v.Pods = count[n.Name]
		out = append(out, v)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// GET /nodes (admin): every node with every tenant's pods.
func (s *Server) listAdminNodes(w http.ResponseWriter, r *http.Request) error {
	nodes, err := s.store.Nodes(r.Context())
	if err != nil {
		return err
	}
	snap, err := s.store.Snapshot(r.Context())
	if err != nil {
		return err
	}
	byName := make(map[string]*AdminNode, len(nodes))
	out := make([]AdminNode, len(nodes))
	for i, n := range nodes {
		out[i] = AdminNode{Node: nodeOf(n), Runtimes: n.Runtimes, OS: n.OS, Kernel: n.Kernel, Address: n.Address,
			MeshKey: n.MeshKey, MeshEndpoint: n.MeshEndpoint, Registered: n.Seen.UTC()}
		if out[i].Runtimes == nil {
			out[i].Runtimes = []string{}
		}
		byName[n.Name] = &out[i]
	}
	for _, p := range snap.Pods {
		if n := byName[p.Node]; n != nil {
			n.Pods++
			n.RequestedMemoryBytes += p.Spec.Resources.MemoryBytes
			n.RequestedNanoCPUs += p.Spec.Resources.NanoCPUs
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// DELETE /nodes/{name} (admin): forget a node that is down. A ready node
// is refused, and so is a down one whose pods the controller has not yet
// sent elsewhere (it does within seconds of the node's lease expiring):
// once its record is gone, nothing would move them. Pods pinned to the
// node stay placed on it, with their reason.
func (s *Server) deleteNode(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	nodes, err := s.store.Nodes(r.Context())
	if err != nil {
		return err
	}
	var node *types.Node
	for i := range nodes {
		if nodes[i].Name == name {
			node = &nodes[i]
		}
	}
	if node == nil {
		return errorf(http.StatusNotFound, "no node %q", name)
	}
	if node.Ready {
		return errNodeReady(name)
	}
	snap, err := s.store.Snapshot(r.Context())
	if err != nil {
		return err
	}
	var moving, pinned int
	for _, p := range snap.Pods {
		switch {
		case p.Node != name:
		case p.Spec.PinnedNode != "":
			pinned++
		default:
			moving++
		}
	}
	if moving > 0 {
		return errorf(http.StatusConflict, "node %q is down and %d of its pods are still placed on it: they are being moved to other nodes, try again in a few seconds", name, moving)
	}
	switch err := s.store.RemoveNode(r.Context(), name); {
	case errors.Is(err, store.ErrNodeReady):
		return errNodeReady(name)
	case errors.Is(err, store.ErrNotFound):
		return errorf(http.StatusNotFound, "no node %q", name)
	case err != nil:
		return err
	}
	s.log.Info("node removed", "node", name, "pinned", pinned)
	writeJSON(w, http.StatusOK, RemovedNode{Name: name, Pinned: pinned})
	return nil
}

func errNodeReady(name string) error {
	return errorf(http.StatusConflict, "node %q is ready: only a node that is down can be removed (stop its agent, then wait for its lease to expire)", name)
}
