package store

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/macro-cloud/macro/net/ipam"
	"github.com/macro-cloud/macro/types"
)

func allow(TenantPods) error { return nil }

// secondClient is another server's client of s's etcd.
func secondClient(t *testing.T, s *Store) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := Open(ctx, Config{Endpoints: []string{"http://" + s.etcd.Clients[0].Addr().String()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestPodVPCConcurrent: creates at once through three clients of one
// etcd (three API servers) give every pod a default IPv4 address unique
// in its tenant, in its namespace's recorded /24, and every namespace of
// a tenant a /24 and /64 of its own.
func TestPodVPCConcurrent(t *testing.T) {
	s := openStore(t)
	clients := []*Store{s, secondClient(t, s), secondClient(t, s)}
	ctx := context.Background()
	const n = 48
	namespaces := []string{"shop", "blog", "default", "ci"}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tenant := []string{"alice", "bob"}[i%2]
			p := &types.Pod{ID: podID(i), Name: fmt.Sprintf("p%d", i), Tenant: tenant, Namespace: namespaces[i/2%len(namespaces)]}
			errs[i] = clients[i%3].CreatePodGuarded(ctx, p, allow)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
	}
	for _, tenant := range []string{"alice", "bob"} {
		tp, err := s.ReadTenantPods(ctx, tenant)
		if err != nil {
			t.Fatal(err)
		}
		if len(tp.Pods) != n/2 || len(tp.Nets) != len(namespaces) {
			t.Fatalf("%s: %d pods, %d namespace records", tenant, len(tp.Pods), len(tp.Nets))
		}
		subnets4, subnets6 := map[netip.Prefix]string{}, map[uint16]string{}
		for name, rec := range tp.Nets {
			if other, dup := subnets4[rec.Subnet4]; dup {
				t.Errorf("%s: namespaces %s and %s share %s", tenant, name, other, rec.Subnet4)
			}
			if other, dup := subnets6[rec.Subnet6ID]; dup {
				t.Errorf("%s: namespaces %s and %s share /64 %x", tenant, name, other, rec.Subnet6ID)
			}
			subnets4[rec.Subnet4], subnets6[rec.Subnet6ID] = name, name
			if rec.Subnet4.Bits() != 24 || !ipam.V4Space.Contains(rec.Subnet4.Addr()) || rec.Tenant != tenant || rec.Name != name {
				t.Errorf("%s: record %+v", tenant, rec)
			}
		}
		addrs := map[netip.Addr]string{}
		for _, p := range tp.Pods {
			v := p.VPC
			if v == nil {
				t.Fatalf("%s: pod %s has no addresses", tenant, p.Name)
			}
			rec := tp.Nets[p.Namespace]
			if v.Subnet4 != rec.Subnet4 || v.Subnet6ID != rec.Subnet6ID || !v.Subnet4.Contains(v.IPv4) {
				t.Errorf("%s: pod %s has %+v, its namespace %+v", tenant, p.Name, *v, rec)
			}
			if other, dup := addrs[v.IPv4]; dup {
				t.Errorf("%s: pods %s and %s share %s", tenant, p.Name, other, v.IPv4)
			}
			addrs[v.IPv4] = p.Name
		}
	}
}

// TestPodVPCFull: a namespace holds 253 pods (.2 to .254); the next is
// refused with ipam.ErrFull and nothing written; a removed pod's address
// is free again, and a namespace's other pods keep theirs.
func TestPodVPCFull(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	var sub netip.Prefix
	for i := range 253 {
		p := &types.Pod{ID: podID(i), Name: fmt.Sprintf("p%d", i), Tenant: "alice", Namespace: "big"}
		if err := s.CreatePodGuarded(ctx, p, allow); err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
		if i == 0 {
			sub = p.VPC.Subnet4
		}
		if want := netip.AddrFrom4([4]byte{sub.Addr().As4()[0], sub.Addr().As4()[1], sub.Addr().As4()[2], byte(i + 2)}); p.VPC.IPv4 != want {
			t.Fatalf("pod %d: %s, want %s", i, p.VPC.IPv4, want)
		}
	}
	err := s.CreatePodGuarded(ctx, &types.Pod{ID: podID(253), Name: "one-too-many", Tenant: "alice", Namespace: "big"}, allow)
	if !errors.Is(err, ipam.ErrFull) {
		t.Fatalf("254th pod: %v", err)
	}
	if _, err := s.Pod(ctx, "alice", podID(253)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("refused pod stored: %v", err)
	}
	// Another namespace, and another tenant's same namespace, have room.
	for _, p := range []*types.Pod{
		{ID: podID(300), Name: "q", Tenant: "alice", Namespace: "small"},
		{ID: podID(301), Name: "q", Tenant: "bob", Namespace: "big"},
	} {
		if err := s.CreatePodGuarded(ctx, p, allow); err != nil {
			t.Fatalf("%s/%s: %v", p.Tenant, p.Namespace, err)
		}
	}
	freed, err := s.Pod(ctx, "alice", podID(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeletePod(ctx, "alice", freed.ID); err != nil {
		t.Fatal(err)
	}
	p := &types.Pod{ID: podID(400), Name: "again", Tenant: "alice", Namespace: "big"}
	if err := s.CreatePodGuarded(ctx, p, allow); err != nil {
		t.Fatal(err)
	}
	if p.VPC.IPv4 != freed.VPC.IPv4 || p.VPC.Subnet4 != sub {
		t.Fatalf("after a removal: %+v, want %s in %s", *p.VPC, freed.VPC.IPv4, sub)
	}
	// An update (docker start, rename) keeps the pod's addresses.
	after, err := s.UpdatePod(ctx, "alice", podID(7), func(p *types.Pod) error { p.Name = "renamed"; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if after.VPC == nil || after.VPC.IPv4.As4()[3] != 9 {
		t.Fatalf("after an update: %+v", after.VPC)
	}
}

// TestPodVPCRecords: a pod without a network gets no addresses; the
// subnets /vpc shows for an empty namespace are those its first pod gets;
// a deleted namespace's record goes; pods from before records (a status
// with node-chosen addresses, no VPC) lend their namespace its subnets
// and keep their address.
func TestPodVPCRecords(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	if err := s.CreateTenant(ctx, &types.Tenant{Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	none := &types.Pod{ID: podID(0), Name: "none", Tenant: "alice", Namespace: "shop", Spec: types.PodSpec{Network: "none"}}
	if err := s.CreatePodGuarded(ctx, none, allow); err != nil {
		t.Fatal(err)
	}
	if none.VPC != nil {
		t.Fatalf("--network none: %+v", none.VPC)
	}
	preview, err := s.NamespaceNets(ctx, "alice", []string{"shop"})
	if err != nil {
		t.Fatal(err)
	}
	web := &types.Pod{ID: podID(1), Name: "web", Tenant: "alice", Namespace: "shop"}
	if err := s.CreatePodGuarded(ctx, web, allow); err != nil {
		t.Fatal(err)
	}
	if web.VPC.Subnet4 != preview["shop"].Subnet4 || web.VPC.Subnet6ID != preview["shop"].Subnet6ID {
		t.Fatalf("first pod %+v, /vpc said %+v", *web.VPC, preview["shop"])
	}
	if err := s.CreateNamespace(ctx, &types.Namespace{Tenant: "alice", Name: "blog"}); err != nil {
		t.Fatal(err)
	}
	blog := &types.Pod{ID: podID(2), Name: "blog", Tenant: "alice", Namespace: "blog"}
	if err := s.CreatePodGuarded(ctx, blog, allow); err != nil {
		t.Fatal(err)
	}
	if err := s.DeletePod(ctx, "alice", blog.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteNamespace(ctx, "alice", "blog"); err != nil {
		t.Fatal(err)
	}
	tp, err := s.ReadTenantPods(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tp.Nets["blog"]; ok || len(tp.Nets) != 1 {
		t.Fatalf("records after the namespace's removal: %+v", tp.Nets)
	}

	// A pod from before, of a tenant not indexed yet (stored as main
	// stored pods): its node chose 10.77.3.2 and an IPv6 in subnet 0xbeef.
	old := &types.Pod{ID: podID(3), Name: "old", Tenant: "carol", Namespace: "legacy"}
	if err := s.CreatePod(ctx, old); err != nil {
		t.Fatal(err)
	}
	if err := s.PutStatus(ctx, "carol", types.PodStatus{ID: old.ID, Phase: types.PhaseRunning, IPv4: "10.77.3.2", IPv6: "fd12:3456:789a:beef:1:2:3:4"}); err != nil {
		t.Fatal(err)
	}
	next := &types.Pod{ID: podID(4), Name: "next", Tenant: "carol", Namespace: "legacy"}
	if err := s.CreatePodGuarded(ctx, next, allow); err != nil {
		t.Fatal(err)
	}
	if next.VPC.Subnet4 != netip.MustParsePrefix("10.77.3.0/24") || next.VPC.Subnet6ID != 0xbeef || next.VPC.IPv4 != netip.MustParseAddr("10.77.3.3") {
		t.Fatalf("beside a pod from before: %+v", *next.VPC)
	}
}

// BenchmarkCreatePodVPC: one create through CreatePodGuarded in a tenant
// that has that many pods already (in namespaces of 200), which reads the
// tenant's usage record, its namespace's record and the claims of its
// /24; beside it, the same create of a pod without a network. The
// tenant's pods are stored as main stored them, then indexed once before
// the timer starts (index-ms: what that one full read and write cost).
func BenchmarkCreatePodVPC(b *testing.B) {
	for _, have := range []int{0, 1000, 5000} {
		for _, vpc := range []bool{true, false} {
			b.Run(fmt.Sprintf("pods=%d/vpc=%v", have, vpc), func(b *testing.B) {
				ctx := context.Background()
				s, err := Open(ctx, Config{DataDir: b.TempDir()})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				var batch []*types.Pod
				for i := range have {
					sub := ipam.Subnet4(uint16(i / 200))
					batch = append(batch, &types.Pod{ID: podID(i), Name: fmt.Sprintf("p%d", i), Tenant: "alice", Namespace: fmt.Sprintf("ns%d", i/200),
						VPC: &types.PodVPC{Subnet4: sub, IPv4: netip.AddrFrom4([4]byte{10, sub.Addr().As4()[1], sub.Addr().As4()[2], byte(2 + i%200)})}})
				}
				if err := s.CreatePods(ctx, batch); err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				if err := s.indexTenant(ctx, "alice"); err != nil {
					b.Fatal(err)
				}
				indexed := time.Since(start)
				b.ResetTimer()
				for i := range b.N {
					p := &types.Pod{ID: podID(have + i), Name: fmt.Sprintf("new%d", i), Tenant: "alice", Namespace: fmt.Sprintf("new%d", i/200)}
					if !vpc {
						p.Spec.Network = "none"
					}
					if err := s.CreatePodGuarded(ctx, p, allow); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(indexed.Microseconds())/1000, "index-ms")
			})
		}
	}
}
