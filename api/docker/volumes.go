package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/macro-cloud/macro/agent"
	"github.com/macro-cloud/macro/auth"
	"github.com/macro-cloud/macro/store"
	"github.com/macro-cloud/macro/types"
	"github.com/macro-cloud/macro/volume"
)

// VolumeNode is what a node offers for volumes: removing one's data and
// measuring it. The node creates a volume's directory when a pod first
// mounts it.
type VolumeNode interface {
	RemoveVolume(ctx context.Context, tenant, name string) error
	// VolumeSize is the bytes of a volume's files on the node; 0 for a
	// volume it does not hold.
	VolumeSize(ctx context.Context, tenant, name string) (int64, error)
}

// StorageNode is what a node offers for volumes of the drivers that live
// on one node (lv2, nfs, gfs): making them, and their snapshots.
type StorageNode interface {
	VolumeNode
	CreateVolume(ctx context.Context, v types.Volume) error
	VolumeSnapshots(ctx context.Context, tenant, name string) ([]volume.Snapshot, error)
	SnapshotVolume(ctx context.Context, tenant, name string, snap volume.Snapshot) error
	DeleteVolumeSnapshot(ctx context.Context, tenant, name, snap string) error
	RollbackVolume(ctx context.Context, tenant, name, snap string) error
}

var _ StorageNode = (*agent.Agent)(nil)

func (s *Server) routeVolumes(mux *http.ServeMux) {
	s.handle(mux, "GET /volumes", s.listVolumes)
	s.handle(mux, "POST /volumes/create", s.createVolume)
	s.handle(mux, "GET /volumes/{name}", s.inspectVolume)
	s.handle(mux, "DELETE /volumes/{name}", s.removeVolume)
	s.handle(mux, "POST /volumes/prune", s.pruneVolumes)
}

var _ VolumeNode = (*agent.Agent)(nil)

// volumeJSON is Docker's volume document.
type volumeJSON struct {
	CreatedAt  string            `json:"CreatedAt"`
	Driver     string            `json:"Driver"`
	Labels     map[string]string `json:"Labels"`
	Mountpoint string            `json:"Mountpoint"`
	Name       string            `json:"Name"`
	Options    map[string]string `json:"Options"`
	Scope      string            `json:"Scope"`
	UsageData  *volumeUsage      `json:"UsageData,omitempty"`
	// Status is the driver's state, as a plugin reports it: an nfs or
	// gfs volume's primary node and replicas.
	Status map[string]any `json:"Status,omitempty"`
}

type volumeUsage struct {
	Size     int64
	RefCount int64
}

func (s *Server) volumeJSON(v types.Volume) volumeJSON {
	out := volumeJSON{
		CreatedAt:  v.Created.Format(time.RFC3339),
		Driver:     v.Driver,
		Labels:     v.Labels,
		Mountpoint: s.volumeMountpoint(v),
		Name:       v.Name,
		Options:    v.Options,
		Scope:      "local",
	}
	if v.Driver == "nfs" || v.Driver == "gfs" {
		out.Status = map[string]any{"primary": v.Node, "replicas": replicaStatus(v.Replicas), "epoch": v.Epoch}
		if d := degraded(v); d != "" {
			out.Status["degraded"] = d
		}
	}
	if v.Limit > 0 {
		// A local volume held to a size (docs/VOLUMES.md).
		out.Status = map[string]any{"size": strconv.FormatInt(v.Limit, 10)}
	}
	// No labels or options: null, as dockerd shows them.
	if len(out.Labels) == 0 {
		out.Labels = nil
	}
	if len(out.Options) == 0 {
		out.Options = nil
	}
	return out
}

// volumeCreateRequest is the body of POST /volumes/create.
type volumeCreateRequest struct {
	Name       string
	Driver     string
	DriverOpts map[string]string
	Labels     map[string]string
}

