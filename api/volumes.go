package api

import (
	"context"
	"net/http"
	"sort"
	"time"

	"github.com/macro-cloud/macro/types"
	"github.com/macro-cloud/macro/volume"
)

// Volumes is the volume service behind /volumes (api/docker's Server,
// so that both APIs make and check volumes the same way). Its errors
// carry their status (HTTPStatus).
type Volumes interface {
	CreateVolume(ctx context.Context, tenant, name, driver string, opts, labels map[string]string) (types.Volume, error)
	RemoveVolume(ctx context.Context, tenant, name string) error
	VolumeSnapshots(ctx context.Context, tenant, name string) ([]volume.Snapshot, error)
	SnapshotVolume(ctx context.Context, tenant, name, snap string) (volume.Snapshot, error)
	DeleteVolumeSnapshot(ctx context.Context, tenant, name, snap string) error
	RollbackVolume(ctx context.Context, tenant, name, snap string) error
}

// SetVolumes wires the volume service (made after the native API, which
// the server's first start needs earlier).
func (s *Server) SetVolumes(v Volumes) { s.volumes = v }

// Volume is a tenant's volume in the answers of /volumes.
type Volume struct {
	Name    string            `json:"name"`
	Driver  string            `json:"driver"`
	Options map[string]string `json:"options,omitempty"`
	Labels  map[string]string `json:"labels,omitempty"`
	Node    string            `json:"node,omitempty"`
	Created time.Time         `json:"created"`
	// UsedBy are the names of the containers that mount it.
	UsedBy []string `json:"usedBy"`
	// Replicas of an nfs or gfs volume besides its primary (Node).
	Replicas []types.VolumeReplica `json:"replicas,omitempty"`
	// Degraded says how many of its copies are in sync, and why, when
	// fewer than it asks (volume.Degraded).
	Degraded string `json:"degraded,omitempty"`
}

func (s *Server) routeVolumes(m *mux) {
	m.handle("GET /volumes", s.authed(s.listVolumes))
	m.handle("POST /volumes", s.authed(s.createVolume))
	m.handle("GET /volumes/{name}", s.authed(s.getVolume))
	m.handle("DELETE /volumes/{name}", s.authed(s.deleteVolume))
	m.handle("GET /volumes/{name}/snapshots", s.authed(s.listSnapshots))
	m.handle("POST /volumes/{name}/snapshots", s.authed(s.createSnapshot))
	m.handle("DELETE /volumes/{name}/snapshots/{snap}", s.authed(s.deleteSnapshot))
	m.handle("POST /volumes/{name}/snapshots/{snap}/rollback", s.authed(s.rollbackSnapshot))
}

func (s *Server) volumeService() (Volumes, error) {
	if s.volumes == nil {
		return nil, errorf(http.StatusServiceUnavailable, "volumes are not served here")
	}
	return s.volumes, nil
}

// volumesOf are the tenant's volumes with the containers that mount each.
func (s *Server) volumesOf(ctx context.Context, tenant string) ([]Volume, error) {
	vols, err := s.store.Volumes(ctx, tenant)
	if err != nil {
		return nil, err
	}
	pods, err := s.store.Pods(ctx, tenant)
	if err != nil {
		return nil, err
	}
	users := map[string][]string{}
	for _, p := range pods {
		for _, m := range p.Spec.Mounts {
			if m.Type == "volume" {
				users[m.Source] = append(users[m.Source], p.Name)
			}
		}
	}
	out := []Volume{}
	for _, v := range vols {
		u := users[v.Name]
		sort.Strings(u)
		if u == nil {
			u = []string{}
		}
		out = append(out, Volume{Name: v.Name, Driver: v.Driver, Options: v.Options, Labels: v.Labels, Node: v.Node, Replicas: v.Replicas, Degraded: volume.Degraded(v), Created: v.Created, UsedBy: u})
	}
	return out, nil
}

func (s *Server) listVolumes(w http.ResponseWriter, r *http.Request) error {
	out, err := s.volumesOf(r.Context(), caller(r).Tenant)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) getVolume(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	vols, err := s.volumesOf(r.Context(), caller(r).Tenant)
	if err != nil {
		return err
	}
	for _, v := range vols {
		if v.Name == name {
			writeJSON(w, http.StatusOK, v)
			return nil
		}
	}
	return errorf(http.StatusNotFound, "no such volume: %s", name)
}

// POST /volumes {"name": "db", "driver": "lv2", "options": {"size": "10G"}}
func (s *Server) createVolume(w http.ResponseWriter, r *http.Request) error {
	vs, err := s.volumeService()
	if err != nil {
		return err
	}
	var body struct {
		Name    string            `json:"name"`
		Driver  string            `json:"driver"`
		Options map[string]string `json:"options"`
		Labels  map[string]string `json:"labels"`
	}
	if err := decodeBody(r, &body); err != nil {
		return err
	}
	tenant := caller(r).Tenant
	v, err := vs.CreateVolume(r.Context(), tenant, body.Name, body.Driver, body.Options, body.Labels)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, Volume{Name: v.Name, Driver: v.Driver, Options: v.Options, Labels: v.Labels, Node: v.Node, Replicas: v.Replicas, Degraded: volume.Degraded(v), Created: v.Created, UsedBy: []string{}})
	return nil
}

func (s *Server) deleteVolume(w http.ResponseWriter, r *http.Request) error {
	vs, err := s.volumeService()
	if err != nil {
		return err
	}
	if err := vs.RemoveVolume(r.Context(), caller(r).Tenant, r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) listSnapshots(w http.ResponseWriter, r *http.Request) error {
	vs, err := s.volumeService()
	if err != nil {
		return err
	}
	snaps, err := vs.VolumeSnapshots(r.Context(), caller(r).Tenant, r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, snaps)
	return nil
}

// POST /volumes/{name}/snapshots {"name": "before-upgrade"} (name optional)
func (s *Server) createSnapshot(w http.ResponseWriter, r *http.Request) error {
	vs, err := s.volumeService()
	if err != nil {
		return err
	}
	var body struct {
		Name string `json:"name"`
	}
	if err := decodeBody(r, &body); err != nil {
		return err
	}
	snap, err := vs.SnapshotVolume(r.Context(), caller(r).Tenant, r.PathValue("name"), body.Name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, snap)
	return nil
}

func (s *Server) deleteSnapshot(w http.ResponseWriter, r *http.Request) error {
	vs, err := s.volumeService()
	if err != nil {
		return err
	}
	if err := vs.DeleteVolumeSnapshot(r.Context(), caller(r).Tenant, r.PathValue("name"), r.PathValue("snap")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) rollbackSnapshot(w http.ResponseWriter, r *http.Request) error {
	vs, err := s.volumeService()
	if err != nil {
		return err
	}
	if err := vs.RollbackVolume(r.Context(), caller(r).Tenant, r.PathValue("name"), r.PathValue("snap")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// statusError is an error that knows its HTTP status (api/docker's).
type statusError interface{ HTTPStatus() int }
