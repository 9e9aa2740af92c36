package types

import "time"

// Namespace is a tenant's compose project, created explicitly. Pods may
// name a namespace that was never created; it exists while they do.
type Namespace struct {
	Name    string    `json:"name"`
	Tenant  string    `json:"tenant"`
	Created time.Time `json:"created"`
}
