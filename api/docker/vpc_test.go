package docker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/macro-cloud/macro/store"
	"github.com/macro-cloud/macro/types"
)

// TestCreateFullNamespace: a create in a namespace whose /24 is full is
// refused with 503 and a message that says what to do; the pod is not
// stored, and the namespace has room again after a removal.
func TestCreateFullNamespace(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s := New(Config{Store: st})
	pod := func(i int) *types.Pod {
		return &types.Pod{ID: fmt.Sprintf("%064x", i+1), Name: fmt.Sprintf("p%d", i), Tenant: types.DefaultTenant, Namespace: "big"}
	}
	for i := range 253 {
		if err := s.createPod(ctx, pod(i), nil); err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
	}
	err = s.createPod(ctx, pod(253), nil)
	var ae *apiError
	if !errors.As(err, &ae) || ae.status != http.StatusServiceUnavailable || !strings.Contains(ae.msg, "no available IPv4 addresses in the default network of namespace big") {
		t.Fatalf("254th create: %#v", err)
	}
	if _, err := st.Pod(ctx, types.DefaultTenant, pod(253).ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("refused pod stored: %v", err)
	}
	if err := st.DeletePod(ctx, types.DefaultTenant, pod(3).ID); err != nil {
		t.Fatal(err)
	}
	p := pod(253)
	if err := s.createPod(ctx, p, nil); err != nil || p.VPC == nil || p.VPC.IPv4.As4()[3] != 5 {
		t.Fatalf("after a removal: %v %+v", err, p.VPC)
	}
}

// TestNetworkInspectShowsRecordedSubnet: a network without a subnet of its
// own (a compose project's default network) shows its namespace's
// recorded /24 and its pods' default addresses; one with a subnet shows
// only its own.
func TestNetworkInspectShowsRecordedSubnet(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s := New(Config{Store: st})
	plain := types.Network{ID: strings.Repeat("1", 64), Name: "shop_default", Tenant: types.DefaultTenant, Namespace: "shop", Driver: "bridge"}
	own := types.Network{ID: strings.Repeat("2", 64), Name: "shop_back", Tenant: types.DefaultTenant, Namespace: "shop", Driver: "ipip",
		IPAM: []types.IPAMRange{{Subnet: "10.10.0.0/24"}}}
	web := &types.Pod{ID: strings.Repeat("a", 64), Name: "web", Tenant: types.DefaultTenant, Namespace: "shop",
		Spec: types.PodSpec{Networks: map[string]types.Endpoint{plain.Name: {NetworkID: plain.ID}, own.Name: {NetworkID: own.ID}}}}
	if err := s.createPod(ctx, web, map[string]types.Network{plain.Name: plain, own.Name: own}); err != nil {
		t.Fatal(err)
	}
	pods, err := st.Pods(ctx, types.DefaultTenant)
	if err != nil {
		t.Fatal(err)
	}
	nets, err := st.RecordedNamespaceNets(ctx, types.DefaultTenant)
	if err != nil {
		t.Fatal(err)
	}
	j := s.networkJSON(plain, pods, nets)
	if len(j.IPAM.Config) != 1 || j.IPAM.Config[0].Subnet != web.VPC.Subnet4 || j.IPAM.Config[0].Gateway != web.VPC.Subnet4.Addr().Next() {
		t.Errorf("shop_default IPAM: %+v, the pod has %+v", j.IPAM.Config, *web.VPC)
	}
	if got := j.Containers[web.ID].IPv4Address.String(); got != web.VPC.IPv4.String()+"/24" {
		t.Errorf("shop_default: web has %s, recorded %s", got, web.VPC.IPv4)
	}
	j = s.networkJSON(own, pods, nets)
	if len(j.IPAM.Config) != 1 || j.IPAM.Config[0].Subnet.String() != "10.10.0.0/24" || j.Containers[web.ID].IPv4Address.String() != "10.10.0.2/24" {
		t.Errorf("shop_back: %+v %+v", j.IPAM.Config, j.Containers)
	}
}
