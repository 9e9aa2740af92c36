package docker

import (
	"encoding/json"
	"testing"

	"github.com/macro-cloud/macro/types"
)

func TestNetworkSettings(t *testing.T) {
	hc := func(mode string) []byte { b, _ := json.Marshal(map[string]string{"NetworkMode": mode}); return b }
	st := types.PodStatus{IPv6: "fd12:3456:789a:1::abcd", IPv4: "10.7.9.5"}
	tests := []struct {
		name              string
		mode              string
		aliases           []string
		network, ip, ipv6 string
		gw, gw6           string
	}{
		{"default", "default", nil, "bridge", "10.7.9.5", "fd12:3456:789a:1::abcd", "10.7.9.1", "fe80::1"},
		{"aliases", "default", []string{"web"}, "bridge", "10.7.9.5", "fd12:3456:789a:1::abcd", "10.7.9.1", "fe80::1"},
		{"none", "none", nil, "none", "", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := types.Pod{Name: "c", Spec: types.PodSpec{DockerHostConfig: hc(tt.mode), Aliases: tt.aliases}}
			ns := networkSettings(p, st)
			nets := ns["Networks"].(map[string]any)
			ep, ok := nets[tt.network].(map[string]any)
			if !ok || len(nets) != 1 {
				t.Fatalf("Networks %v, want only %s", nets, tt.network)
			}
			for _, m := range []map[string]any{ns, ep} {
				if m["IPAddress"] != tt.ip || m["GlobalIPv6Address"] != tt.ipv6 || m["Gateway"] != tt.gw || m["IPv6Gateway"] != tt.gw6 {
					t.Fatalf("%v", m)
				}
			}
			if tt.aliases != nil && len(ep["DNSNames"].([]string)) != 2 {
				t.Fatalf("DNSNames %v", ep["DNSNames"])
			}
		})
	}
}
