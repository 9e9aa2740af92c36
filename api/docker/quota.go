package docker

// Quotas of a tenant (types.Quota) where the Docker API creates and starts
// pods.
//
// Pods: every container of the tenant counts, running or not, from create
// to rm; a create beyond the limit is refused.
//
// Memory: the sum of the memory limits of the tenant's pods that hold
// memory. A pod holds memory from the moment it is told to run (docker
// start, run, restart) until it is told to stop (docker stop, kill) or is
// removed, except that a pod with restart policy "no" that exited by itself
// (or any pod that exited after docker kill) holds none. Pods with any other restart policy hold their memory while
// they are meant to run, exited or not: their node may restart them at any
// moment without asking the API. A pod without a memory limit, in a tenant
// that has a memory quota, gets types.DefaultPodMemory as its limit at
// create (a real cgroup limit, shown by docker inspect), so that it cannot
// use more than it is counted for; a pod created before its tenant had a
// memory quota counts that much too. The check is made at create (would
// the pod fit if it started now: `docker run` then leaves no container
// behind when it does not) and again, exactly, at every start. Lowering a
// limit below what is in use stops nothing: it refuses what would add.
//
// Race safety: a create (store.CreatePodGuarded) reads the tenant's usage
// record (its pod count, and the memory of its pods meant to run, which
// every create, removal and change of a pod updates in the same
// transaction), runs the check, and commits only if that record did not
// change, retrying otherwise; only a memory check that does not fit by
// the record reads every pod to count exactly. A start
// (UpdatePodGuarded) reads the tenant's pods at one revision, runs the
// check, and commits only if no pod of the tenant changed since (an etcd
// range compare), retrying otherwise. Two concurrent creates or starts cannot
// both pass on the same headroom, not even through two API servers. A
// per-tenant lock in this server would not cover several servers of a
// cell. Statuses are not compared: what the check reads of them can only
// free memory when it changes (a pod whose status could go back to
// running by itself, through its restart policy, is counted whatever its
// status says).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"

	"github.com/macro-cloud/macro/image"
	"github.com/macro-cloud/macro/net/ipam"
	"github.com/macro-cloud/macro/sched"
	"github.com/macro-cloud/macro/store"
	"github.com/macro-cloud/macro/types"
)

// quotaError is a refusal by quota: 403, which the docker CLI prints as
// "Error response from daemon: quota exceeded: ...".
func quotaError(format string, args ...any) error {
	return errorf(http.StatusForbidden, "quota exceeded: "+format, args...)
}

// tenantQuota reads the tenant's quota; none for a tenant the store does
// not know (the machine's own socket before the first tenant exists).
func (s *Server) tenantQuota(ctx context.Context, tenant string) (types.Quota, error) {
	t, err := s.store.Tenant(ctx, tenant)
	if errors.Is(err, store.ErrNotFound) {
		return types.Quota{}, nil
	}
	if err != nil {
		return types.Quota{}, fmt.Errorf("quota of %s: %w", tenant, err)
	}
	return t.Quota, nil
}

// createPod stores a new pod within its tenant's pod and memory quotas,
// committed against the tenant's record as it was checked: a create that
// was under way when the tenant's removal began is refused (the removal
// deletes every pod the tenant has, but only those that exist by then).
//
// nets are the networks of p's endpoints (prepareCreate): the endpoints on
// overlays with a subnet get their addresses here, from the tenant's pods
// as they are when p commits, so that two creates through any API servers
// never take the same address.
func (s *Server) createPod(ctx context.Context, p *types.Pod, nets map[string]types.Network) error {
	addressed := hasSubnet(nets)
	asked := maps.Clone(p.Spec.Networks)
	err := s.store.CreatePodGuarded(ctx, p, func(tp store.TenantPods) error {
		if addressed {
			// Each attempt chooses anew from what was asked, against
			// the claims of the /24s it looks at.
			p.Spec.Networks = maps.Clone(asked)
			if err := assignAddresses(tp.Claims, &p.Spec, nets); err != nil {
				return err
			}
		}
		switch {
		case !tp.TenantExists && p.Tenant != types.DefaultTenant,
			tp.Tenant.Deleting:
			// The machine's own socket acts as tenant default, which
			// may predate tenants; any other tenant must exist.
			return errorf(http.StatusUnauthorized, "tenant %s does not exist or is being removed", p.Tenant)
		}
		q := tp.Tenant.Quota
		if q.MemoryBytes > 0 && p.Spec.Resources.MemoryBytes == 0 {
			if err := defaultMemory(&p.Spec); err != nil {
				return err
			}
		}
		return checkCreate(p.Tenant, q, tp, *p)
	})
	// The store gives the pod its default address in its namespace's /24
	// (store/vpc.go): 253 pods per namespace.
	switch {
	case errors.Is(err, ipam.ErrFull):
		return errorf(http.StatusServiceUnavailable, "no available IPv4 addresses in the default network of namespace %s: %v (a namespace holds 253 containers; remove one, or use another compose project)", p.Namespace, err)
	case errors.Is(err, store.ErrConflict):
		return errorf(http.StatusServiceUnavailable, "too many containers of tenant %s are being created at once (each waits for the others' addresses): try again", p.Tenant)
	case errors.Is(err, ipam.ErrNoSubnet):
		return errorf(http.StatusServiceUnavailable, "no subnet left for namespace %s: %v (delete a namespace: kra ns delete)", p.Namespace, err)
	}
	return err
}

