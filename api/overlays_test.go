package api

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/macro-cloud/macro/net/ipam"
	"github.com/macro-cloud/macro/store"
	"github.com/macro-cloud/macro/types"
)

func TestVPCAndOverlays(t *testing.T) {
	e := newEnv(t)
	for _, name := range []string{"alice", "bob"} {
		if code, body := e.call(http.DefaultClient, "POST", e.adminURL("/tenants"), "", map[string]string{"name": name}, nil); code != 201 {
			t.Fatalf("create %s: %d %s", name, code, body)
		}
	}
	alice, bob := e.mustToken("alice").Token, e.mustToken("bob").Token
	if code, _ := e.call(e.client, "GET", e.portURL("/vpc"), alice, nil, nil); code != 404 {
		t.Fatalf("/vpc without a VPC: %d", code)
	}
	e.s.SetVPC(true)
	var v VPCInfo
	if code, body := e.call(e.client, "GET", e.portURL("/vpc"), alice, nil, &v); code != 200 || v.Prefix != ipam.TenantPrefix("testcloud", "alice").String() || len(v.Namespaces) != 1 || v.Namespaces[0].Name != "default" {
		t.Fatalf("/vpc: %d %s", code, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n := types.Network{ID: "0123456789abcdef", Name: "shop_back", Tenant: "alice", Namespace: "shop", Driver: "ipip",
		IPAM: []types.IPAMRange{{Subnet: "10.10.0.0/24"}}, Created: time.Now()}
	if err := e.st.CreateNetwork(ctx, &n); err != nil {
		t.Fatal(err)
	}
	// shop has a network but no pods yet: no default overlay of its own
	// until it has (or is created).
	var list []Overlay
	if code, body := e.call(e.client, "GET", e.portURL("/overlays"), alice, nil, &list); code != 200 || len(list) != 2 ||
		list[0].Name != "default/default" || list[1].Name != "shop/back" || list[1].Subnet != "10.10.0.0/24" {
		t.Fatalf("/overlays: %d %s", code, body)
	}
	for _, ref := range []string{"shop/back", "shop_back", n.ID} {
		var o Overlay
		if code, body := e.call(e.client, "GET", e.portURL("/overlays/"+ref), alice, nil, &o); code != 200 || o.Network != "shop_back" {
			t.Errorf("/overlays/%s: %d %s", ref, code, body)
		}
		if code, _ := e.call(e.client, "GET", e.portURL("/overlays/"+ref), bob, nil, nil); code != 404 {
			t.Errorf("bob's /overlays/%s: %d", ref, code)
		}
	}
	if code, _ := e.call(e.client, "GET", e.portURL("/overlays/shop/nope"), alice, nil, nil); code != 404 {
		t.Errorf("unknown overlay: %d", code)
	}

	// The subnets shown are the cluster's record, which a pod's create
	// makes; the default overlay's members show their recorded address
	// before they run.
	before := map[string]NamespaceNet{}
	e.call(e.client, "GET", e.portURL("/vpc"), alice, nil, &v)
	for _, n := range v.Namespaces {
		before[n.Name] = n
	}
	web := &types.Pod{ID: strings.Repeat("ab", 32), Name: "web", Tenant: "alice", Namespace: "blog", Created: time.Now()}
	if err := e.st.CreatePodGuarded(ctx, web, func(store.TenantPods) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if code, body := e.call(e.client, "GET", e.portURL("/vpc"), alice, nil, &v); code != 200 || len(v.Namespaces) != 2 {
		t.Fatalf("/vpc: %d %s", code, body)
	}
	blog := v.Namespaces[0]
	want6 := ipam.Subnet6(ipam.TenantPrefix("testcloud", "alice"), web.VPC.Subnet6ID).String()
	if blog.Name != "blog" || blog.Subnet4 != web.VPC.Subnet4.String() || blog.Subnet6 != want6 || blog.Pods != 1 {
		t.Fatalf("/vpc shows %+v, the pod has %+v (/64 %s)", blog, *web.VPC, want6)
	}
	if d := v.Namespaces[1]; d.Name != "default" || d != before["default"] {
		t.Errorf("default namespace changed: %+v, was %+v", d, before["default"])
	}
	var o Overlay
	if code, body := e.call(e.client, "GET", e.portURL("/overlays/blog/default"), alice, nil, &o); code != 200 ||
		o.Subnet != blog.Subnet4 || len(o.Members) != 1 || o.Members[0].Address != web.VPC.IPv4.String() {
		t.Fatalf("/overlays/blog/default: %d %s", code, body)
	}
}

func TestSetEgress(t *testing.T) {
	e := newEnv(t)
	if code, body := e.call(http.DefaultClient, "POST", e.adminURL("/tenants"), "", map[string]string{"name": "alice"}, nil); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	tests := []struct {
		tenant string
		body   any
		code   int
	}{
		{"alice", map[string]any{}, 400},
		{"nobody", map[string]bool{"egress": false}, 404},
		{"alice", map[string]bool{"egress": false}, 200},
	}
	for _, tt := range tests {
		if code, body := e.call(http.DefaultClient, "PUT", e.adminURL("/tenants/"+tt.tenant+"/egress"), "", tt.body, nil); code != tt.code {
			t.Errorf("%s %v: %d %s, want %d", tt.tenant, tt.body, code, body, tt.code)
		}
	}
	var tn types.Tenant
	if code, _ := e.call(http.DefaultClient, "GET", e.adminURL("/tenants/alice"), "", nil, &tn); code != 200 || !tn.NoEgress {
		t.Fatalf("tenant after egress off: %+v", tn)
	}
}
