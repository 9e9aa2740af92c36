package types

import "time"

// Cert is a client certificate the cluster CA issued to a tenant, as the
// store records it: enough to revoke it with the token it was issued for
// or with its tenant. Serial is the certificate's serial number in
// lowercase hex.
type Cert struct {
	Serial  string    `json:"serial"`
	Tenant  string    `json:"tenant"`
	TokenID string    `json:"tokenID,omitempty"`
	Issued  time.Time `json:"issued"`
	Expires time.Time `json:"expires"`
}

// RevokedCert is an entry of the revocation list: a certificate that is
// refused until it expires (then the entry may go).
type RevokedCert struct {
	Serial  string    `json:"serial"`
	Tenant  string    `json:"tenant"`
	Expires time.Time `json:"expires"`
	Revoked time.Time `json:"revoked"`
	Reason  string    `json:"reason,omitempty"` // "token revoked", "tenant deleted"
}