func (s *Server) createVolume(w http.ResponseWriter, r *http.Request) error {
	var req volumeCreateRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	v, err := s.ensureVolume(r.Context(), tenantOf(r), req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, s.volumeJSON(v))
	return nil
}

// ensureVolume creates a volume, or returns the existing one of that name
// (Docker's create is idempotent for the same driver). An anonymous one
// made for a --rm pod is removed with it (removeWith: the pod's ID). A
// volume of a driver that lives on one node (lv2, nfs, gfs) is made on
// its node now, and the node recorded.
func (s *Server) ensureVolume(ctx context.Context, tenant string, req volumeCreateRequest, removeWith ...string) (types.Volume, error) {
	anonymous := req.Name == ""
	if anonymous {
		req.Name = newID()
	}
	opts, err := volume.ParseOptions(req.Driver, req.DriverOpts)
	if err != nil {
		if !slices.Contains(volume.Drivers, req.Driver) && req.Driver != "" {
			return types.Volume{}, notFound("create %s: error looking up volume plugin %s: plugin %q not found: the drivers of this cloud are %s", req.Name, req.Driver, req.Driver, strings.Join(volume.Drivers, ", "))
		}
		return types.Volume{}, badRequest("create %s: %v", req.Name, err)
	}
	if !validName.MatchString(req.Name) {
		return types.Volume{}, badRequest("create %s: \"%s\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path", req.Name, req.Name)
	}
	driver := req.Driver
	if driver == "" {
		driver = "local"
	}
	v := types.Volume{
		Name: req.Name, Tenant: tenant, Driver: driver,
		Labels: req.Labels, Options: req.DriverOpts,
		Created: time.Now().UTC().Truncate(time.Second), Anonymous: anonymous,
	}
	if anonymous {
		if len(removeWith) > 0 {
			v.RemoveWith = removeWith[0]
		}
		if v.Labels == nil {
			v.Labels = map[string]string{}
		}
		v.Labels["com.docker.volume.anonymous"] = ""
	}
	var node StorageNode
	if driver != "local" {
		if existing, err := s.store.Volume(ctx, tenant, req.Name); err == nil {
			return s.sameDriver(existing, driver)
		}
		if v.Node, node, err = s.volumeNodeFor(ctx, driver, opts.Zone); err != nil {
			return v, err
		}
	}
	replicas, err := s.placeReplicas(ctx, &v, opts)
	if err != nil {
		return v, err
	}
	err = s.createVolumeRecord(ctx, &v)
	for attempt := 0; errors.Is(err, store.ErrExists); attempt++ {
		existing, gerr := s.store.Volume(ctx, tenant, req.Name)
		if errors.Is(gerr, store.ErrNotFound) && attempt < 10 {
			// Removed between the two: create it after all.
			err = s.createVolumeRecord(ctx, &v)
			continue
		}
		if gerr != nil {
			return existing, gerr
		}
		if req.Driver == "" {
			return existing, nil // -v NAME:/path names any volume
		}
		return s.sameDriver(existing, driver)
	}
	if err != nil {
		return v, err
	}
	if node != nil {
		err := node.CreateVolume(ctx, v)
		if err == nil {
			err = createReplicas(ctx, v, replicas)
		}
		if err != nil {
			if derr := s.store.DeleteVolume(ctx, tenant, v.Name); derr != nil {
				s.log.Warn("undo volume create", "volume", v.Name, "err", derr)
			}
			return v, fmt.Errorf("create %s on node %s: %w", v.Name, v.Node, err)
		}
	}
	s.publish(ctx, types.Event{Tenant: tenant, Type: "volume", Action: "create", ID: v.Name, Attrs: map[string]string{"driver": driver}, Time: time.Now()})
	return v, nil
}

// sameDriver returns an existing volume asked for again, unless it was
// asked for with another driver.
func (s *Server) sameDriver(v types.Volume, driver string) (types.Volume, error) {
	if v.Driver != driver {
		return v, conflict("create %s: a volume of this name exists with driver %s, not %s", v.Name, v.Driver, driver)
	}
	return v, nil
}

