package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/macro-cloud/macro/sched"
	"github.com/macro-cloud/macro/types"
)

var errQuota = errors.New("quota")

// quotaGuard is the arithmetic api/docker's checkCreate does: pods by the
// usage record, memory by the record when it fits, else by every pod.
func quotaGuard(pods int, mem int64) func(p *types.Pod) func(TenantPods) error {
	return func(p *types.Pod) func(TenantPods) error {
		return func(tp TenantPods) error {
			if pods > 0 && tp.Usage.Pods+1 > pods {
				return errQuota
			}
			need := sched.PodMemory(p.Spec)
			if mem == 0 || tp.Usage.MemoryBytes+need <= mem {
				return nil
			}
			if !tp.Full {
				return ErrNeedPods
			}
			var used int64
			for _, q := range tp.Pods {
				if types.HoldsMemory(q, tp.Status(q.ID)) {
					used += sched.PodMemory(q.Spec)
				}
			}
			if used+need > mem {
				return errQuota
			}
			return nil
		}
	}
}

// index reads what the store keeps of a tenant for creates: its usage
// record (nil: none), address claims and subnet claims.
func index(t *testing.T, s *Store, tenant string) (*types.TenantUsage, map[netip.Addr]string, map[string]string) {
	t.Helper()
	ctx := context.Background()
	resp, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(usageKey(tenant)),
		clientv3.OpGet(tenantPrefix("vpcaddr", tenant), clientv3.WithPrefix()),
		clientv3.OpGet(tenantPrefix("vpcnet", tenant), clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		t.Fatal(err)
	}
	var u *types.TenantUsage
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
		u = &types.TenantUsage{}
		if err := json.Unmarshal(kvs[0].Value, u); err != nil {
			t.Fatal(err)
		}
	}
	addrs := map[netip.Addr]string{}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		a := netip.MustParseAddr(strings.TrimPrefix(string(kv.Key), tenantPrefix("vpcaddr", tenant)))
		if len(kv.Value) == 0 { // resting: see restingAddrs
			continue
		}
		addrs[a] = string(kv.Value)
	}
	nets := map[string]string{}
	for _, kv := range resp.Responses[2].GetResponseRange().Kvs {
		nets[strings.TrimPrefix(string(kv.Key), tenantPrefix("vpcnet", tenant))] = string(kv.Value)
	}
	return u, addrs, nets
}

