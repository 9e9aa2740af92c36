package volume

import (
	"cmp"
	"slices"
)

// Replication of nfs and gfs volumes: the pure decisions. A volume keeps
// Copies copies on different nodes: its primary (types.Volume.Node) and
// replicas. These functions choose where replicas go and which replica
// becomes primary when the primary's node dies; the data path that keeps
// replicas written and the controller that applies these choices are
// described in docs/VOLUMES.md ("Replication").

// Replica states.
const (
	// ReplicaInSync: the replica applied every acknowledged write.
	ReplicaInSync = "in-sync"
	// ReplicaStale: the replica missed writes (its node was down or cut
	// off); it does not count until it caught up.
	ReplicaStale = "stale"
	// ReplicaCatchingUp: a delta sync from the primary is bringing it
	// back.
	ReplicaCatchingUp = "catching-up"
)

// Copies is how many copies of a volume of driver d are kept: 3 for nfs
// and gfs (2 with redundancy=reduced), 1 for the node-local drivers.
func Copies(d string, reduced bool) int {
	switch {
	case d != "nfs" && d != "gfs":
		return 1
	case reduced:
		return 2
	}
	return 3
}

// ReplicaNode is a node as placement sees it.
type ReplicaNode struct {
	Name  string
	Zone  string
	Ready bool
}

// PlaceReplicas chooses the nodes of a volume's replicas besides its
// primary: up to copies-1 ready nodes, never the primary nor one already
// chosen (have), nodes of the primary's zone first (writes wait for a
// replica: it should be near), then by name. Fewer when the cluster has
// fewer nodes; the result is sorted by name.
func PlaceReplicas(primary string, nodes []ReplicaNode, copies int, have []string) []string {
	zone := ""
	for _, n := range nodes {
		if n.Name == primary {
			zone = n.Zone
		}
	}
	var cands []ReplicaNode
	for _, n := range nodes {
		if n.Ready && n.Name != primary && !slices.Contains(have, n.Name) {
			cands = append(cands, n)
		}
	}
	slices.SortFunc(cands, func(a, b ReplicaNode) int {
		if az, bz := a.Zone == zone, b.Zone == zone; az != bz {
			if az {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.Name, b.Name)
	})
	out := slices.Clone(have)
	for _, n := range cands {
		if len(out) >= copies-1 {
			break
		}
		out = append(out, n.Name)
	}
	slices.Sort(out)
	return out
}

// ReplicaStatus is a replica as promotion sees it: its state in the
// volume's record, whether its node is alive, and the sequence number of
// the last write it applied (the primary numbers writes in order).
type ReplicaStatus struct {
	Node  string
	State string
	Alive bool
	Seq   uint64
}

// Promote chooses the replica that becomes primary when the primary's
// node is down: an alive, in-sync replica with the highest sequence
// number (a write the old primary sent to some replicas only, and never
// acknowledged, makes them differ), then the first by name. ok is false
// when no replica qualifies: the volume waits for its primary.
func Promote(replicas []ReplicaStatus) (node string, ok bool) {
	var best *ReplicaStatus
	for i := range replicas {
		r := &replicas[i]
		if !r.Alive || r.State != ReplicaInSync {
			continue
		}
		if best == nil || r.Seq > best.Seq || r.Seq == best.Seq && r.Node < best.Node {
			best = r
		}
	}
	if best == nil {
		return "", false
	}
	return best.Node, true
}
