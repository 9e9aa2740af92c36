package client

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// VolumeInfo is a tenant's volume in the native API (GET /volumes).
type VolumeInfo struct {
	Name    string            `json:"name"`
	Driver  string            `json:"driver"`
	Options map[string]string `json:"options,omitempty"`
	Labels  map[string]string `json:"labels,omitempty"`
	Node    string            `json:"node,omitempty"`
	Created time.Time         `json:"created"`
	UsedBy  []string          `json:"usedBy"`
	// Replicas of an nfs or gfs volume besides its primary (Node), with
	// their state: in-sync, stale or catching-up.
	Replicas []VolumeReplica `json:"replicas,omitempty"`
	// Degraded says how many of its copies are in sync, and why, when
	// fewer than it asks ("1 of 3 copies in sync: ...; restart web").
	Degraded string `json:"degraded,omitempty"`
}

// VolumeReplica is one replica of a volume.
type VolumeReplica struct {
	Node  string `json:"node"`
	State string `json:"state"`
}

// Snapshot is a read-only copy of a volume at one moment.
type Snapshot struct {
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
	Auto    bool      `json:"auto,omitempty"`
	// Space is what the snapshot holds alone, in bytes: what deleting
	// it frees, and what it counts for in the tenant's volume quota.
	Space int64 `json:"space,omitempty"`
}

func volumePath(name string, rest ...string) string {
	p := APIPrefix + "/volumes/" + url.PathEscape(name)
	for _, r := range rest {
		p += "/" + url.PathEscape(r)
	}
	return p
}

// VolumeInfos lists the tenant's volumes.
func (c *Client) VolumeInfos(ctx context.Context) ([]VolumeInfo, error) {
	var out []VolumeInfo
	err := c.call(ctx, request{method: http.MethodGet, path: APIPrefix + "/volumes", token: true}, &out)
	return out, err
}

// InspectVolume returns one volume.
func (c *Client) InspectVolume(ctx context.Context, name string) (*VolumeInfo, error) {
	var out VolumeInfo
	if err := c.call(ctx, request{method: http.MethodGet, path: volumePath(name), token: true}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// NewVolume creates a volume with a driver (local, lv2, nfs, gfs) and
// its options (size, zone, snapshot, snapshots.keep).
func (c *Client) NewVolume(ctx context.Context, v VolumeInfo) (*VolumeInfo, error) {
	var out VolumeInfo
	body := struct {
		Name    string            `json:"name"`
		Driver  string            `json:"driver,omitempty"`
		Options map[string]string `json:"options,omitempty"`
		Labels  map[string]string `json:"labels,omitempty"`
	}{v.Name, v.Driver, v.Options, v.Labels}
	if err := c.call(ctx, request{method: http.MethodPost, path: APIPrefix + "/volumes", token: true, body: body}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteVolume removes a volume that no container mounts, with its
// snapshots.
func (c *Client) DeleteVolume(ctx context.Context, name string) error {
	return c.call(ctx, request{method: http.MethodDelete, path: volumePath(name), token: true}, nil)
}

// Snapshots lists a volume's snapshots, oldest first.
func (c *Client) Snapshots(ctx context.Context, volume string) ([]Snapshot, error) {
	var out []Snapshot
	err := c.call(ctx, request{method: http.MethodGet, path: volumePath(volume, "snapshots"), token: true}, &out)
	return out, err
}

// CreateSnapshot takes a snapshot of a volume; an empty name is chosen by
// the server.
func (c *Client) CreateSnapshot(ctx context.Context, volume, name string) (*Snapshot, error) {
	var out Snapshot
	body := struct {
		Name string `json:"name,omitempty"`
	}{name}
	if err := c.call(ctx, request{method: http.MethodPost, path: volumePath(volume, "snapshots"), token: true, body: body}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RemoveSnapshot deletes a snapshot.
func (c *Client) RemoveSnapshot(ctx context.Context, volume, name string) error {
	return c.call(ctx, request{method: http.MethodDelete, path: volumePath(volume, "snapshots", name), token: true}, nil)
}

// Rollback makes a volume's files those of a snapshot; the state it
// replaces is kept as a snapshot.
func (c *Client) Rollback(ctx context.Context, volume, name string) error {
	return c.call(ctx, request{method: http.MethodPost, path: volumePath(volume, "snapshots", name, "rollback"), token: true, body: struct{}{}}, nil)
}