// restingAddrs are the tenant's freed addresses that rest, each on a lease.
func restingAddrs(t *testing.T, s *Store, tenant string) map[netip.Addr]bool {
	t.Helper()
	resp, err := s.cli.Get(context.Background(), tenantPrefix("vpcaddr", tenant), clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	out := map[netip.Addr]bool{}
	for _, kv := range resp.Kvs {
		if len(kv.Value) == 0 {
			if kv.Lease == 0 {
				t.Errorf("%s: %s rests without a lease", tenant, kv.Key)
			}
			out[netip.MustParseAddr(strings.TrimPrefix(string(kv.Key), tenantPrefix("vpcaddr", tenant)))] = true
		}
	}
	return out
}

// checkIndex compares the index with what the tenant's pods say: every
// address a pod holds claimed by it and nothing else claimed, the usage
// record their count and memory.
func checkIndex(t *testing.T, s *Store, tenant string) TenantPods {
	t.Helper()
	tp, err := s.ReadTenantPods(context.Background(), tenant)
	if err != nil {
		t.Fatal(err)
	}
	u, addrs, nets := index(t, s, tenant)
	var want types.TenantUsage
	wantAddrs := map[netip.Addr]string{}
	for i := range tp.Pods {
		p := &tp.Pods[i]
		want = addUsage(want, podUsage(p), types.TenantUsage{})
		addrs := podAddrs(p)
		if a, err := netip.ParseAddr(tp.Statuses[p.ID].IPv4); err == nil && p.VPC == nil {
			addrs = append(addrs, a) // reported by its node, from before records
		}
		for _, a := range addrs {
			if other, dup := wantAddrs[a]; dup {
				t.Errorf("%s: pods %s and %s both hold %s", tenant, other, p.ID, a)
			}
			wantAddrs[a] = p.ID
		}
	}
	if u == nil || *u != want {
		t.Errorf("%s: usage record %+v, pods say %+v", tenant, u, want)
	}
	for a, id := range wantAddrs {
		if addrs[a] != id {
			t.Errorf("%s: %s is claimed by %q, held by %s", tenant, a, addrs[a], id)
		}
	}
	for a, id := range addrs {
		if _, ok := wantAddrs[a]; !ok {
			t.Errorf("%s: %s is claimed by %s, held by no pod", tenant, a, id)
		}
	}
	if len(nets) != 2*len(tp.Nets) {
		t.Errorf("%s: subnet claims %v for records %v", tenant, nets, tp.Nets)
	}
	return tp
}

// TestClaimsConcurrentQuota: 90 creates at once through three clients for
// one tenant with a quota of 60 pods and 40 pods' memory (those created
// running): exactly 60 pods, at most 40 running, distinct addresses in two
// namespaces, the index exact; removals free what they held, and the freed
// address is the next one given.
func TestClaimsConcurrentQuota(t *testing.T) {
	s := openStore(t)
	clients := []*Store{s, secondClient(t, s), secondClient(t, s)}
	ctx := context.Background()
	const n, maxPods, maxRunning = 90, 60, 40
	const mem = 64 << 20
	guard := quotaGuard(maxPods, maxRunning*mem)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := &types.Pod{ID: podID(i), Name: fmt.Sprintf("p%d", i), Tenant: "alice", Namespace: []string{"shop", "blog"}[i%2],
				Spec: types.PodSpec{Resources: types.Resources{MemoryBytes: mem}}}
			if i%3 != 0 {
				p.Desired = types.DesiredState{State: types.PhaseRunning, Run: 1}
			}
			errs[i] = clients[i%3].CreatePodGuarded(ctx, p, guard(p))
		}()
	}
	wg.Wait()
	ok := 0
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, errQuota):
			t.Fatalf("create %d: %v", i, err)
		}
	}
	tp := checkIndex(t, s, "alice")
	running := 0
	for _, p := range tp.Pods {
		if types.MeantToRun(p) {
			running++
		}
	}
	if ok != maxPods || len(tp.Pods) != maxPods || running > maxRunning {
		t.Fatalf("%d creates succeeded, %d pods, %d running; want %d pods, at most %d running", ok, len(tp.Pods), running, maxPods, maxRunning)
	}

	// Removing a pod frees its count, and its address, which rests: the
	// next pod gets another.
	var gone types.Pod
	for _, p := range tp.Pods {
		if p.Namespace == "shop" {
			gone = p
			break
		}
	}
	if err := clients[1].DeletePod(ctx, "alice", gone.ID); err != nil {
		t.Fatal(err)
	}
	checkIndex(t, s, "alice")
	next := &types.Pod{ID: podID(1000), Name: "next", Tenant: "alice", Namespace: "shop"}
	if err := clients[2].CreatePodGuarded(ctx, next, guard(next)); err != nil {
		t.Fatal(err)
	}
	if next.VPC.IPv4 == gone.VPC.IPv4 || !restingAddrs(t, s, "alice")[gone.VPC.IPv4] {
		t.Fatalf("after removing %s, the next pod got %s; resting: %v", gone.VPC.IPv4, next.VPC.IPv4, restingAddrs(t, s, "alice"))
	}
	if err := s.CreatePodGuarded(ctx, &types.Pod{ID: podID(1001), Name: "over", Tenant: "alice"}, guard(next)); !errors.Is(err, errQuota) {
		t.Fatalf("one past the quota: %v", err)
	}
	checkIndex(t, s, "alice")

	// A stop frees memory in the record; a start takes it.
	var run types.Pod
	for _, p := range checkIndex(t, s, "alice").Pods {
		if types.MeantToRun(p) {
			run = p
			break
		}
	}
	before, _, _ := index(t, s, "alice")
	if _, err := s.UpdatePod(ctx, "alice", run.ID, func(p *types.Pod) error { p.Desired.State = types.PhaseExited; return nil }); err != nil {
		t.Fatal(err)
	}
	after, _, _ := index(t, s, "alice")
	if after.MemoryBytes != before.MemoryBytes-mem || after.Pods != before.Pods {
		t.Fatalf("stop: usage %+v, was %+v", *after, *before)
	}

	// Every pod removed at once through the three clients: nothing left
	// counted or claimed.
	all := checkIndex(t, s, "alice").Pods
	derrs := make([]error, len(all))
	for i, p := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			derrs[i] = clients[i%3].DeletePod(ctx, "alice", p.ID)
		}()
	}
	wg.Wait()
	for i, err := range derrs {
		if err != nil {
			t.Fatalf("delete %d: %v", i, err)
		}
	}
	if u, addrs, _ := index(t, s, "alice"); *u != (types.TenantUsage{}) || len(addrs) != 0 {
		t.Fatalf("after removing every pod: usage %+v, claims %v", *u, addrs)
	}
	if r := restingAddrs(t, s, "alice"); len(r) != len(all)+1 {
		t.Fatalf("%d addresses rest after removing %d pods (and one before)", len(r), len(all))
	}
}