// volumeNodeFor chooses the node that will hold a new volume: a ready
// node of the zone asked for (any zone if none) that this server reaches
// and that keeps volumes, the first by name.
func (s *Server) volumeNodeFor(ctx context.Context, driver, zone string) (string, StorageNode, error) {
	nodes, err := s.store.Nodes(ctx)
	if err != nil {
		return "", nil, err
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })
	for _, n := range nodes {
		if !n.Ready || zone != "" && n.Labels["zone"] != zone {
			continue
		}
		node, err := s.nodes.Node(n.Name)
		if err != nil {
			continue
		}
		if sn, ok := node.(StorageNode); ok {
			return n.Name, sn, nil
		}
	}
	if zone != "" {
		return "", nil, badRequest("no node in zone %q can hold a %s volume", zone, driver)
	}
	return "", nil, errorf(http.StatusServiceUnavailable, "no node can hold a %s volume now", driver)
}

func (s *Server) inspectVolume(w http.ResponseWriter, r *http.Request) error {
	v, err := s.volume(r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.volumeJSON(v))
	return nil
}

func (s *Server) volume(r *http.Request) (types.Volume, error) {
	name := r.PathValue("name")
	v, err := s.store.Volume(r.Context(), tenantOf(r), name)
	if errors.Is(err, store.ErrNotFound) {
		return v, notFound("get %s: no such volume", name)
	}
	return v, err
}

// tenantVolumes are the tenant's volumes and, by volume name, the ids of
// the pods that mount each.
func (s *Server) tenantVolumes(ctx context.Context, tenant string) ([]types.Volume, map[string][]string, error) {
	vols, err := s.store.Volumes(ctx, tenant)
	if err != nil {
		return nil, nil, err
	}
	users, err := s.volumeUsers(ctx, tenant)
	if err != nil {
		return nil, nil, err
	}
	return vols, users, nil
}

// volumeUsers are the ids of the tenant's pods that mount each volume.
func (s *Server) volumeUsers(ctx context.Context, tenant string) (map[string][]string, error) {
	pods, err := s.store.Pods(ctx, tenant)
	if err != nil {
		return nil, err
	}
	users := map[string][]string{}
	for _, p := range pods {
		for _, m := range p.Spec.Mounts {
			if m.Type == "volume" {
				users[m.Source] = append(users[m.Source], p.ID)
			}
		}
	}
	return users, nil
}

