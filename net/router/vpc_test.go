package router

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/macro-cloud/macro/net/ipam"
	"github.com/macro-cloud/macro/types"
)

// TestRecordedAddresses: a pod with addresses recorded by the cluster
// (types.Pod.VPC) gets exactly those, on this node, after a restart of
// the router and on another node (a rescheduled pod); a pod from before
// records keeps its node-chosen address beside it, and the two reach each
// other.
func TestRecordedAddresses(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	rp := openRouter(t, Config{Cluster: "vpctest"})
	r := *rp
	old := attach(t, r, pod("c1", "alice", "shop", "old"))

	rec := pod("c2", "alice", "shop", "rec")
	rec.VPC = &types.PodVPC{Subnet6ID: 0x4242, Subnet4: netip.MustParsePrefix("10.201.7.0/24"), IPv4: netip.MustParseAddr("10.201.7.5")}
	sub6 := ipam.Subnet6(ipam.TenantPrefix("vpctest", "alice"), 0x4242)
	check := func(where string, a Attachment) {
		t.Helper()
		if a.IPv4 != rec.VPC.IPv4 || a.Subnet4 != rec.VPC.Subnet4 || a.Gateway4 != netip.MustParseAddr("10.201.7.1") ||
			a.Subnet6 != sub6 || a.IPv6 != ipam.PodIPv6(sub6, rec.ID, nil) {
			t.Fatalf("%s: %+v, recorded %+v in %s", where, a, *rec.VPC, sub6)
		}
	}
	got := attach(t, r, rec)
	check("first attach", got)
	if old.Subnet4 == got.Subnet4 {
		t.Fatalf("test wants the old pod in another /24 than the recorded one: %s", old.Subnet4)
	}
	for _, tt := range []struct{ from, to Attachment }{{got, old}, {old, got}} {
		if out, ok := in(t, tt.from.Netns, "busybox", "ping", "-c", "1", "-W", "2", tt.to.IPv4.String()); !ok {
			t.Errorf("ping %s from %s: %s", tt.to.IPv4, tt.from.IPv4, out)
		}
	}
	// Another recorded pod asks for an address a pod of this node holds:
	// it waits for that pod's detach, and fails when none comes.
	dup := pod("c3", "alice", "shop", "dup")
	dup.VPC = &types.PodVPC{Subnet6ID: 0x4242, Subnet4: old.Subnet4, IPv4: old.IPv4}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err := r.Attach(short, dup)
	cancel()
	if !errors.Is(err, ipam.ErrHeld) {
		t.Fatalf("attached %s twice: %v", old.IPv4, err)
	}

	// A restart of the router adopts both.
	cfg := r.cfg
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r2, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	*rp = r2
	check("after a restart", attach(t, r2, rec))
	if a := attach(t, r2, pod("c1", "alice", "shop", "old")); a.IPv4 != old.IPv4 || a.IPv6 != old.IPv6 {
		t.Fatalf("old pod after a restart: %+v, was %+v", a, old)
	}

	// A pod removed from the cluster and one given its address after it:
	// the new one waits for the old one's teardown here, then has it.
	next := pod("c4", "alice", "shop", "next")
	next.VPC = rec.VPC
	attached := make(chan error, 1)
	go func() {
		_, err := r2.Attach(ctx, next)
		attached <- err
	}()
	t.Cleanup(func() { r2.Detach(ctx, next.ID) })
	select {
	case err := <-attached:
		t.Fatalf("attached %s while another pod holds it: %v", rec.VPC.IPv4, err)
	case <-time.After(300 * time.Millisecond):
	}
	if err := r2.Detach(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	if err := <-attached; err != nil {
		t.Fatalf("after the holder's detach: %v", err)
	}

	// Another node gives the rescheduled pod the same addresses, whatever
	// it had addressed before.
	other := *openRouter(t, Config{Cluster: "vpctest"})
	attach(t, other, pod("d1", "alice", "shop", "neighbour"))
	check("on another node", attach(t, other, rec))
}
