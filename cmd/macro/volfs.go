package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/macro-cloud/macro/agent"
	"github.com/macro-cloud/macro/control"
	"github.com/macro-cloud/macro/nodeproto"
	"github.com/macro-cloud/macro/store"
	"github.com/macro-cloud/macro/types"
	"github.com/macro-cloud/macro/volume"
)

// volumeDirectory is the servers' side of remote volumes and their
// replication (nodeproto.VolumeDirectory): routes from the volumes'
// records in the store (a replica's promotion when a primary's node is
// dead is the leader's: control/volumes.go), and the replica states
// primaries report.
type volumeDirectory struct {
	st      *store.Store
	tunnels *nodeproto.Tunnels
	local   string
	agent   *agent.Agent // nil: this server runs no agent
	log     *slog.Logger

	mu      sync.Mutex
	alive   map[string]bool
	aliveAt time.Time

	admits admitCache // nodecreds.go
}

var _ nodeproto.VolumeDirectory = (*volumeDirectory)(nil)

// ready tells which nodes are alive, read at most every half second.
func (d *volumeDirectory) ready(ctx context.Context) (map[string]bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if time.Since(d.aliveAt) < 500*time.Millisecond {
		return d.alive, nil
	}
	nodes, err := d.st.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	d.alive = map[string]bool{}
	for _, n := range nodes {
		d.alive[n.Name] = n.Ready
	}
	d.aliveAt = time.Now()
	return d.alive, nil
}

// volume is the record of a volume whose operations a server passes on to
// its node: an nfs or gfs volume (to its primary, replicated), or an lv2
// or local one (to the node that holds it, for WebDAV and S3 on a server
// that does not; hasBusiness admits no other node to those).
func (d *volumeDirectory) volume(ctx context.Context, tenant, name string) (types.Volume, error) {
	v, err := d.st.Volume(ctx, tenant, name)
	if err != nil {
		return v, fmt.Errorf("volume %s: %w", name, err)
	}
	if v.Node, err = volumeNode(ctx, d.st, v); err != nil {
		return v, err
	}
	if v.Node == "" {
		return v, fmt.Errorf("volume %s has no node", name)
	}
	return v, nil
}

func routeOf(v types.Volume) nodeproto.VolumeRoute {
	rt := nodeproto.VolumeRoute{Primary: v.Node, Epoch: v.Epoch, Sequenced: v.Replicating}
	for _, r := range v.Replicas {
		if r.State == volume.ReplicaInSync {
			rt.InSync = append(rt.InSync, r.Node)
		} else {
			rt.Others = append(rt.Others, r.Node)
		}
	}
	return rt
}

