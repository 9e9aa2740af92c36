package types

import "time"

// Event is one entry of the event stream that `docker events` shows:
// something happened to an object of a tenant.
type Event struct {
	Tenant string            `json:"tenant"`
	Type   string            `json:"type"`   // container, image, network, volume
	Action string            `json:"action"` // create, start, die, destroy, ...
	ID     string            `json:"id"`
	Attrs  map[string]string `json:"attrs,omitempty"`
	Time   time.Time         `json:"time"`
}
