package store

import (
	"context"
	"fmt"
	"time"

	"github.com/macro-cloud/macro/types"
)

// SetTenantSuspend sets the tenant's default auto-suspend rule (zero:
// none); ErrNotFound when the tenant is missing or being removed.
func (s *Store) SetTenantSuspend(ctx context.Context, name string, after time.Duration) (types.Tenant, error) {
	if after < 0 {
		return types.Tenant{}, fmt.Errorf("suspend rule %v: negative", after)
	}
	return s.updateTenant(ctx, name, func(t *types.Tenant) error {
		if t.Deleting {
			return fmt.Errorf("tenant %s is being deleted: %w", name, ErrNotFound)
		}
		t.SuspendAfter = after
		return nil
	})
}