// checkCreate is the quota arithmetic of a create: one more pod, and its
// memory as if it started now. The tenant's usage record decides (its
// pod count is exact; its memory counts every pod meant to run, never
// less than what is in use); only when that memory would not fit does
// the check need every pod (store.ErrNeedPods), to count exactly.
func checkCreate(tenant string, q types.Quota, tp store.TenantPods, p types.Pod) error {
	if q.Pods > 0 && tp.Usage.Pods+1 > q.Pods {
		return quotaError("tenant %s may have %d pods (containers, running or not), has %d: remove one (docker rm) or ask for a larger quota", tenant, q.Pods, tp.Usage.Pods)
	}
	if !tp.Full && q.MemoryBytes > 0 && tp.Usage.MemoryBytes+sched.PodMemory(p.Spec) > q.MemoryBytes {
		return store.ErrNeedPods
	}
	return checkMemory(tenant, q, tp, p)
}

// checkMemory refuses p when the memory of the tenant's other pods that
// hold memory and p's own exceed the quota.
func checkMemory(tenant string, q types.Quota, tp store.TenantPods, p types.Pod) error {
	if q.MemoryBytes == 0 || !tp.Full {
		return nil // !Full: checkCreate found room by the usage record
	}
	used := memoryInUse(tp, p.ID)
	need := sched.PodMemory(p.Spec)
	if used+need > q.MemoryBytes {
		return quotaError("tenant %s may run pods with %s of memory in total, its running pods have %s and this one needs %s: stop one (docker stop) or ask for a larger quota",
			tenant, image.HumanSize(q.MemoryBytes), image.HumanSize(used), image.HumanSize(need))
	}
	return nil
}

// memoryInUse sums the memory of the pods that hold memory (see
// types.HoldsMemory), but the one of ID except.
func memoryInUse(tp store.TenantPods, except string) int64 {
	var n int64
	for _, p := range tp.Pods {
		if p.ID != except && types.HoldsMemory(p, tp.Status(p.ID)) {
			n += sched.PodMemory(p.Spec)
		}
	}
	return n
}

// defaultMemory gives a pod without a memory limit the default one, in
// its spec and in the HostConfig docker inspect shows.
func defaultMemory(spec *types.PodSpec) error {
	spec.Resources.MemoryBytes = types.DefaultPodMemory
	if spec.Resources.MemorySwapBytes == 0 {
		spec.Resources.MemorySwapBytes = 2 * types.DefaultPodMemory
	}
	if len(spec.DockerHostConfig) == 0 {
		return nil
	}
	var hc map[string]json.RawMessage
	if err := json.Unmarshal(spec.DockerHostConfig, &hc); err != nil {
		return fmt.Errorf("host config: %w", err)
	}
	hc["Memory"] = json.RawMessage(fmt.Sprint(int64(types.DefaultPodMemory)))
	b, err := json.Marshal(hc)
	if err != nil {
		return err
	}
	spec.DockerHostConfig = b
	return nil
}

// updateDesired applies fn to a pod, as store.UpdatePod does, and checks
// the tenant's memory quota when fn makes a pod that held no memory hold
// some (docker start, restart of a stopped pod, docker update --restart
// always of an exited one). Every change of a desired state goes through
// here (setDesired), and so does docker update.
func (s *Server) updateDesired(ctx context.Context, tenant, id string, fn func(*types.Pod) error) (types.Pod, error) {
	q, err := s.tenantQuota(ctx, tenant)
	if err != nil {
		return types.Pod{}, err
	}
	if q.MemoryBytes == 0 {
		return s.store.UpdatePod(ctx, tenant, id, fn)
	}
	return s.store.UpdatePodGuarded(ctx, tenant, id, fn, func(before types.Pod, after *types.Pod, tp store.TenantPods) error {
		return checkStart(tenant, q, tp, before, *after)
	})
}

// checkStart is the quota arithmetic of a change of a pod: only a pod that
// held no memory and holds some after the change is checked (a start, or
// an exited pod given a restart policy that restarts it).
func checkStart(tenant string, q types.Quota, tp store.TenantPods, before, after types.Pod) error {
	st := tp.Status(before.ID)
	if !types.HoldsMemory(after, st) || types.HoldsMemory(before, st) {
		return nil
	}
	return checkMemory(tenant, q, tp, after)
}