// TestClaimsOverlayUpdates: an overlay address given by a change of the
// pod is claimed with it, one given up is freed, and a second pod cannot
// claim an address another holds.
func TestClaimsOverlayUpdates(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	web := &types.Pod{ID: podID(1), Name: "web", Tenant: "alice"}
	if err := s.CreatePodGuarded(ctx, web, allow); err != nil {
		t.Fatal(err)
	}
	connect := func(addr string) func(*types.Pod) error {
		return func(p *types.Pod) error {
			p.Spec.Networks = map[string]types.Endpoint{"back": {IPv4Address: addr, Subnet: "10.9.0.0/24"}}
			return nil
		}
	}
	if _, err := s.UpdatePod(ctx, "alice", web.ID, connect("10.9.0.2")); err != nil {
		t.Fatal(err)
	}
	if _, addrs, _ := index(t, s, "alice"); addrs[netip.MustParseAddr("10.9.0.2")] != web.ID {
		t.Fatalf("claims after connect: %v", addrs)
	}
	db := &types.Pod{ID: podID(2), Name: "db", Tenant: "alice"}
	if err := s.CreatePodGuarded(ctx, db, allow); err != nil {
		t.Fatal(err)
	}
	// A taken address: the compare fails every attempt.
	if _, err := s.UpdatePodGuarded(ctx, "alice", db.ID, connect("10.9.0.2"), func(types.Pod, *types.Pod, TenantPods) error { return nil }); !errors.Is(err, ErrConflict) {
		t.Fatalf("a claimed address: %v", err)
	}
	if _, err := s.UpdatePod(ctx, "alice", web.ID, func(p *types.Pod) error { p.Spec.Networks = nil; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdatePodGuarded(ctx, "alice", db.ID, connect("10.9.0.2"), func(types.Pod, *types.Pod, TenantPods) error { return nil }); err != nil {
		t.Fatalf("a freed address: %v", err)
	}
	checkIndex(t, s, "alice")
	// The tenant's removal takes the index with it.
	if err := s.CreateTenant(ctx, &types.Tenant{Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteTenant(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if u, addrs, nets := index(t, s, "alice"); u != nil || len(addrs) != 0 || len(nets) != 0 {
		t.Fatalf("after the tenant's removal: %v %v %v", u, addrs, nets)
	}
}

// TestClaimsNamespaceDelete: a deleted namespace's subnet claims go with
// its record, and a new namespace may then take its /24.
func TestClaimsNamespaceDelete(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	if err := s.CreateTenant(ctx, &types.Tenant{Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateNamespace(ctx, &types.Namespace{Tenant: "alice", Name: "blog"}); err != nil {
		t.Fatal(err)
	}
	p := &types.Pod{ID: podID(1), Name: "p", Tenant: "alice", Namespace: "blog"}
	if err := s.CreatePodGuarded(ctx, p, allow); err != nil {
		t.Fatal(err)
	}
	if _, _, nets := index(t, s, "alice"); len(nets) != 2 {
		t.Fatalf("subnet claims: %v", nets)
	}
	if err := s.DeletePod(ctx, "alice", p.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteNamespace(ctx, "alice", "blog"); err != nil {
		t.Fatal(err)
	}
	if u, addrs, nets := index(t, s, "alice"); len(nets) != 0 || len(addrs) != 0 || u.Pods != 0 {
		t.Fatalf("after the namespace's removal: %v %v %v", u, addrs, nets)
	}
}

// TestClaimsMigration: a tenant whose pods were stored as main stored them
// (pods with recorded addresses, overlay addresses, a pod from before
// records with only a reported address, a namespace without a record) is
// indexed by its first create; creates through three clients at once on
// the not yet indexed tenant all land, on addresses nobody holds, and the
// index then matches the pods exactly.
func TestClaimsMigration(t *testing.T) {
	s := openStore(t)
	clients := []*Store{s, secondClient(t, s), secondClient(t, s)}
	ctx := context.Background()
	if err := s.CreateTenant(ctx, &types.Tenant{Name: "alice", Quota: types.Quota{Pods: 300}}); err != nil {
		t.Fatal(err)
	}
	sub := netip.MustParsePrefix("10.40.1.0/24")
	rec, _ := json.Marshal(types.NamespaceNet{Tenant: "alice", Name: "shop", Subnet6ID: 7, Subnet4: sub})
	if _, err := s.cli.Put(ctx, vpcKey("alice", "shop"), string(rec)); err != nil {
		t.Fatal(err)
	}
	var old []*types.Pod
	for i := range 200 {
		p := &types.Pod{ID: podID(i), Name: fmt.Sprintf("old%d", i), Tenant: "alice", Namespace: "shop",
			VPC: &types.PodVPC{Subnet6ID: 7, Subnet4: sub, IPv4: netip.AddrFrom4([4]byte{10, 40, 1, byte(2 + i)})}}
		if i%2 == 0 { // every other one below .200 left free
			p.VPC.IPv4 = netip.AddrFrom4([4]byte{10, 40, 1, byte(2 + i/2)})
		} else {
			p.VPC.IPv4 = netip.AddrFrom4([4]byte{10, 40, 1, byte(110 + i/2)})
		}
		if i < 10 {
			p.Desired = types.DesiredState{State: types.PhaseRunning, Run: 1}
			p.Spec.Networks = map[string]types.Endpoint{"back": {IPv4Address: fmt.Sprintf("10.40.1.%d", 240+i), Subnet: "10.40.1.0/24"}}
		}
		old = append(old, p)
	}
	// From before records: no VPC, in a namespace without a record; its
	// node reported 10.50.0.2.
	legacy := &types.Pod{ID: podID(500), Name: "legacy", Tenant: "alice", Namespace: "old"}
	old = append(old, legacy)
	if err := s.CreatePods(ctx, old); err != nil {
		t.Fatal(err)
	}
	if err := s.PutStatus(ctx, "alice", types.PodStatus{ID: legacy.ID, Phase: types.PhaseRunning, IPv4: "10.50.0.2"}); err != nil {
		t.Fatal(err)
	}
	if u, addrs, _ := index(t, s, "alice"); u != nil || len(addrs) != 0 {
		t.Fatalf("before: %v %v", u, addrs)
	}
	const n = 30
	var wg sync.WaitGroup
	errs := make([]error, n)
	created := make([]*types.Pod, n)
	guard := quotaGuard(300, 0)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := &types.Pod{ID: podID(1000 + i), Name: fmt.Sprintf("new%d", i), Tenant: "alice", Namespace: []string{"shop", "old"}[i%2]}
			created[i] = p
			errs[i] = clients[i%3].CreatePodGuarded(ctx, p, guard(p))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
	}
	tp := checkIndex(t, s, "alice")
	_, addrs, _ := index(t, s, "alice")
	if addrs[netip.MustParseAddr("10.50.0.2")] != legacy.ID {
		t.Errorf("the legacy pod's reported address is not claimed: %v", addrs)
	}
	if n := tp.Nets["old"]; n.Subnet4 != netip.MustParsePrefix("10.50.0.0/24") {
		t.Errorf("namespace old got %+v, its legacy pod holds 10.50.0.0/24", n)
	}
	// shop's free addresses: .102 to .109, then from .210.
	for _, p := range created {
		if b := p.VPC.IPv4.As4()[3]; p.Namespace == "shop" && (b < 102 || b > 109 && b < 210 || b > 216) {
			t.Errorf("%s got %s: not the lowest free of shop", p.Name, p.VPC.IPv4)
		}
		if p.Namespace == "old" && p.VPC.IPv4 == netip.MustParseAddr("10.50.0.2") {
			t.Errorf("%s got the legacy pod's address", p.Name)
		}
	}
}
