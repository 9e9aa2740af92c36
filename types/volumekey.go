package types

import "time"

// VolumeKey is an access key of one volume: what WebDAV (basic auth) and
// S3 (Signature V4) clients present to reach that volume without the
// tenant's token. The store keeps only the SHA-256 of its secret; the
// server derives the secret itself from its key file when it verifies a
// signature (docs/ACCESS.md).
type VolumeKey struct {
	// ID is the access key ID, "MK" and 18 upper-case hex digits.
	ID     string `json:"id"`
	Tenant string `json:"tenant"`
	// Volume is the volume the key reaches; "" for all the tenant's
	// volumes (the way to list buckets and reach each over S3, where an
	// access token cannot sign).
	Volume string `json:"volume,omitempty"`
	// VolumeCreated is the creation time of the volume the key was made
	// for: a later volume of the same name is not reachable with it.
	VolumeCreated time.Time `json:"volumeCreated"`
	ReadOnly      bool      `json:"readOnly,omitempty"`
	Hash          string    `json:"hash"` // hex SHA-256 of the secret
	Description   string    `json:"description,omitempty"`
	Created       time.Time `json:"created"`
}
