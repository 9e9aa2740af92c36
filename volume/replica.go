package volume

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/macro-cloud/macro/types"
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
	// ReplicaSyncing: a new replica, in place of one whose node was
	// lost; it fills itself by a full sync from the primary (the same
	// catch-up), then is in sync.
	ReplicaSyncing = "syncing"
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

// ReplaceReplica chooses the node of a new replica in place of a lost
// one: a ready node that holds no copy of the volume (holding: its
// primary and every replica, the lost one included), nodes of zone first
// (the volume's zone, or its primary's when it has none, as PlaceReplicas
// does at create), then by name. ok is false when there is none: the
// volume runs on fewer copies until a node joins.
func ReplaceReplica(zone string, holding []string, nodes []ReplicaNode) (node string, ok bool) {
	var best *ReplicaNode
	for i := range nodes {
		n := &nodes[i]
		if !n.Ready || slices.Contains(holding, n.Name) {
			continue
		}
		if best == nil {
			best = n
			continue
		}
		if nz, bz := n.Zone == zone, best.Zone == zone; nz != bz {
			if nz {
				best = n
			}
			continue
		}
		if n.Name < best.Name {
			best = n
		}
	}
	if best == nil {
		return "", false
	}
	return best.Name, true
}

// Holding lists the nodes that keep a copy of v: its primary and its
// replicas.
func Holding(v types.Volume) []string {
	out := []string{v.Node}
	for _, r := range v.Replicas {
		out = append(out, r.Node)
	}
	return out
}

// PromoteIn makes replica next the primary in v's record (the decision of
// Promote, with seqs the write numbers the replicas answered): the epoch
// is bumped, the old primary stays as a stale replica, and every replica
// behind next (a lower number) becomes stale. An error when next is not
// an in-sync replica of v.
func PromoteIn(v *types.Volume, next string, seqs map[string]uint64) error {
	i := slices.IndexFunc(v.Replicas, func(r types.VolumeReplica) bool { return r.Node == next })
	if i < 0 || v.Replicas[i].State != ReplicaInSync {
		return fmt.Errorf("volume %s: %s is not a replica in sync", v.Name, next)
	}
	top := seqs[next]
	reps := []types.VolumeReplica{{Node: v.Node, State: ReplicaStale}}
	for _, r := range v.Replicas {
		if r.Node == next {
			continue
		}
		if s, ok := seqs[r.Node]; !ok || s < top {
			if r.State == ReplicaInSync {
				r.State = ReplicaStale
			}
		}
		reps = append(reps, r)
	}
	slices.SortFunc(reps, func(a, b types.VolumeReplica) int { return cmp.Compare(a.Node, b.Node) })
	v.Replicas = reps
	v.Node = next
	v.Epoch++
	return nil
}

// ReplaceIn puts a new replica on node repl in place of the one on lost in
// v's record, syncing, and bumps the epoch (the lost node's writes and
// states are fenced off). An error when lost keeps no replica of v or
// repl already holds a copy.
func ReplaceIn(v *types.Volume, lost, repl string) error {
	i := slices.IndexFunc(v.Replicas, func(r types.VolumeReplica) bool { return r.Node == lost })
	if i < 0 {
		return fmt.Errorf("volume %s: node %s keeps no replica", v.Name, lost)
	}
	if slices.Contains(Holding(*v), repl) {
		return fmt.Errorf("volume %s: node %s already keeps a copy", v.Name, repl)
	}
	v.Replicas[i] = types.VolumeReplica{Node: repl, State: ReplicaSyncing}
	slices.SortFunc(v.Replicas, func(a, b types.VolumeReplica) int { return cmp.Compare(a.Node, b.Node) })
	v.Epoch++
	return nil
}

// InSyncCopies counts the copies of v that have every acknowledged write:
// its primary and its replicas in sync.
func InSyncCopies(v types.Volume) int {
	n := 1
	for _, r := range v.Replicas {
		if r.State == ReplicaInSync {
			n++
		}
	}
	return n
}

// AddReplicaIn puts a new replica on node in v's record, syncing (it
// fills itself by a full sync from the primary), when v has fewer copies
// than copies: a volume made on a cluster with too few nodes gets its
// copies as nodes join. The epoch stays: no copy is fenced off. An error
// when v has its copies or node already holds one.
func AddReplicaIn(v *types.Volume, node string, copies int) error {
	if len(Holding(*v)) >= copies {
		return fmt.Errorf("volume %s: it has its %d copies", v.Name, copies)
	}
	if slices.Contains(Holding(*v), node) {
		return fmt.Errorf("volume %s: node %s already keeps a copy", v.Name, node)
	}
	v.Replicas = append(v.Replicas, types.VolumeReplica{Node: node, State: ReplicaSyncing})
	slices.SortFunc(v.Replicas, func(a, b types.VolumeReplica) int { return cmp.Compare(a.Node, b.Node) })
	return nil
}

// DirectAccess is the name a node gives requests of WebDAV or S3 that use
// a volume's directory directly, among the pods that bind it
// (types.Volume.DirectPods).
const DirectAccess = "WebDAV/S3"

// Degraded tells, for inspect, how many of the copies a replicated volume
// should have are in sync ("2 of 3 copies in sync"), or "" when all are:
// a replica's node is down and no other node could take its place yet,
// or a replica is catching up or filling itself. A volume made without
// replicas (on a one-node cluster) says so once it is to get them
// (Replicating), with the containers that must restart first: they bind
// its directory and write outside the write sequence.
func Degraded(v types.Volume) string {
	if len(v.Replicas) == 0 && !v.Replicating {
		return "" // one copy, and no other node to keep one: nothing lost
	}
	opts, err := ParseOptions(v.Driver, v.Options)
	if err != nil {
		return ""
	}
	want, have := Copies(v.Driver, opts.Reduced), InSyncCopies(v)
	if have >= want {
		return ""
	}
	s := fmt.Sprintf("%d of %d copies in sync", have, want)
	if len(v.Replicas) > 0 || !v.Replicating {
		return s
	}
	var pods []string
	access := false
	for _, p := range v.DirectPods {
		if p == DirectAccess {
			access = true
		} else {
			pods = append(pods, p)
		}
	}
	switch {
	case len(pods) > 0:
		s += ": replicas are added once no container binds it directly; restart " + strings.Join(pods, ", ")
	case access:
		s += ": replicas are added once the WebDAV/S3 requests that use it directly end"
	default:
		s += ": its first replica is being added"
	}
	return s
}
