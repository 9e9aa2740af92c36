package types

import "time"

// Volume is a tenant's named volume. Its data lives on the node that
// mounts it, under the node's data dir and the tenant's name, so one
// tenant's volume can never be another's.
type Volume struct {
	Name    string            `json:"name"`
	Tenant  string            `json:"tenant"`
	Driver  string            `json:"driver"` // local
	Labels  map[string]string `json:"labels,omitempty"`
	Options map[string]string `json:"options,omitempty"`
	Created time.Time         `json:"created"`
	// Anonymous volumes are made for `-v /path` and an image's VOLUME;
	// `docker rm -v` removes them with their pod.
	Anonymous bool `json:"anonymous,omitempty"`
	// RemoveWith is the pod whose removal removes this volume: the
	// anonymous volumes of a --rm pod, as Docker removes them.
	RemoveWith string `json:"removeWith,omitempty"`
}

// Mount is one filesystem a pod gets besides its rootfs, in Docker's words.
type Mount struct {
	// Type is volume, bind or tmpfs.
	Type string `json:"type"`
	// Source is the volume's name (volume) or the host path (bind).
	Source   string `json:"source,omitempty"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"readOnly,omitempty"`
	// Subpath is a path inside the volume that is mounted instead of its root.
	Subpath string `json:"subpath,omitempty"`
	// NoCopy: do not fill an empty volume with the image's files at Target.
	NoCopy bool `json:"noCopy,omitempty"`
	// TmpfsSize in bytes and TmpfsMode for tmpfs mounts; 0 is the default.
	TmpfsSize int64  `json:"tmpfsSize,omitempty"`
	TmpfsMode uint32 `json:"tmpfsMode,omitempty"`
}
