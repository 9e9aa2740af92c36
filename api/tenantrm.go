package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/macro-cloud/macro/store"
	"github.com/macro-cloud/macro/types"
)

// TenantImages is what the admin API needs of the image store: a
// tenant's image storage as its quota counts it, and, to remove a tenant,
// dropping every image, tag and pushed blob of the tenant and the content
// no other tenant holds. *image.Store implements it.
type TenantImages interface {
	ImageBytes(ctx context.Context, tenant string) int64
	RemoveTenant(ctx context.Context, tenant string) (images int, err error)
}

// Removed is the answer of DELETE /tenants/{name}: what went with the
// tenant.
type Removed struct {
	Tenant       string `json:"tenant"`
	Pods         int    `json:"pods"`
	Tokens       int    `json:"tokens"`
	Certificates int    `json:"certificates"` // revoked
	Images       int    `json:"images"`
	Volumes      int    `json:"volumes,omitempty"` // with their data and snapshots
}

// removeTimeout bounds a tenant's removal, which goes on when the admin
// client disconnects (a removal cut short resumes when asked again: the
// tenant stays marked as being deleted, its credentials refused).
const removeTimeout = 5 * time.Minute

// stopWait is how long removal waits for the tenant's pods to stop.
const stopWait = time.Minute

// DELETE /tenants/{name}[?force=1]. The order makes the tenant unreachable
// first: it is marked as being deleted (every token and certificate of it
// is refused from then on), its tokens go and its certificates are
// revoked; then its pods are stopped and removed, its images dropped, and
// the tenant goes last. Without force, a tenant with pods is refused and
// left as it was.
func (s *Server) deleteTenant(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	force, _ := strconv.ParseBool(r.URL.Query().Get("force"))
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), removeTimeout)
	defer cancel()
	t, err := s.store.Tenant(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusNotFound, "tenant %q not found", name)
	} else if err != nil {
		return err
	}
	hasPods := func(tp store.TenantPods) error {
		return errorf(http.StatusConflict, "tenant %q has %d pods: remove them first, or use --force to stop and remove them with the tenant", name, len(tp.Pods))
	}
	tp, err := s.store.ReadTenantPods(ctx, name)
	if err != nil {
		return err
	}
	if len(tp.Pods) > 0 && !force {
		return hasPods(tp) // and nothing changed
	}
	if _, err := s.store.MarkTenantDeleting(ctx, name); err != nil {
		return err
	}
	if !force {
		// A pod made by a request that was in flight when the tenant was
		// marked: refuse as well, and leave the tenant as it was.
		if tp, err = s.store.ReadTenantPods(ctx, name); err != nil {
			return err
		}
		if len(tp.Pods) > 0 {
			if !t.Deleting {
				if err := s.store.ClearTenantDeleting(ctx, name); err != nil {
					return err
				}
			}
			return hasPods(tp)
		}
	}
	rm := Removed{Tenant: name}
	toks, err := s.store.Tokens(ctx, name)
	if err != nil {
		return err
	}
	rm.Tokens = len(toks)
	revoked, err := s.store.RevokeTenantCredentials(ctx, name, s.now())
	if err != nil {
		return fmt.Errorf("revoke the credentials of %s: %w", name, err)
	}
	s.noteRevoked(revoked)
	rm.Certificates = len(revoked)
	s.log.Info("removing tenant", "tenant", name, "pods", len(tp.Pods), "tokens", rm.Tokens, "certificates", rm.Certificates)

	if rm.Pods, err = s.removePods(ctx, name); err != nil {
		return err
	}
	if rm.Volumes, err = s.removeVolumes(ctx, name); err != nil {
		return err
	}
	if s.images != nil {
		if rm.Images, err = s.images.RemoveTenant(ctx, name); err != nil {
			return fmt.Errorf("remove the images of %s: %w", name, err)
		}
	}
	if err := s.store.DeleteTenant(ctx, name); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	s.log.Info("tenant removed", "tenant", name, "pods", rm.Pods, "images", rm.Images)
	writeJSON(w, http.StatusOK, rm)
	return nil
}

// removePods stops every pod of the tenant at once (a kill, as docker rm
// -f does), waits until none runs any more, and removes them. Waiting
// first means their root filesystems are no longer in use when the
// tenant's images go.
func (s *Server) removePods(ctx context.Context, tenant string) (int, error) {
	tp, err := s.store.ReadTenantPods(ctx, tenant)
	if err != nil {
		return 0, err
	}
	zero := 0
	for _, p := range tp.Pods {
		_, err := s.store.UpdatePod(ctx, tenant, p.ID, func(p *types.Pod) error {
			p.Desired = types.DesiredState{State: types.PhaseExited, Run: p.Desired.Run, StopTimeout: &zero}
			p.Spec.Restart = types.Restart{Policy: "no"}
			return nil
		})
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return 0, fmt.Errorf("stop pod %s: %w", p.ID, err)
		}
	}
	deadline := time.Now().Add(stopWait)
	for {
		tp, err = s.store.ReadTenantPods(ctx, tenant)
		if err != nil {
			return 0, err
		}
		running := 0
		for _, p := range tp.Pods {
			if st := tp.Status(p.ID); st.Phase.Active() {
				running++
			}
		}
		if running == 0 {
			break
		}
		if time.Now().After(deadline) {
			s.log.Warn("pods still running after a minute; removing them anyway (their nodes stop them)", "tenant", tenant, "running", running)
			break
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	for _, p := range tp.Pods {
		if err := s.store.DeletePod(ctx, tenant, p.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
			return 0, fmt.Errorf("remove pod %s: %w", p.ID, err)
		}
	}
	return len(tp.Pods), nil
}

// removeVolumes removes the tenant's volumes, their data on the nodes
// (unmounted, loop devices freed) and their snapshots; its pods are gone.
func (s *Server) removeVolumes(ctx context.Context, tenant string) (int, error) {
	if s.volumes == nil {
		return 0, nil
	}
	vols, err := s.store.Volumes(ctx, tenant)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, v := range vols {
		if err := s.volumes.RemoveVolume(ctx, tenant, v.Name); err != nil {
			return n, fmt.Errorf("remove the volumes of %s: %w", tenant, err)
		}
		n++
	}
	return n, nil
}
