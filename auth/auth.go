// Package auth tells who is calling: the tenant of a request, from a client
// certificate signed by the cluster's own CA (mutual TLS, what the docker
// CLI presents) or from an access token (`Authorization: Bearer kr_...`,
// what kra and the registry's clients send). It owns the three pieces that
// make this work: access tokens (generated here, stored hashed by the
// store), the cluster CA with the certificates it signs, and an
// Authenticator that rate-limits failed attempts per remote address.
package auth

import "context"

// Identity is the caller of a request once authenticated.
type Identity struct {
	Tenant string
	// Method is how the caller proved it: MethodToken, MethodCertificate,
	// or MethodLocal for the machine's own unix sockets.
	Method  string
	TokenID string // with MethodToken
}

// Ways an Identity is established.
const (
	MethodToken       = "token"
	MethodCertificate = "certificate"
	MethodLocal       = "local"
)

type identityKey struct{}

// WithIdentity returns a context that carries id.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// IdentityFrom returns the identity a context carries.
func IdentityFrom(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok && id.Tenant != ""
}

// WithTenant returns a context whose caller is tenant, as the machine's own
// unix sockets set it.
func WithTenant(ctx context.Context, tenant string) context.Context {
	return WithIdentity(ctx, Identity{Tenant: tenant, Method: MethodLocal})
}

// TenantFrom returns the tenant of the caller a context carries.
func TenantFrom(ctx context.Context) (string, bool) {
	id, ok := IdentityFrom(ctx)
	return id.Tenant, ok
}
