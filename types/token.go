package types

import "time"

// Token is an access token of a tenant as the store keeps it: only the
// SHA-256 of its secret, never the secret.
type Token struct {
	ID          string    `json:"id"`
	Tenant      string    `json:"tenant"`
	Hash        string    `json:"hash"` // hex SHA-256 of the secret
	Description string    `json:"description,omitempty"`
	Created     time.Time `json:"created"`
	LastUsed    time.Time `json:"lastUsed,omitzero"`
}
