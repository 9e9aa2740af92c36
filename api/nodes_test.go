package api

import (
	"context"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/macro-cloud/macro/types"
)

// TestNodes lists nodes on both sides and forgets a down one: the admin
// sees every tenant's pods and what they request, a tenant its own pods
// only; a ready node, or a down one whose pods have not moved yet, stays.
func TestNodes(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for _, n := range []string{"alice", "bob"} {
		e.call(http.DefaultClient, "POST", e.adminURL("/tenants"), "", map[string]string{"name": n}, nil)
	}
	alice, bob := e.mustToken("alice").Token, e.mustToken("bob").Token

	seen := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	up := types.Node{Name: "n1", Arch: "amd64", OS: "linux", CPUs: 4, MemoryBytes: 8 << 30, Labels: map[string]string{"zone": "eu-1", "ssd": "yes"},
		MeshKey: "MESHKEYb64=", MeshEndpoint: "10.0.0.1:51820",
		Runtimes: []string{"sandbox", "gvisor"}, Kernel: "6.1.0", Address: "10.0.0.1", Seen: seen}
	if _, err := e.st.RegisterNode(ctx, up, 60); err != nil {
		t.Fatal(err)
	}
	// n2's lease has expired: a record without liveness.
	if err := e.st.PutNode(ctx, types.Node{Name: "n2", Arch: "arm64", CPUs: 2, MemoryBytes: 2 << 30, Labels: map[string]string{"zone": "eu-2"}}); err != nil {
		t.Fatal(err)
	}
	pod := func(id byte, tenant, node string, mem, cpu int64) {
		t.Helper()
		p := &types.Pod{ID: strings.Repeat(string(id), 64), Name: "p" + string(id), Tenant: tenant, Node: node,
			Spec: types.PodSpec{Resources: types.Resources{MemoryBytes: mem, NanoCPUs: cpu}}}
		if err := e.st.CreatePod(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	pod('a', "alice", "n1", 256<<20, 5e8)
	pod('b', "alice", "n1", 0, 0)
	pod('c', "bob", "n1", 1<<30, 2e9)
	pod('d', "bob", "", 1<<30, 0) // pending: on no node
	pod('e', "bob", "n2", 512<<20, 0)

	var admin []AdminNode
	if code, body := e.call(http.DefaultClient, "GET", e.adminURL("/nodes"), "", nil, &admin); code != 200 || len(admin) != 2 {
		t.Fatalf("admin GET /nodes: %d %s", code, body)
	}
	want1 := AdminNode{Node: Node{Name: "n1", Zone: "eu-1", Labels: up.Labels, Arch: "amd64", CPUs: 4, MemoryBytes: 8 << 30, Ready: true, Pods: 3},
		RequestedMemoryBytes: 256<<20 + 1<<30, RequestedNanoCPUs: 25e8, Runtimes: []string{"sandbox", "gvisor"}, OS: "linux", Kernel: "6.1.0", Address: "10.0.0.1",
		MeshKey: "MESHKEYb64=", MeshEndpoint: "10.0.0.1:51820", Registered: seen}
	if got := admin[0]; !reflect.DeepEqual(got, want1) {
		t.Errorf("admin n1 = %+v\nwant %+v", got, want1)
	}
	if got := admin[1]; got.Name != "n2" || got.Ready || got.Zone != "eu-2" || got.Pods != 1 || got.RequestedMemoryBytes != 512<<20 || got.Runtimes == nil {
		t.Errorf("admin n2 = %+v", got)
	}

	// Tenants: the same nodes, their own pods, nothing of what the admin
	// side adds.
	for _, c := range []struct {
		token string
		pods  [2]int
	}{{alice, [2]int{2, 0}}, {bob, [2]int{1, 1}}} {
		var list []Node
		code, body := e.call(e.client, "GET", e.portURL("/nodes"), c.token, nil, &list)
		if code != 200 || len(list) != 2 {
			t.Fatalf("tenant GET /nodes: %d %s", code, body)
		}
		if list[0].Name != "n1" || list[0].Zone != "eu-1" || list[0].Labels["ssd"] != "yes" || list[0].CPUs != 4 || !list[0].Ready || list[1].Ready || list[1].Arch != "arm64" {
			t.Errorf("tenant nodes: %+v", list)
		}
		if got := [2]int{list[0].Pods, list[1].Pods}; got != c.pods {
			t.Errorf("tenant's pod counts %v, want %v", got, c.pods)
		}
		for _, field := range []string{"requested", "runtimes", "kernel", "address", "registered", "10.0.0.1", "mesh"} {
			if strings.Contains(strings.ToLower(body), strings.ToLower(field)) {
				t.Errorf("the tenant side shows %q: %s", field, body)
			}
		}
	}
	if code, _ := e.call(e.client, "GET", e.portURL("/nodes"), "", nil, nil); code != 401 {
		t.Errorf("GET /nodes without credentials: %d", code)
	}
	// The admin's DELETE is not on the API port.
	if code, _ := e.call(e.client, "DELETE", e.portURL("/nodes/n2"), alice, nil, nil); code != 404 {
		t.Errorf("DELETE /nodes/n2 on the API port: %d", code)
	}

	del := func(name string, want int, msg string) {
		t.Helper()
		code, body := e.call(http.DefaultClient, "DELETE", e.adminURL("/nodes/"+name), "", nil, nil)
		if code != want || !strings.Contains(body, msg) {
			t.Errorf("DELETE /nodes/%s: %d %s, want %d %q", name, code, body, want, msg)
		}
	}
	del("n1", 409, `node \"n1\" is ready: only a node that is down can be removed`)
	del("nope", 404, `no node \"nope\"`)
	// n2 still holds a pod that is not pinned: the controller moves it first.
	del("n2", 409, `1 of its pods are still placed on it`)
	if _, err := e.st.UpdatePod(ctx, "bob", strings.Repeat("e", 64), func(p *types.Pod) error {
		p.Spec.PinnedNode, p.Spec.PinnedBy = "n2", "volume data"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var rm RemovedNode
	if code, body := e.call(http.DefaultClient, "DELETE", e.adminURL("/nodes/n2"), "", nil, &rm); code != 200 || rm != (RemovedNode{Name: "n2", Pinned: 1}) {
		t.Fatalf("DELETE /nodes/n2 once its pods moved: %d %s", code, body)
	}
	del("n2", 404, `no node \"n2\"`)
	if code, body := e.call(http.DefaultClient, "GET", e.adminURL("/nodes"), "", nil, &admin); code != 200 || len(admin) != 1 || admin[0].Name != "n1" {
		t.Fatalf("admin GET /nodes after removing n2: %d %s", code, body)
	}
}
