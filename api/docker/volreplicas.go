package docker

import (
	"context"
	"fmt"

	"github.com/macro-cloud/macro/types"
	"github.com/macro-cloud/macro/volume"
)

// placeReplicas chooses the replicas of a new nfs or gfs volume whose
// primary is v.Node (volume.PlaceReplicas: 3 copies, 2 with
// redundancy=reduced, on other ready nodes that keep volumes, the
// primary's zone first), records them in v as in-sync (all empty) and
// returns their nodes, on which the volume is then made.
func (s *Server) placeReplicas(ctx context.Context, v *types.Volume, opts volume.Options) ([]StorageNode, error) {
	copies := volume.Copies(v.Driver, opts.Reduced)
	if copies <= 1 || v.Node == "" {
		return nil, nil
	}
	nodes, err := s.store.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	storage := map[string]StorageNode{}
	var cands []volume.ReplicaNode
	for _, n := range nodes {
		node, err := s.nodes.Node(n.Name)
		if err != nil {
			continue
		}
		sn, ok := node.(StorageNode)
		if !ok {
			continue
		}
		storage[n.Name] = sn
		cands = append(cands, volume.ReplicaNode{Name: n.Name, Zone: n.Labels["zone"], Ready: n.Ready})
	}
	var out []StorageNode
	for _, name := range volume.PlaceReplicas(v.Node, cands, copies, nil) {
		v.Replicas = append(v.Replicas, types.VolumeReplica{Node: name, State: volume.ReplicaInSync})
		out = append(out, storage[name])
	}
	return out, nil
}

// createReplicas makes the volume's storage on its replicas' nodes.
func createReplicas(ctx context.Context, v types.Volume, nodes []StorageNode) error {
	for i, n := range nodes {
		if err := n.CreateVolume(ctx, v); err != nil {
			return fmt.Errorf("create %s on node %s (a replica): %w", v.Name, v.Replicas[i].Node, err)
		}
	}
	return nil
}

// replicaStatus is how inspect shows replicas: NODE (STATE), or an empty
// list (not null) for a volume that has none.
func replicaStatus(rs []types.VolumeReplica) []string {
	out := []string{}
	for _, r := range rs {
		out = append(out, r.Node+" ("+r.State+")")
	}
	return out
}

// degraded is volume.Degraded: how many copies are in sync, and why.
func degraded(v types.Volume) string { return volume.Degraded(v) }
