package types

import "time"

// Domain is a custom domain a tenant claims for its ingress routes (hosts
// outside the cluster's own domain). A claim holds the name for its tenant
// alone; it serves once verified, when the tenant has shown it controls
// the name's DNS by publishing Token in a TXT record.
type Domain struct {
	Name     string    `json:"name"` // lower case, no trailing dot
	Tenant   string    `json:"tenant"`
	Token    string    `json:"token"` // the TXT record's value
	Created  time.Time `json:"created"`
	Verified time.Time `json:"verified,omitzero"` // zero while pending
}

// DomainChallengeLabel is the DNS name, under the domain, of the TXT
// record that proves a claim: _macro-challenge.<domain>.
const DomainChallengeLabel = "_macro-challenge"