// Route is the volume's route. When its primary's node is dead, the
// leader's volume loop (control/volumes.go) promotes a replica: the route
// waits a little for that, and is otherwise the dead primary's (the
// request fails with a 502, which volfs clients retry).
func (d *volumeDirectory) Route(ctx context.Context, tenant, name string) (nodeproto.VolumeRoute, error) {
	v, err := d.volume(ctx, tenant, name)
	if err != nil {
		return nodeproto.VolumeRoute{}, err
	}
	if len(v.Replicas) == 0 {
		return routeOf(v), nil
	}
	deadline := time.Now().Add(promotionWait)
	for {
		alive, err := d.ready(ctx)
		if err != nil {
			return nodeproto.VolumeRoute{}, err
		}
		if alive[v.Node] || time.Now().After(deadline) {
			return routeOf(v), nil
		}
		select {
		case <-ctx.Done():
			return nodeproto.VolumeRoute{}, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
		if v, err = d.volume(ctx, tenant, name); err != nil {
			return nodeproto.VolumeRoute{}, err
		}
	}
}

// promotionWait is how long a route waits for the promotion of a replica
// when the volume's primary is dead.
const promotionWait = 5 * time.Second

// replicaNodes reaches the nodes that keep copies of volumes for the
// leader's volume loop (control.VolumeNodes): this server's own agent, or
// a node through its tunnel.
type replicaNodes struct {
	local   string
	agent   *agent.Agent // nil: this server runs no agent
	tunnels *nodeproto.Tunnels
}

var _ control.VolumeNodes = replicaNodes{}

func (n replicaNodes) VolumeSeq(ctx context.Context, node, tenant, name string) (uint64, error) {
	if node == n.local && n.agent != nil {
		return n.agent.VolumeSeq(tenant, name)
	}
	return n.tunnels.Remote(node).VolumeSeq(ctx, tenant, name)
}

func (n replicaNodes) DirectWriters(ctx context.Context, node, tenant, name string) ([]string, error) {
	if node == n.local && n.agent != nil {
		return n.agent.DirectWriters(tenant, name)
	}
	return n.tunnels.Remote(node).VolumeDirectWriters(ctx, tenant, name)
}

func (n replicaNodes) CreateVolume(ctx context.Context, node string, v types.Volume) error {
	if node == n.local && n.agent != nil {
		return n.agent.CreateVolume(ctx, v)
	}
	return n.tunnels.Remote(node).CreateVolume(ctx, v)
}

// CheckReplica admits a write of the primary of epoch to replica node.
func (d *volumeDirectory) CheckReplica(ctx context.Context, tenant, name, node string, epoch int64) error {
	v, err := d.volume(ctx, tenant, name)
	if err != nil {
		return err
	}
	if v.Epoch != epoch {
		return fmt.Errorf("volume %s: epoch %d is over (now %d, primary %s)", name, epoch, v.Epoch, v.Node)
	}
	for _, r := range v.Replicas {
		if r.Node == node {
			return nil
		}
	}
	return fmt.Errorf("volume %s: node %s keeps no replica", name, node)
}

// SetReplicaState records a replica's state if epoch is still the
// volume's.
func (d *volumeDirectory) SetReplicaState(ctx context.Context, tenant, name, node, state string, epoch int64) error {
	switch state {
	case volume.ReplicaInSync, volume.ReplicaStale, volume.ReplicaCatchingUp:
	default:
		return fmt.Errorf("unknown replica state %q", state)
	}
	_, err := d.st.UpdateVolume(ctx, tenant, name, func(v *types.Volume) error {
		if v.Epoch != epoch {
			return fmt.Errorf("volume %s: epoch %d is over (now %d)", name, epoch, v.Epoch)
		}
		for i := range v.Replicas {
			if v.Replicas[i].Node == node {
				v.Replicas[i].State = state
				if state == volume.ReplicaInSync {
					// A volume made without replicas has its
					// first: writes need two copies from now on.
					v.Replicating, v.DirectPods = false, nil
				}
				return nil
			}
		}
		return fmt.Errorf("volume %s: node %s keeps no replica", name, node)
	})
	if err == nil {
		d.log.Info("volume replica", "tenant", tenant, "volume", name, "node", node, "state", state)
	}
	return err
}

func localAgentOf(o nodeproto.Ops) *agent.Agent {
	ag, _ := o.(*agent.Agent)
	return ag
}

// localVolumeOps is this server's own agent as the node protocol's volume
// server, nil when it runs none.
func localVolumeOps(ag *agent.Agent) nodeproto.Ops {
	if ag == nil {
		return nil
	}
	return ag
}

// volumeTransport carries the in-process agent's remote volume mounts
// through this server's own node client, once linkServer made it.
type volumeTransport struct {
	mu  sync.Mutex
	tr  http.RoundTripper
	cli *nodeproto.Client
}

func (v *volumeTransport) set(cli *nodeproto.Client) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.tr = cli.VolumeTransport()
	v.cli = cli
}

// shim is agent.Config.VolumeShim: mount processes with this server's
// node credentials.
func (v *volumeTransport) shim() ([]string, []byte, bool) {
	v.mu.Lock()
	cli := v.cli
	v.mu.Unlock()
	return volumeShim(cli)
}

func (v *volumeTransport) get() http.RoundTripper {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.tr
}

// accessVolumes gives WebDAV and S3 (package access) the directory of a
// tenant's volume on this server: the node's own, or a FUSE mount of it
// from its primary (agent.AccessRoot).
type accessVolumes struct {
	st *store.Store
	ag *agent.Agent
}

func (v accessVolumes) VolumeRoot(ctx context.Context, tenant, name string) (string, error) {
	vol, err := v.st.Volume(ctx, tenant, name)
	if err != nil {
		return "", err
	}
	if vol.Node, err = volumeNode(ctx, v.st, vol); err != nil {
		return "", err
	}
	return v.ag.AccessRoot(ctx, vol)
}

// volumeNode is the node that holds a volume: its record's, or for a
// local volume, which gets no node when it is made (Docker's local volume
// is made where a container first mounts it), the node of a container
// that mounts it, the first by name; "" when none does.
func volumeNode(ctx context.Context, st *store.Store, v types.Volume) (string, error) {
	if v.Node != "" || v.Driver != "" && v.Driver != "local" {
		return v.Node, nil
	}
	pods, err := st.Pods(ctx, v.Tenant)
	if err != nil {
		return "", err
	}
	node := ""
	for _, p := range pods {
		if p.Node == "" || node != "" && p.Node >= node {
			continue
		}
		for _, m := range p.Spec.Mounts {
			if m.Type == "volume" && m.Source == v.Name {
				node = p.Node
				break
			}
		}
	}
	return node, nil
}
