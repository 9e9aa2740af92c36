// Package volume keeps the data of tenants' volumes on one node. Each
// driver (local, lv2, nfs, gfs) implements Driver; drivers that take
// copy-on-write snapshots implement Snapshotter too. The agent chooses the
// driver a volume was made with and asks it for the directory that holds
// the volume's files (Root), mounting what needs mounting.
//
//	local   DIR/volumes/<tenant>/<name>/_data, a plain directory (Docker's local)
//	lv2     DIR/volumes/<tenant>/<name>/disk.img, an ext4 filesystem of the
//	        volume's size in a sparse image, loop-mounted on _data beside it
//	nfs,gfs a btrfs subvolume in the node's pool, DIR/btrfs/pool.img
//	        loop-mounted on DIR/btrfs/pool: v/<tenant>/<name> is the volume,
//	        s/<tenant>/<name>/<snap> its read-only snapshots
//
// Nothing here talks to the store: the API checks ownership and use, the
// node does what it is told.
package volume

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Ref names a tenant's volume.
type Ref struct {
	Tenant string
	Name   string
}

func (r Ref) String() string { return r.Tenant + "/" + r.Name }

// check refuses names that could leave the tenant's directory.
func (r Ref) check() error {
	for _, s := range []string{r.Tenant, r.Name} {
		if s == "" || s == "." || s == ".." || strings.ContainsAny(s, "/\x00") || strings.HasPrefix(s, ".") {
			return fmt.Errorf("invalid volume %q of tenant %q", r.Name, r.Tenant)
		}
	}
	return nil
}

// Driver keeps volumes of one kind on this node.
type Driver interface {
	// Name is the driver's name in the API: local, lv2, nfs, gfs.
	Name() string
	// Create makes the volume's storage; it is no error if it exists.
	Create(ctx context.Context, ref Ref, opts Options) error
	// Root is the directory that holds the volume's files, mounted if the
	// driver needs a mount (after a restart of macro or of the machine).
	Root(ctx context.Context, ref Ref, opts Options) (string, error)
	// Remove deletes the volume and its snapshots; a volume that is not
	// there is no error.
	Remove(ctx context.Context, ref Ref) error
	// Size is the bytes the volume's files take.
	Size(ctx context.Context, ref Ref) (int64, error)
}

// Snapshot is a read-only, point-in-time copy of a volume.
type Snapshot struct {
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
	// Auto: taken by the volume's schedule, pruned by it.
	Auto bool `json:"auto,omitempty"`
	// Space is what the snapshot holds alone, in bytes (what deleting
	// it frees; snapspace.go), as a listing measures it.
	Space int64 `json:"space,omitempty"`
}

// Snapshotter is a Driver that takes instant copy-on-write snapshots.
type Snapshotter interface {
	// Snapshot takes snapshot name of the volume now.
	Snapshot(ctx context.Context, ref Ref, s Snapshot) error
	// Snapshots lists the volume's snapshots, oldest first.
	Snapshots(ctx context.Context, ref Ref) ([]Snapshot, error)
	DeleteSnapshot(ctx context.Context, ref Ref, name string) error
	// Rollback makes the volume's files those of snapshot name. The
	// caller made sure no pod has the volume mounted. A crash at any
	// point leaves the volume as it was before or as the snapshot.
	Rollback(ctx context.Context, ref Ref, name string, opts Options) error
}

// Errors of the drivers; the API maps them to statuses.
var (
	ErrNoSnapshots      = errors.New("this volume driver has no snapshots")
	ErrSnapshotNotFound = errors.New("no such snapshot")
	ErrSnapshotExists   = errors.New("snapshot exists")
)

// Registry holds the drivers of a node by name.
type Registry map[string]Driver

// Register adds d under its name.
func (r Registry) Register(d Driver) { r[d.Name()] = d }

// Driver returns the driver of that name ("" is local).
func (r Registry) Driver(name string) (Driver, error) {
	if name == "" {
		name = "local"
	}
	d, ok := r[name]
	if !ok {
		return nil, fmt.Errorf("volume driver %q is not available on this node", name)
	}
	return d, nil
}

// NewRegistry returns the drivers of a node whose data dir is dir.
func NewRegistry(dir string, cfg Config) Registry {
	r := Registry{}
	r.Register(&Local{Dir: dir})
	r.Register(&LV2{Dir: dir})
	pool := &Pool{Dir: dir, Size: cfg.PoolBytes}
	r.Register(&Btrfs{Pool: pool, Kind: "nfs"})
	r.Register(&Btrfs{Pool: pool, Kind: "gfs"})
	return r
}

// Config sizes the node's storage.
type Config struct {
	// PoolBytes is the size of the btrfs pool image of nfs and gfs
	// volumes when the node first makes it; 0 is half of the free space
	// of the data dir's filesystem.
	PoolBytes int64
}
