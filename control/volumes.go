package control

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/macro-cloud/macro/store"
	"github.com/macro-cloud/macro/types"
	"github.com/macro-cloud/macro/volume"
)

// Replication of nfs and gfs volumes, the leader's side: the one place
// that decides which replica becomes primary when a primary's node dies,
// and which node gets a new replica in place of one whose node is lost.
// Each decision is one guarded transaction on the volume's record
// (store.UpdateVolumeWhileDown: the epoch it read, and the dead node
// still not alive), so two servers that both believe they lead never land
// two different decisions, and a node that comes back before the
// transaction keeps its place. The data moves between agents (the primary
// numbers and sends writes, and fills a syncing replica by the delta
// engine: agent/volrep.go, agent/volcatchup.go); servers that route a
// request for a volume whose primary is dead wait for this loop.

// VolumeNodes is what the replication loop needs of the nodes that keep
// volume copies (the servers' tunnels to them).
type VolumeNodes interface {
	// VolumeSeq is the number of the last write node's copy of the
	// volume applied.
	VolumeSeq(ctx context.Context, node, tenant, name string) (uint64, error)
	// CreateVolume makes the volume's (empty) storage on node; it does
	// nothing where it exists.
	CreateVolume(ctx context.Context, node string, v types.Volume) error
	// DirectWriters are the pods (and requests) of node that bind its
	// copy of the volume directly, outside the write sequence, or may.
	DirectWriters(ctx context.Context, node, tenant, name string) ([]string, error)
}

// WithVolumes makes the controller keep replicated volumes' copies:
// promotion of a replica when a primary's node is down, replacement of a
// replica whose node has been down for a further node TTL (or was
// removed), staleness of replicas whose node is down. It returns c.
func (c *Controller) WithVolumes(n VolumeNodes) *Controller {
	c.volNodes = n
	return c
}

// repairVolumes takes one look at every replicated volume. A node is dead
// when its lease expired; right after this controller took the lead, it
// first gives every node a TTL to renew its lease, as evictDown does.
func (c *Controller) repairVolumes(ctx context.Context) {
	now := c.now()
	if now.Sub(c.started) < c.nodeTTL {
		return
	}
	nodes, err := c.store.Nodes(ctx)
	if err != nil {
		c.log.Warn("volumes: list nodes", "err", err)
		return
	}
	vols, err := c.store.ReplicatedVolumes(ctx)
	if err != nil {
		c.log.Warn("volumes: list", "err", err)
		return
	}
	ready := map[string]bool{}
	var cands []volume.ReplicaNode
	for _, n := range nodes {
		ready[n.Name] = n.Ready
		cands = append(cands, volume.ReplicaNode{Name: n.Name, Zone: n.Labels["zone"], Ready: n.Ready})
		if n.Ready {
			delete(c.volDown, n.Name)
		} else if _, ok := c.volDown[n.Name]; !ok {
			c.volDown[n.Name] = now
		}
	}
	for n := range c.volDown {
		if _, known := ready[n]; !known && !volumesOn(vols, n) {
			delete(c.volDown, n)
		}
	}
	lost := func(node string) bool {
		since, known := c.volDown[node]
		if _, registered := ready[node]; !registered {
			return true // removed (kra node rm): it never comes back as it was
		}
		return known && now.Sub(since) >= c.nodeTTL
	}
	syncing := map[string]bool{}
	for _, v := range vols {
		for _, r := range v.Replicas {
			if r.State == volume.ReplicaSyncing {
				syncing[madeKey(v, r.Node)] = true
			}
		}
	}
	for k := range c.volMade {
		if !syncing[k] {
			delete(c.volMade, k)
		}
	}
	zoneOf := map[string]string{}
	for _, n := range nodes {
		zoneOf[n.Name] = n.Labels["zone"]
	}
	for _, v := range vols {
		if ctx.Err() != nil {
			return
		}
		if !ready[v.Node] {
			c.promoteVolume(ctx, v, ready)
			continue // the next round sees the new epoch
		}
		c.repairReplicas(ctx, v, ready, lost, cands, zoneOf)
	}
}

func volumesOn(vols []types.Volume, node string) bool {
	for _, v := range vols {
		for _, h := range volume.Holding(v) {
			if h == node {
				return true
			}
		}
	}
	return false
}

