package types

import "time"

// Tenant is one customer of the cloud: every pod, image, volume and network
// belongs to exactly one, and no tenant sees another's objects.
type Tenant struct {
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
	Quota   Quota     `json:"quota"`
	// Deleting is set when `macro admin tenant rm` starts: from then on
	// the tenant's credentials are refused while its objects are removed;
	// the tenant itself goes last.
	Deleting bool `json:"deleting,omitempty"`
	// NoEgress cuts the tenant's pods off addresses outside its VPC
	// (IPv4 and IPv6 through their node); egress is on by default.
	NoEgress bool `json:"noEgress,omitempty"`
	// SuspendAfter is the tenant's default auto-suspend rule: its pods
	// without a kr.suspend label are frozen after that long without
	// ingress traffic; zero: never (`macro admin tenant set-suspend`).
	SuspendAfter time.Duration `json:"suspendAfter,omitempty"`
}

// Quota bounds what a tenant may use; a zero field means no limit.
//
// Pods counts every container the tenant has, running or not.
// MemoryBytes bounds the sum of the memory limits of the tenant's pods
// that run or are about to (see api/docker/quota.go); a pod created
// without a limit in a tenant with a memory quota gets DefaultPodMemory.
// ImageBytes bounds the size of the layers of the tenant's images, each
// layer counted once, as `docker system df` shows it.
//
// VolumeBytes bounds the sum of the sizes of the tenant's volumes (their
// `size` option; DefaultVolumeSize for a volume without one, which an nfs
// or gfs volume made in a tenant with this quota gets as its limit);
// Volumes bounds how many volumes it has. See api/docker/volumequota.go.
type Quota struct {
	MemoryBytes int64 `json:"memoryBytes"`
	Pods        int   `json:"pods"`
	ImageBytes  int64 `json:"imageBytes"`
	VolumeBytes int64 `json:"volumeBytes,omitempty"`
	Volumes     int   `json:"volumes,omitempty"`
}

// DefaultVolumeSize is what a volume without a size option counts for in
// a volume quota, and the size an nfs or gfs volume made without one gets
// in a tenant with such a quota.
const DefaultVolumeSize = 1 << 30

// DefaultPodMemory is the memory limit of a pod created without one in a
// tenant that has a memory quota (Kraud's default pod size).
const DefaultPodMemory = 256 << 20

// Usage is what a tenant uses of what its quota bounds.
type Usage struct {
	Pods        int   `json:"pods"`
	MemoryBytes int64 `json:"memoryBytes"`
	ImageBytes  int64 `json:"imageBytes"`
	VolumeBytes int64 `json:"volumeBytes"`
	Volumes     int   `json:"volumes"`
}

// PodMemory is what a pod counts for in a memory quota: its limit, or
// DefaultPodMemory without one.
func PodMemory(spec PodSpec) int64 {
	if spec.Resources.MemoryBytes > 0 {
		return spec.Resources.MemoryBytes
	}
	return DefaultPodMemory
}

// MeantToRun says the pod is told to run (started and not stopped).
func MeantToRun(p Pod) bool {
	return p.Desired.State == PhaseRunning || p.Desired.State == PhasePaused
}

// HoldsMemory says whether a pod counts in its tenant's memory quota: from
// the moment it is told to run until it is told to stop or removed, except
// that a pod with restart policy "no" that exited by itself, or one that
// exited after docker kill, holds none. A pod with another policy holds
// its memory while it is meant to run, exited or not: its node may
// restart it without asking. A change of status alone can therefore only
// free memory, never take some.
func HoldsMemory(p Pod, st PodStatus) bool {
	if !MeantToRun(p) {
		return false
	}
	if st.Phase.Active() || st.Run < p.Desired.Run {
		return true // running, or told to start and not yet answered
	}
	if p.Desired.Killed {
		return false // docker kill: its exit is final whatever the policy
	}
	return p.Spec.Restart.Policy != "" && p.Spec.Restart.Policy != "no"
}

// TenantNets is one message of a follow of the tenants' network settings
// (what a node's router needs of each tenant): Sync carries the whole set
// and replaces what came before; otherwise Tenants are the changed ones.
type TenantNets struct {
	Sync    bool        `json:"sync,omitempty"`
	Tenants []TenantNet `json:"tenants,omitempty"`
	// Key, when set (what a server sends an agent), says that the
	// tenants' names are keyed with it (nodeproto.KeyedName): a node
	// learns no tenant's name, only whether the tenant of one of its pods
	// has its egress off.
	Key []byte `json:"key,omitempty"`
}

// TenantNet is what a node's router needs of a tenant.
type TenantNet struct {
	Name     string `json:"name"`
	NoEgress bool   `json:"noEgress,omitempty"`
	Gone     bool   `json:"gone,omitempty"` // the tenant was removed
}
