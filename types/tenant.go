package types

import "time"

// Tenant is one customer of the cloud: every pod, image, volume and network
// belongs to exactly one, and no tenant sees another's objects.
type Tenant struct {
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
	Quota   Quota     `json:"quota"`
}

// Quota bounds what a tenant may use; a zero field means no limit.
type Quota struct {
	MemoryBytes int64 `json:"memoryBytes"`
	Pods        int   `json:"pods"`
	ImageBytes  int64 `json:"imageBytes"`
}