func (s *Server) listVolumes(w http.ResponseWriter, r *http.Request) error {
	f, err := parseFilters(r)
	if err != nil {
		return err
	}
	if err := f.only("name", "driver", "label", "dangling"); err != nil {
		return err
	}
	vols, users, err := s.tenantVolumes(r.Context(), tenantOf(r))
	if err != nil {
		return err
	}
	out := struct {
		Volumes  []volumeJSON
		Warnings []string
	}{Volumes: []volumeJSON{}}
	for _, v := range vols {
		if !f.matchAny("name", func(n string) bool { return strings.Contains(v.Name, n) }) ||
			!f.matchAny("driver", func(d string) bool { return d == v.Driver }) ||
			!f.matchLabels(v.Labels) ||
			!f.matchAny("dangling", func(d string) bool { return (d == "true" || d == "1") == (len(users[v.Name]) == 0) }) {
			continue
		}
		out.Volumes = append(out.Volumes, s.volumeJSON(v))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) removeVolume(w http.ResponseWriter, r *http.Request) error {
	v, err := s.volume(r)
	if errors.Is(statusErr(err), errNotFoundStatus) && boolValue(r, "force") {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	if err != nil {
		return err
	}
	if err := s.deleteVolume(r.Context(), v); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

var errNotFoundStatus = errors.New("404")

func statusErr(err error) error {
	if err != nil && statusOf(err) == http.StatusNotFound {
		return errNotFoundStatus
	}
	return err
}

// deleteVolume removes a volume that no pod mounts: its data on every
// node, then its object.
func (s *Server) deleteVolume(ctx context.Context, v types.Volume) error {
	users, err := s.volumeUsers(ctx, v.Tenant)
	if err != nil {
		return err
	}
	if ids := users[v.Name]; len(ids) > 0 {
		return conflict("remove %s: volume is in use - [%s]", v.Name, strings.Join(ids, ", "))
	}
	nodes, err := s.store.Nodes(ctx)
	if err != nil {
		return err
	}
	for _, n := range nodes {
		node, err := s.nodes.Node(n.Name)
		if err != nil {
			continue // a node that is gone takes its data with it
		}
		vn, ok := node.(VolumeNode)
		if !ok {
			continue
		}
		if err := vn.RemoveVolume(ctx, v.Tenant, v.Name); err != nil {
			return fmt.Errorf("remove %s: %w", v.Name, err)
		}
	}
	if err := s.store.DeleteVolume(ctx, v.Tenant, v.Name); errors.Is(err, store.ErrNotFound) {
		// Removed meanwhile by another request: that one removed it.
		return notFound("get %s: no such volume", v.Name)
	} else if err != nil {
		return err
	}
	s.publish(ctx, types.Event{Tenant: v.Tenant, Type: "volume", Action: "destroy", ID: v.Name, Attrs: map[string]string{"driver": v.Driver}, Time: time.Now()})
	return nil
}

func (s *Server) pruneVolumes(w http.ResponseWriter, r *http.Request) error {
	f, err := parseFilters(r)
	if err != nil {
		return err
	}
	if err := f.only("label", "label!", "all"); err != nil {
		return err
	}
	// API 1.42 and later prune anonymous volumes only, unless all=true.
	all := versionLess(clientVersion(r), "1.42") || f.matchAny("all", func(v string) bool { return v == "true" || v == "1" }) && len(f["all"]) > 0
	vols, users, err := s.tenantVolumes(r.Context(), tenantOf(r))
	if err != nil {
		return err
	}
	report := struct {
		VolumesDeleted []string
		SpaceReclaimed uint64
	}{VolumesDeleted: []string{}}
	for _, v := range vols {
		if len(users[v.Name]) > 0 || !all && !v.Anonymous || !f.matchLabels(v.Labels) {
			continue
		}
		if err := s.deleteVolume(r.Context(), v); err != nil {
			s.log.Warn("prune volume", "volume", v.Name, "err", err)
			continue
		}
		report.VolumesDeleted = append(report.VolumesDeleted, v.Name)
	}
	writeJSON(w, http.StatusOK, report)
	return nil
}

// allowBinds: host paths may be bound only by callers on the machine's
// own unix socket, who are root there anyway (as with dockerd's socket).
// Tenants, over TLS or a token, and loopback TCP callers never.
func allowBinds(r *http.Request) bool {
	id, ok := auth.IdentityFrom(r.Context())
	if !ok || id.Method != auth.MethodLocal {
		return false
	}
	addr, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	return addr != nil && addr.Network() == "unix"
}

// prepareCreate completes a new pod's spec with what lives in the store:
// the volumes it mounts (created as Docker creates them: named ones on
// first use, anonymous ones with a random name) and the IDs of the networks
// it joins, which it returns by endpoint name. Their overlay addresses are
// checked here against the tenant's pods, so that a refused address is
// refused before any volume is made; createPod chooses them for good. It
// refuses binds of host paths to callers that may not have them.
func (s *Server) prepareCreate(r *http.Request, spec *types.PodSpec, podID string) (map[string]types.Network, error) {
	if m, ok := hasBinds(*spec); ok && !allowBinds(r) {
		return nil, badRequest("bind mounts of host paths are not available to tenants (%s:%s): use a volume (docker volume create, -v NAME:%s)", m.Source, m.Target, m.Target)
	}
	tenant := tenantOf(r)
	if err := s.checkLinks(r.Context(), tenant, spec); err != nil {
		return nil, err
	}
	nets := map[string]types.Network{}
	for name, ep := range spec.Networks {
		n, err := s.findNetwork(r.Context(), tenant, name)
		if err != nil {
			return nil, err
		}
		ep.NetworkID = n.ID
		spec.Networks[name] = ep
		nets[name] = n
	}
	if hasSubnet(nets) {
		// A trial against the claimed addresses, for dockerd's errors
		// before anything is pulled; the create chooses again.
		claims := s.store.AddrClaims(r.Context(), tenant)
		trial := *spec
		trial.Networks = maps.Clone(spec.Networks)
		if err := assignAddresses(claims, &trial, nets); err != nil {
			return nil, err
		}
		if err := claims.Err(); err != nil {
			return nil, err
		}
	}
	for i, m := range spec.Mounts {
		if m.Type != "volume" {
			continue
		}
		var with []string
		if spec.AutoRemove {
			with = []string{podID}
		}
		v, err := s.ensureVolume(r.Context(), tenant, volumeCreateRequest{Name: m.Source}, with...)
		if err != nil {
			return nil, err
		}
		spec.Mounts[i].Source = v.Name
		spec.Mounts[i].Limit = v.Limit
		if v.Driver != "local" {
			spec.Mounts[i].Driver = v.Driver
		}
		if err := pinToVolume(spec, v); err != nil {
			return nil, err
		}
	}
	return nets, nil
}

// pinToVolume pins a pod to the node that holds a volume it mounts. nfs
// and gfs volumes pin nothing: other nodes mount them through FUSE
// (agent/volmount.go).
func pinToVolume(spec *types.PodSpec, v types.Volume) error {
	if v.Node == "" || v.Driver == "nfs" || v.Driver == "gfs" {
		return nil
	}
	if spec.PinnedNode != "" && spec.PinnedNode != v.Node {
		return badRequest("volume %s lives on node %s, but the container is pinned to node %s by %s: a container can mount volumes of one node only", v.Name, v.Node, spec.PinnedNode, spec.PinnedBy)
	}
	spec.PinnedNode, spec.PinnedBy = v.Node, fmt.Sprintf("volume %s (%s)", v.Name, v.Driver)
	return nil
}

// checkLinks accepts legacy links (--link, compose v1 links every one-off
// container to its dependencies) to containers of the pod's own
// namespace: those answer by their name and service name there. Other
// link aliases (compose v1's "web_1") do not resolve; a link to a
// container of another namespace is refused.
func (s *Server) checkLinks(ctx context.Context, tenant string, spec *types.PodSpec) error {
	var hc struct{ Links []string }
	json.Unmarshal(spec.DockerHostConfig, &hc)
	ns := spec.Labels["com.docker.compose.project"]
	if ns == "" {
		ns = types.DefaultNamespace
	}
	for _, l := range hc.Links {
		target, _, _ := strings.Cut(strings.TrimPrefix(l, "/"), ":")
		p, err := s.store.ResolvePod(ctx, tenant, target)
		if err != nil {
			return badRequest("could not get container for %s", target)
		}
		if p.Namespace != ns {
			return badRequest("links are not supported across namespaces (%s is in %s): containers reach each other by name within a namespace", target, p.Namespace)
		}
	}
	return nil
}

// removeAnonymousVolumes removes the anonymous volumes a removed pod
// mounted and no other pod does (`docker rm -v`).
func (s *Server) removeAnonymousVolumes(ctx context.Context, p types.Pod) {
	for _, m := range p.Spec.Mounts {
		if m.Type != "volume" {
			continue
		}
		v, err := s.store.Volume(ctx, p.Tenant, m.Source)
		if err != nil || !v.Anonymous {
			continue
		}
		if err := s.deleteVolume(ctx, v); err != nil {
			s.log.Info("keep anonymous volume", "volume", v.Name, "err", err)
		}
	}
}

// removeVolumesWithPods removes the anonymous volumes of --rm pods when
// their pod is removed, whoever removed it (the control loop's
// auto-remove, docker rm). It watches the store until ctx ends; volumes
// whose pod went while it was not watching go when it starts.
func (s *Server) removeVolumesWithPods(ctx context.Context) {
	for ctx.Err() == nil {
		rev, err := s.currentRevision(ctx)
		if err == nil {
			err = s.removeOrphanVolumes(ctx)
		}
		if err != nil {
			s.log.Warn("volumes of removed pods", "err", err)
			sleepCtx(ctx, time.Second)
			continue
		}
		for ch := range s.store.Watch(ctx, rev+1) {
			if ch.Kind != "pods" || !ch.Deleted {
				continue
			}
			vols, err := s.store.Volumes(ctx, ch.Tenant)
			if err != nil {
				s.log.Warn("volumes of removed pods", "err", err)
				continue
			}
			for _, v := range vols {
				if v.RemoveWith == ch.ID {
					if err := s.deleteVolume(ctx, v); err != nil {
						s.log.Warn("remove the volume of a --rm pod", "volume", v.Name, "err", err)
					}
				}
			}
		}
	}
}

// removeOrphanVolumes removes the volumes of --rm pods that are gone.
func (s *Server) removeOrphanVolumes(ctx context.Context) error {
	tenants, err := s.store.Tenants(ctx)
	if err != nil {
		return err
	}
	names := []string{types.DefaultTenant}
	for _, t := range tenants {
		if t.Name != types.DefaultTenant {
			names = append(names, t.Name)
		}
	}
	for _, tenant := range names {
		vols, err := s.store.Volumes(ctx, tenant)
		if err != nil {
			return err
		}
		for _, v := range vols {
			if v.RemoveWith == "" {
				continue
			}
			if _, err := s.store.Pod(ctx, tenant, v.RemoveWith); errors.Is(err, store.ErrNotFound) {
				if err := s.deleteVolume(ctx, v); err != nil {
					s.log.Warn("remove the volume of a --rm pod", "volume", v.Name, "err", err)
				}
			}
		}
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// volumeUsage is the Volumes list of `docker system df`: each volume with
// the pods that mount it and its size on the nodes (-1 where a node could
// not tell, as dockerd marks a size it did not compute).
func (s *Server) volumeUsage(ctx context.Context, tenant string) []volumeJSON {
	out := []volumeJSON{}
	vols, users, err := s.tenantVolumes(ctx, tenant)
	if err != nil {
		s.log.Warn("system df: volumes", "err", err)
		return out
	}
	nodes, _ := s.store.Nodes(ctx)
	for _, v := range vols {
		j := s.volumeJSON(v)
		j.UsageData = &volumeUsage{RefCount: int64(len(users[v.Name]))}
		for _, n := range nodes {
			node, err := s.nodes.Node(n.Name)
			if err != nil {
				continue
			}
			vn, ok := node.(VolumeNode)
			if !ok {
				continue
			}
			size, err := vn.VolumeSize(ctx, tenant, v.Name)
			if err != nil {
				j.UsageData.Size = -1
				break
			}
			j.UsageData.Size += size
		}
		out = append(out, j)
	}
	return out
}

// volumeMountpoint is where a volume's files are on its node, as inspect
// shows it.
func (s *Server) volumeMountpoint(v types.Volume) string {
	switch v.Driver {
	case "nfs", "gfs":
		return path.Join(s.info.DataDir, "btrfs", "pool", "v", v.Tenant, v.Name)
	}
	return s.volumePath(v.Tenant, v.Name)
}
