package types

import "time"

// Volume is a tenant's named volume. Its data lives on a node, under the
// node's data dir and the tenant's name, so one tenant's volume can never
// be another's.
type Volume struct {
	Name   string `json:"name"`
	Tenant string `json:"tenant"`
	// Driver is local, lv2, nfs or gfs (package volume); Options are its
	// driver options as the tenant gave them (size, zone, snapshot...).
	Driver  string            `json:"driver"`
	Labels  map[string]string `json:"labels,omitempty"`
	Options map[string]string `json:"options,omitempty"`
	Created time.Time         `json:"created"`
	// Anonymous volumes are made for `-v /path` and an image's VOLUME;
	// `docker rm -v` removes them with their pod.
	Anonymous bool `json:"anonymous,omitempty"`
	// RemoveWith is the pod whose removal removes this volume: the
	// anonymous volumes of a --rm pod, as Docker removes them.
	RemoveWith string `json:"removeWith,omitempty"`
	// Node holds the volume's data, chosen when it is created (lv2, nfs,
	// gfs); pods that mount it are pinned there. Empty for local volumes,
	// which are made on the node of the first pod that mounts them.
	Node string `json:"node,omitempty"`
	// Replicas are the other nodes that keep a copy of an nfs or gfs
	// volume, and whether each has every acknowledged write (volume
	// package: ReplicaInSync, ReplicaStale, ReplicaCatchingUp,
	// ReplicaSyncing). Epoch counts the changes of primary (Node) and of
	// replica nodes (a lost one replaced): a write sent under an older
	// epoch is refused.
	Replicas []VolumeReplica `json:"replicas,omitempty"`
	Epoch    int64           `json:"epoch,omitempty"`
	// Replicating is set by the leader on an nfs or gfs volume made
	// without replicas (on a one-node cluster) once a node could keep a
	// copy: from then on no pod or server writes its directory directly,
	// only through its primary's write sequence, and its first replica
	// is added once no pod that bound the directory before is left
	// (DirectPods: the ones the leader saw last, for inspect). Both are
	// cleared when a replica is first in sync.
	Replicating bool     `json:"replicating,omitempty"`
	DirectPods  []string `json:"directPods,omitempty"`
	// Limit is the size a node holds a local volume to (writes past it
	// fail with ENOSPC): what it counts for in its tenant's volume quota
	// when it was made in a tenant that has one; 0: none, a plain
	// directory as Docker's.
	Limit int64 `json:"limit,omitempty"`
}

// VolumeReplica is one replica of a volume.
type VolumeReplica struct {
	Node  string `json:"node"`
	State string `json:"state"`
}

// Mount is one filesystem a pod gets besides its rootfs, in Docker's words.
type Mount struct {
	// Type is volume, bind or tmpfs.
	Type string `json:"type"`
	// Source is the volume's name (volume) or the host path (bind).
	Source string `json:"source,omitempty"`
	// Driver is the volume's driver, as it was when the pod was created
	// (empty: local).
	Driver   string `json:"driver,omitempty"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"readOnly,omitempty"`
	// Subpath is a path inside the volume that is mounted instead of its root.
	Subpath string `json:"subpath,omitempty"`
	// NoCopy: do not fill an empty volume with the image's files at Target.
	NoCopy bool `json:"noCopy,omitempty"`
	// TmpfsSize in bytes and TmpfsMode for tmpfs mounts; 0 is the default.
	TmpfsSize int64  `json:"tmpfsSize,omitempty"`
	TmpfsMode uint32 `json:"tmpfsMode,omitempty"`
	// Limit is a local volume's Limit, as it was when the pod was
	// created: the node makes the volume of that size.
	Limit int64 `json:"limit,omitempty"`
}