// promoteVolume makes the most up-to-date alive in-sync replica of v the
// primary (volume.Promote), if v's primary's node is still down and its
// epoch unchanged when the transaction lands.
func (c *Controller) promoteVolume(ctx context.Context, v types.Volume, ready map[string]bool) {
	var sts []volume.ReplicaStatus
	seqs := map[string]uint64{}
	for _, r := range v.Replicas {
		st := volume.ReplicaStatus{Node: r.Node, State: r.State, Alive: ready[r.Node]}
		if st.Alive && st.State == volume.ReplicaInSync {
			qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			seq, err := c.volNodes.VolumeSeq(qctx, r.Node, v.Tenant, v.Name)
			cancel()
			if err != nil {
				c.log.Warn("volume promotion: replica does not answer", "tenant", v.Tenant, "volume", v.Name, "node", r.Node, "err", err)
				st.Alive = false
			} else {
				st.Seq = seq
				seqs[r.Node] = seq
			}
		}
		sts = append(sts, st)
	}
	next, ok := volume.Promote(sts)
	if !ok {
		c.log.Debug("volume primary down, no replica in sync is up", "tenant", v.Tenant, "volume", v.Name, "primary", v.Node)
		return
	}
	nv, err := c.store.UpdateVolumeWhileDown(ctx, v.Tenant, v.Name, v.Epoch, v.Node, func(cur *types.Volume) error {
		return volume.PromoteIn(cur, next, seqs)
	})
	if err != nil {
		if !errors.Is(err, store.ErrEpochOver) && !errors.Is(err, store.ErrNodeReady) && !errors.Is(err, store.ErrNotFound) {
			c.log.Warn("volume promotion", "tenant", v.Tenant, "volume", v.Name, "err", err)
		}
		return
	}
	c.log.Warn("volume primary promoted", "tenant", v.Tenant, "volume", v.Name, "from", v.Node, "to", next, "epoch", nv.Epoch, "seq", seqs[next])
}

// repairReplicas marks the replicas of down nodes stale, replaces those of
// lost nodes when a node can take them, and makes the storage of syncing
// replicas on their nodes.
func (c *Controller) repairReplicas(ctx context.Context, v types.Volume, ready map[string]bool, lost func(string) bool,
	cands []volume.ReplicaNode, zoneOf map[string]string) {
	for _, r := range v.Replicas {
		switch {
		case ready[r.Node] && r.State == volume.ReplicaSyncing:
			c.createReplica(ctx, v, r.Node)
		case ready[r.Node]:
		case lost(r.Node):
			zone := v.Options["zone"]
			if zone == "" {
				zone = zoneOf[v.Node]
			}
			repl, ok := volume.ReplaceReplica(zone, volume.Holding(v), cands)
			if !ok {
				c.markStale(ctx, v, r)
				continue
			}
			nv, err := c.store.UpdateVolumeWhileDown(ctx, v.Tenant, v.Name, v.Epoch, r.Node, func(cur *types.Volume) error {
				return volume.ReplaceIn(cur, r.Node, repl)
			})
			if err != nil {
				if !errors.Is(err, store.ErrEpochOver) && !errors.Is(err, store.ErrNodeReady) && !errors.Is(err, store.ErrNotFound) {
					c.log.Warn("volume replica replacement", "tenant", v.Tenant, "volume", v.Name, "lost", r.Node, "err", err)
				}
				return // the next round reads the record again
			}
			c.log.Warn("volume replica replaced", "tenant", v.Tenant, "volume", v.Name, "lost", r.Node, "new", repl, "epoch", nv.Epoch)
			c.createReplica(ctx, nv, repl)
			return // one decision per volume and round: the epoch moved
		default:
			c.markStale(ctx, v, r)
		}
	}
	c.addReplica(ctx, v, cands, zoneOf)
}

// addReplica gives a volume that has fewer copies than its redundancy
// asks (made when the cluster had fewer nodes) a new replica on a ready
// node that holds none, as a lost one is replaced: syncing, then filled
// by the primary. One per round; the record is written only if its epoch
// and replicas are still those read. A volume made with none (on a single
// node) is written outside the write sequence (pods on its node bind its
// directory, agent/volmount.go), so a replica added under them would miss
// writes: it gets its first through firstReplica.
func (c *Controller) addReplica(ctx context.Context, v types.Volume, cands []volume.ReplicaNode, zoneOf map[string]string) {
	opts, err := volume.ParseOptions(v.Driver, v.Options)
	if err != nil {
		return
	}
	copies := volume.Copies(v.Driver, opts.Reduced)
	if len(volume.Holding(v)) >= copies {
		return
	}
	zone := v.Options["zone"]
	if zone == "" {
		zone = zoneOf[v.Node]
	}
	node, ok := volume.ReplaceReplica(zone, volume.Holding(v), cands)
	if !ok {
		return // the volume runs on fewer copies until a node joins
	}
	if len(v.Replicas) == 0 {
		if !c.firstReplica(ctx, &v) {
			return
		}
	}
	nv, err := c.store.UpdateVolume(ctx, v.Tenant, v.Name, func(cur *types.Volume) error {
		if cur.Epoch != v.Epoch || cur.Node != v.Node || len(cur.Replicas) != len(v.Replicas) ||
			(len(cur.Replicas) == 0 && !cur.Replicating) {
			return store.ErrEpochOver // another decision landed: the next round reads it
		}
		cur.DirectPods = nil
		return volume.AddReplicaIn(cur, node, copies)
	})
	if err != nil {
		if !errors.Is(err, store.ErrEpochOver) && !errors.Is(err, store.ErrNotFound) {
			c.log.Warn("volume replica: add", "tenant", v.Tenant, "volume", v.Name, "node", node, "err", err)
		}
		return
	}
	c.log.Info("volume replica added: the volume had fewer copies than it asks", "tenant", v.Tenant, "volume", v.Name, "node", node, "copies", copies)
	c.createReplica(ctx, nv, node)
}

