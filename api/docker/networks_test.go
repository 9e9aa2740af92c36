package docker

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/macro-cloud/macro/types"
)

// TestAssignAddress: fixed addresses are checked with dockerd's words,
// free ones are the lowest of the subnet (or its IP range) past the
// gateway, network and broadcast addresses.
func TestAssignAddress(t *testing.T) {
	back := types.Network{Name: "back", IPAM: []types.IPAMRange{{Subnet: "10.10.0.0/29"}}}
	ranged := types.Network{Name: "r", IPAM: []types.IPAMRange{{Subnet: "10.20.0.0/24", IPRange: "10.20.0.128/25", Gateway: "10.20.0.254"}}}
	plain := types.Network{Name: "plain"}
	taken := func(addrs ...string) addrMap {
		m := addrMap{}
		for _, a := range addrs {
			m[netip.MustParseAddr(a)] = "other"
		}
		return m
	}
	tests := []struct {
		name    string
		n       types.Network
		fixed   string
		taken   addrMap
		want    string
		wantErr string
	}{
		{"first free past the gateway", back, "", taken(), "10.10.0.2", ""},
		{"next free", back, "", taken("10.10.0.2", "10.10.0.3"), "10.10.0.4", ""},
		{"full", back, "", taken("10.10.0.2", "10.10.0.3", "10.10.0.4", "10.10.0.5", "10.10.0.6"), "", "no available IPv4 addresses"},
		{"fixed", back, "10.10.0.5", taken(), "10.10.0.5", ""},
		{"fixed taken", back, "10.10.0.5", taken("10.10.0.5"), "", "Address already in use"},
		{"fixed gateway", back, "10.10.0.1", taken(), "", "Address already in use"},
		{"fixed broadcast", back, "10.10.0.7", taken(), "", "Address already in use"},
		{"fixed network address", back, "10.10.0.0", taken(), "", "Address already in use"},
		{"fixed outside", back, "10.10.1.5", taken(), "", "does not belong to any of this network's subnets"},
		{"ip range", ranged, "", taken(), "10.20.0.128", ""},
		{"fixed outside the range, inside the subnet", ranged, "10.20.0.9", taken(), "10.20.0.9", ""},
		{"given gateway", ranged, "10.20.0.254", taken(), "", "Address already in use"},
		{"no subnet: no address", plain, "", taken(), "", ""},
		{"no subnet: fixed refused", plain, "10.1.0.9", taken(), "", "only when connecting to networks with user configured subnets"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ep := types.Endpoint{IPv4Address: tt.fixed}
			err := assignAddress(tt.n, &ep, tt.taken)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ep.IPv4Address != tt.want || ep.Fixed != (tt.fixed != "") {
				t.Fatalf("got %+v, want %s", ep, tt.want)
			}
			if tt.want != "" {
				if _, ok := tt.taken[netip.MustParseAddr(tt.want)]; !ok {
					t.Errorf("%s not marked taken", tt.want)
				}
			}
		})
	}
}

// TestOverlayAddressesHoldDefaults: every pod's recorded default address
// is taken for overlays, the pod's own too (a connect must not give a pod
// its default address again); a pod's own overlay addresses are not.
func TestOverlayAddressesHoldDefaults(t *testing.T) {
	pods := []types.Pod{
		{ID: "web", VPC: &types.PodVPC{IPv4: netip.MustParseAddr("10.5.5.2"), Subnet4: netip.MustParsePrefix("10.5.5.0/24")},
			Spec: types.PodSpec{Networks: map[string]types.Endpoint{"back": {IPv4Address: "10.9.0.2", Subnet: "10.9.0.0/24"}}}},
		{ID: "db", VPC: &types.PodVPC{IPv4: netip.MustParseAddr("10.5.5.3"), Subnet4: netip.MustParsePrefix("10.5.5.0/24")},
			Spec: types.PodSpec{Networks: map[string]types.Endpoint{"back": {IPv4Address: "10.9.0.3", Subnet: "10.9.0.0/24"}}}},
		{ID: "old"}, // from before records
	}
	got := overlayAddresses(pods, "web")
	want := map[netip.Addr]string{
		netip.MustParseAddr("10.5.5.2"): "web",
		netip.MustParseAddr("10.5.5.3"): "db",
		netip.MustParseAddr("10.9.0.3"): "db",
	}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for a, id := range want {
		if got[a] != id {
			t.Errorf("%s: %q, want %q", a, got[a], id)
		}
	}
	// A network whose subnet is a namespace's /24 gives the next address.
	n := types.Network{Name: "same", IPAM: []types.IPAMRange{{Subnet: "10.5.5.0/24"}}}
	var ep types.Endpoint
	if err := assignAddress(n, &ep, got); err != nil || ep.IPv4Address != "10.5.5.4" {
		t.Fatalf("assign: %v %+v", err, ep)
	}
}
