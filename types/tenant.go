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
}

// Quota bounds what a tenant may use; a zero field means no limit.
//
// Pods counts every container the tenant has, running or not.
// MemoryBytes bounds the sum of the memory limits of the tenant's pods
// that run or are about to (see api/docker/quota.go); a pod created
// without a limit in a tenant with a memory quota gets DefaultPodMemory.
// ImageBytes bounds the size of the layers of the tenant's images, each
// layer counted once, as `docker system df` shows it.
type Quota struct {
	MemoryBytes int64 `json:"memoryBytes"`
	Pods        int   `json:"pods"`
	ImageBytes  int64 `json:"imageBytes"`
}

// DefaultPodMemory is the memory limit of a pod created without one in a
// tenant that has a memory quota (Kraud's default pod size).
const DefaultPodMemory = 256 << 20