// firstReplica tells whether the volume v, made without replicas, may get
// its first one now. It first marks v Replicating (once, in a transaction
// that lands only on the record read, still without replicas): from then
// on its route sends every pod and server through the primary's write
// sequence (agent/volmount.go, agent/volaccess.go). Then it asks the
// primary's node which writers that bound the directory before are left
// (agent/voldirect.go: a writer is recorded there before it reads the
// route, so one that read it before the mark is among them); while there
// are some, their names go to the record for inspect, and the replica
// waits. v is updated to the record written.
func (c *Controller) firstReplica(ctx context.Context, v *types.Volume) bool {
	if !v.Replicating {
		nv, err := c.store.UpdateVolume(ctx, v.Tenant, v.Name, func(cur *types.Volume) error {
			if cur.Epoch != v.Epoch || cur.Node != v.Node || len(cur.Replicas) != 0 {
				return store.ErrEpochOver
			}
			cur.Replicating = true
			return nil
		})
		if err != nil {
			if !errors.Is(err, store.ErrEpochOver) && !errors.Is(err, store.ErrNotFound) {
				c.log.Warn("volume: mark for its first replica", "tenant", v.Tenant, "volume", v.Name, "err", err)
			}
			return false
		}
		c.log.Info("volume to get its first replica: its writes go through the write sequence from now on", "tenant", v.Tenant, "volume", v.Name)
		*v = nv
	}
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	direct, err := c.volNodes.DirectWriters(qctx, v.Node, v.Tenant, v.Name)
	cancel()
	if err != nil {
		c.log.Debug("volume: its primary does not say who binds it directly", "tenant", v.Tenant, "volume", v.Name, "node", v.Node, "err", err)
		return false
	}
	if len(direct) == 0 {
		return true
	}
	if !slices.Equal(direct, v.DirectPods) {
		_, err := c.store.UpdateVolume(ctx, v.Tenant, v.Name, func(cur *types.Volume) error {
			if cur.Epoch != v.Epoch || cur.Node != v.Node || len(cur.Replicas) != 0 || !cur.Replicating {
				return store.ErrEpochOver
			}
			cur.DirectPods = direct
			return nil
		})
		if err == nil {
			c.log.Info("volume waits for its first replica: containers bind it directly", "tenant", v.Tenant, "volume", v.Name, "pods", direct)
		}
	}
	return false
}

// markStale records a replica whose node is down as stale (it misses the
// writes from now on), so that inspect and promotion do not count it.
func (c *Controller) markStale(ctx context.Context, v types.Volume, r types.VolumeReplica) {
	if r.State != volume.ReplicaInSync {
		return
	}
	_, err := c.store.UpdateVolumeWhileDown(ctx, v.Tenant, v.Name, v.Epoch, r.Node, func(cur *types.Volume) error {
		for i := range cur.Replicas {
			if cur.Replicas[i].Node == r.Node {
				cur.Replicas[i].State = volume.ReplicaStale
			}
		}
		return nil
	})
	if err == nil {
		c.log.Info("volume replica stale: its node is down", "tenant", v.Tenant, "volume", v.Name, "node", r.Node)
	}
}

// createReplica makes the storage of a syncing replica on its node, once
// per controller (CreateVolume does nothing where it exists); the primary
// then fills it (agent/volcatchup.go).
func (c *Controller) createReplica(ctx context.Context, v types.Volume, node string) {
	k := madeKey(v, node)
	if c.volMade[k] {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := c.volNodes.CreateVolume(cctx, node, v); err != nil {
		c.log.Warn("volume replica: create", "tenant", v.Tenant, "volume", v.Name, "node", node, "err", err)
		return
	}
	c.volMade[k] = true
}

func madeKey(v types.Volume, node string) string {
	return v.Tenant + "/" + v.Name + "/" + node + "/" + v.Created.String()
}
