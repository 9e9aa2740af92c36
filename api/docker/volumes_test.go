package docker

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/macro-cloud/macro/auth"
	"github.com/macro-cloud/macro/store"
	"github.com/macro-cloud/macro/types"
)

// fakeNode records the volumes a Server asks it to remove.
type fakeNode struct {
	Node
	mu      sync.Mutex
	removed []string
}

func (n *fakeNode) RemoveVolume(ctx context.Context, tenant, name string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.removed = append(n.removed, tenant+"/"+name)
	return nil
}

func (n *fakeNode) VolumeSize(ctx context.Context, tenant, name string) (int64, error) {
	return int64(len(name)), nil
}

type fakeNodes struct{ n *fakeNode }

func (f fakeNodes) Node(name string) (Node, error) { return f.n, nil }

// apiEnv is a Server over a real embedded store, called as a tenant.
type apiEnv struct {
	t    *testing.T
	st   *store.Store
	node *fakeNode
	h    http.Handler
}

func newAPIEnv(t *testing.T) *apiEnv {
	t.Helper()
	st, err := store.Open(context.Background(), store.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.PutNode(context.Background(), types.Node{Name: "n1", Ready: true}); err != nil {
		t.Fatal(err)
	}
	node := &fakeNode{}
	s := New(Config{Store: st, Nodes: fakeNodes{node}, Info: Info{DataDir: "/var/lib/macro"}, TenantFromContext: true})
	return &apiEnv{t: t, st: st, node: node, h: s.Handler()}
}

// call makes a request as tenant and decodes a JSON answer into out.
func (e *apiEnv) call(tenant, method, path, body string, out any) (int, string) {
	e.t.Helper()
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	r = r.WithContext(auth.WithIdentity(r.Context(), auth.Identity{Tenant: tenant, Method: auth.MethodCertificate}))
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	data, _ := io.ReadAll(w.Result().Body)
	if out != nil && w.Code < 300 {
		if err := json.Unmarshal(data, out); err != nil {
			e.t.Fatalf("%s %s: %v: %s", method, path, err, data)
		}
	}
	var msg struct{ Message string }
	if w.Code >= 400 && json.Unmarshal(data, &msg) == nil {
		return w.Code, msg.Message
	}
	return w.Code, string(data)
}

func (e *apiEnv) putPod(tenant, id, name string, spec types.PodSpec) {
	e.t.Helper()
	p := &types.Pod{ID: id, Name: name, Tenant: tenant, Namespace: "default", Created: time.Now(), Spec: spec}
	if err := e.st.CreatePod(context.Background(), p); err != nil {
		e.t.Fatal(err)
	}
}

func TestVolumeHandlers(t *testing.T) {
	e := newAPIEnv(t)
	var v volumeJSON
	if code, body := e.call("alice", "POST", "/volumes/create", `{"Name":"data","Labels":{"k":"v"}}`, &v); code != 201 ||
		v.Name != "data" || v.Driver != "local" || v.Scope != "local" || v.Labels["k"] != "v" || v.Mountpoint != "/var/lib/macro/volumes/alice/data/_data" {
		t.Fatalf("create: %d %s", code, body)
	}
	// Docker's create is idempotent.
	if code, body := e.call("alice", "POST", "/volumes/create", `{"Name":"data"}`, &v); code != 201 || v.Labels["k"] != "v" {
		t.Errorf("create again: %d %s", code, body)
	}
	for _, tc := range []struct{ body, msg string }{
		{`{"Name":"a/b"}`, "includes invalid characters"},
		{`{"Name":"xy","Driver":"lv2"}`, "an lv2 volume needs a size: -o size=10G"},
		{`{"Name":"xy","Driver":"nfs","DriverOpts":{"snapshot":"sometimes"}}`, "volume option snapshot: want hourly"},
		{`{"Name":"x","Driver":"nosuch"}`, "plugin \"nosuch\" not found"},
		{`{"Name":"x","DriverOpts":{"type":"nfs","o":"addr=1.2.3.4"}}`, "local volume options are not supported (o, type)"},
		{`not json`, "invalid JSON"},
	} {
		if code, body := e.call("alice", "POST", "/volumes/create", tc.body, nil); code/100 != 4 || !strings.Contains(body, tc.msg) {
			t.Errorf("create %s: %d %s, want 4xx %q", tc.body, code, body, tc.msg)
		}
	}
	var anon volumeJSON
	e.call("alice", "POST", "/volumes/create", `{}`, &anon)
	if len(anon.Name) != 64 {
		t.Errorf("anonymous volume: %+v", anon)
	}

	// Another tenant: nothing, and 404.
	var list struct{ Volumes []volumeJSON }
	if code, _ := e.call("bob", "GET", "/volumes", "", &list); code != 200 || len(list.Volumes) != 0 {
		t.Errorf("bob's volumes: %d %+v", code, list)
	}
	for _, m := range []string{"GET", "DELETE"} {
		if code, body := e.call("bob", m, "/volumes/data", "", nil); code != 404 || !strings.Contains(body, "no such volume") {
			t.Errorf("bob %s alice's volume: %d %s", m, code, body)
		}
	}
	if code, _ := e.call("alice", "GET", "/volumes?filters="+`{"name":["dat"]}`, "", &list); code != 200 || len(list.Volumes) != 1 || list.Volumes[0].Name != "data" {
		t.Errorf("volumes filtered by name: %+v", list)
	}

	// In use: 409, kept by prune.
	e.putPod("alice", strings.Repeat("a", 64), "user", types.PodSpec{Mounts: []types.Mount{{Type: "volume", Source: "data", Target: "/d"}}})
	if code, body := e.call("alice", "DELETE", "/volumes/data", "", nil); code != 409 || !strings.Contains(body, "volume is in use - ["+strings.Repeat("a", 64)+"]") {
		t.Errorf("delete a volume in use: %d %s", code, body)
	}
	if code, _ := e.call("alice", "GET", "/volumes?filters="+`{"dangling":["true"]}`, "", &list); code != 200 || len(list.Volumes) != 1 || list.Volumes[0].Name != anon.Name {
		t.Errorf("dangling volumes: %+v", list)
	}
	var report struct{ VolumesDeleted []string }
	if code, body := e.call("alice", "POST", "/volumes/prune", "", &report); code != 200 || len(report.VolumesDeleted) != 1 || report.VolumesDeleted[0] != anon.Name {
		t.Errorf("prune (anonymous only): %d %s", code, body)
	}
	if code, body := e.call("alice", "POST", `/volumes/prune?filters={"all":["true"]}`, "", &report); code != 200 || len(report.VolumesDeleted) != 0 {
		t.Errorf("prune --all with the volume in use: %d %s", code, body)
	}
	e.st.DeletePod(context.Background(), "alice", strings.Repeat("a", 64))
	if code, body := e.call("alice", "DELETE", "/volumes/data", "", nil); code != 204 {
		t.Errorf("delete: %d %s", code, body)
	}
	if code, _ := e.call("alice", "DELETE", "/volumes/data?force=1", "", nil); code != 204 {
		t.Errorf("delete -f of a missing volume: %d", code)
	}
	if got := strings.Join(e.node.removed, " "); got != "alice/"+anon.Name+" alice/data" {
		t.Errorf("the node removed %q", got)
	}
}

func TestNetworkHandlers(t *testing.T) {
	e := newAPIEnv(t)
	var created struct{ Id string }
	body := `{"Name":"shop_default","Driver":"bridge","Labels":{"com.docker.compose.project":"shop","com.docker.compose.network":"default"},"IPAM":{"Config":[{"Subnet":"10.5.0.0/16","Gateway":"10.5.0.1"}]}}`
	if code, b := e.call("alice", "POST", "/networks/create", body, &created); code != 201 || len(created.Id) != 64 {
		t.Fatalf("create: %d %s", code, b)
	}
	for _, tc := range []struct {
		body string
		code int
		msg  string
	}{
		{`{"Name":"shop_default"}`, 409, "already exists"},
		{`{"Name":"bridge"}`, 403, "pre-defined network"},
		{`{"Name":"x","Driver":"macvlan"}`, 400, "network driver \"macvlan\" is not supported"},
		{`{"Name":"x","IPAM":{"Config":[{"Subnet":"10.5.0.1/16"}]}}`, 400, "it should be 10.5.0.0/16"},
		{`{"Name":"x","IPAM":{"Config":[{"Subnet":"10.5.0.0/16","Gateway":"10.6.0.1"}]}}`, 400, "must be inside the subnet"},
		{`{"Name":"x","Options":{"com.docker.network.bridge.name":"br0"}}`, 400, "com.docker.network.bridge.name"},
		{`{"Name":""}`, 400, "must not be empty"},
	} {
		if code, b := e.call("alice", "POST", "/networks/create", tc.body, nil); code != tc.code || !strings.Contains(b, tc.msg) {
			t.Errorf("create %s: %d %s, want %d %q", tc.body, code, b, tc.code, tc.msg)
		}
	}
	// Found by name, ID, ID prefix and <namespace>/<name>; 404 for bob.
	for _, ref := range []string{"shop_default", created.Id, created.Id[:12], "shop/default"} {
		var n struct {
			Id, Name, Driver string
			IPAM             struct {
				Config []struct{ Subnet, Gateway string }
			}
		}
		if code, b := e.call("alice", "GET", "/networks/"+ref, "", &n); code != 200 || n.Id != created.Id || n.Driver != "bridge" || len(n.IPAM.Config) != 1 || n.IPAM.Config[0].Subnet != "10.5.0.0/16" {
			t.Errorf("inspect %s: %d %s", ref, code, b)
		}
		if code, _ := e.call("bob", "GET", "/networks/"+ref, "", nil); code != 404 {
			t.Errorf("bob inspects %s: %d", ref, code)
		}
	}
	var list []struct{ Name string }
	e.call("bob", "GET", "/networks", "", &list)
	if len(list) != 3 {
		t.Errorf("bob's networks: %+v", list)
	}
	e.call("alice", "GET", `/networks?filters={"label":["com.docker.compose.project=shop"]}`, "", &list)
	if len(list) != 1 || list[0].Name != "shop_default" {
		t.Errorf("networks by label: %+v", list)
	}

	// connect and disconnect change the pod's endpoints and aliases.
	id := strings.Repeat("b", 64)
	e.putPod("alice", id, "shop-web-1", types.PodSpec{Labels: map[string]string{"com.docker.compose.service": "web"}})
	if code, b := e.call("bob", "POST", "/networks/shop_default/connect", `{"Container":"shop-web-1"}`, nil); code != 404 {
		t.Errorf("bob connects to alice's network: %d %s", code, b)
	}
	if code, b := e.call("alice", "POST", "/networks/shop_default/connect", `{"Container":"shop-web-1","EndpointConfig":{"Aliases":["www"],"IPAMConfig":{"IPv4Address":"10.5.0.9"}}}`, nil); code != 200 {
		t.Fatalf("connect: %d %s", code, b)
	}
	p, _ := e.st.Pod(context.Background(), "alice", id)
	if ep := p.Spec.Networks["shop_default"]; ep.NetworkID != created.Id || ep.IPv4Address != "10.5.0.9" || strings.Join(p.Spec.Aliases, ",") != "web,www" {
		t.Errorf("after connect: %+v %v", p.Spec.Networks, p.Spec.Aliases)
	}
	if code, _ := e.call("alice", "POST", "/networks/shop_default/connect", `{"Container":"shop-web-1"}`, nil); code != 403 {
		t.Errorf("connect twice: %d", code)
	}
	if code, b := e.call("alice", "DELETE", "/networks/shop_default", "", nil); code != 403 || !strings.Contains(b, "active endpoints (shop-web-1)") {
		t.Errorf("delete in use: %d %s", code, b)
	}
	if code, b := e.call("alice", "POST", "/networks/shop_default/disconnect", `{"Container":"shop-web-1"}`, nil); code != 200 {
		t.Errorf("disconnect: %d %s", code, b)
	}
	p, _ = e.st.Pod(context.Background(), "alice", id)
	if len(p.Spec.Networks) != 0 || strings.Join(p.Spec.Aliases, ",") != "web" {
		t.Errorf("after disconnect: %+v %v", p.Spec.Networks, p.Spec.Aliases)
	}
	if code, _ := e.call("alice", "DELETE", "/networks/bridge", "", nil); code != 403 {
		t.Errorf("delete bridge: %d", code)
	}
	if code, _ := e.call("bob", "DELETE", "/networks/shop_default", "", nil); code != 404 {
		t.Errorf("bob deletes alice's network: %d", code)
	}
	if code, b := e.call("alice", "DELETE", "/networks/shop_default", "", nil); code != 204 {
		t.Errorf("delete: %d %s", code, b)
	}
}

// FuzzMountSpecs feeds tenant-written mount specs (-v and --mount) to the
// parser: never a panic; a refusal is a 400; what is accepted has an
// absolute target and a sub-path inside the volume.
func FuzzMountSpecs(f *testing.F) {
	for _, s := range []string{"data:/d", "data:/d:ro", "/etc:/h:rw,z", "v/sub/dir:/x", "v/../..:/x", "a:b:c:d", ":", "data:/d:nocopy,shared"} {
		f.Add(s, `{"Type":"volume","Source":"v","Target":"/t","VolumeOptions":{"Subpath":"a/b"}}`)
	}
	f.Add("x:/", `{"Type":"tmpfs","Target":"/t","TmpfsOptions":{"SizeBytes":-1,"Mode":4095}}`)
	f.Add("x:/y", `{"Type":"bind","Source":"relative","Target":"/t","BindOptions":{"Propagation":"shared"}}`)
	f.Fuzz(func(t *testing.T, bind, mountJSON string) {
		var req createRequest
		req.HostConfig = nil
		body := `{"Image":"busybox","HostConfig":{"Binds":` + mustMarshal(t, []string{bind}) + `,"Mounts":[` + mountJSON + `]}}`
		if err := json.Unmarshal([]byte(body), &req); err != nil {
			return
		}
		spec, err := podFromCreate(&req, testImage(), "", "sandbox")
		if err != nil {
			if statusOf(err)/100 != 4 {
				t.Fatalf("%s: status %d: %v", body, statusOf(err), err)
			}
			return
		}
		for _, m := range spec.Mounts {
			if !strings.HasPrefix(m.Target, "/") || m.Target == "/" || strings.HasPrefix(m.Subpath, "/") || m.Subpath == ".." || strings.HasPrefix(m.Subpath, "../") {
				t.Fatalf("%s: accepted %+v", body, m)
			}
			if m.Type == "volume" && m.Source != "" && !validName.MatchString(m.Source) {
				t.Fatalf("%s: accepted volume name %q", body, m.Source)
			}
		}
	})
}

func mustMarshal(t *testing.T, v any) string {
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// FuzzNetworkCreate feeds network create bodies to their check: never a
// panic; a refusal is a 4xx; what is accepted has a valid name and
// canonical subnets.
func FuzzNetworkCreate(f *testing.F) {
	f.Add(`{"Name":"shop_default","Driver":"bridge","IPAM":{"Config":[{"Subnet":"10.5.0.0/16","IPRange":"10.5.1.0/24","Gateway":"10.5.0.1"}]}}`)
	f.Add(`{"Name":"x","IPAM":{"Config":[{"Gateway":"10.5.0.1"}]}}`)
	f.Add(`{"Name":"y","IPAM":{"Config":[{"Subnet":"fd00::/64","IPRange":"fd00::/80"}]}}`)
	f.Add(`{"Name":"back","Driver":"ipip","IPAM":{"Config":[{"Subnet":"10.10.0.0/29","IPRange":"10.10.0.4/30"}]}}`)
	f.Fuzz(func(t *testing.T, body string) {
		var req networkCreateRequest
		if json.Unmarshal([]byte(body), &req) != nil {
			return
		}
		n, err := networkFromCreate(req)
		if err != nil {
			if statusOf(err)/100 != 4 {
				t.Fatalf("%s: status %d: %v", body, statusOf(err), err)
			}
			return
		}
		if !validNetworkName.MatchString(n.Name) || isPredefined(n.Name) {
			t.Fatalf("%s: accepted name %q", body, n.Name)
		}
		for _, r := range n.IPAM {
			if p, err := netip.ParsePrefix(r.Subnet); r.Subnet != "" && (err != nil || p != p.Masked() || !p.Addr().Is4() || p.Bits() < 8 || p.Bits() > 29) {
				t.Fatalf("%s: accepted subnet %q", body, r.Subnet)
			}
		}
		// The overlay's addresses: never a panic, always in the subnet.
		ep := types.Endpoint{}
		if err := assignAddress(n, &ep, addrMap{}); err == nil && ep.IPv4Address != "" {
			if sub, _ := overlaySubnet(n); !sub.Contains(netip.MustParseAddr(ep.IPv4Address)) {
				t.Fatalf("%s: address %s outside %s", body, ep.IPv4Address, sub)
			}
		}
	})
}

// TestPinToVolume: a pod that mounts an lv2 volume is pinned to its node;
// lv2 volumes of two nodes in one pod are refused; nfs and gfs volumes
// (mounted from any node) pin nothing.
func TestPinToVolume(t *testing.T) {
	var spec types.PodSpec
	if err := pinToVolume(&spec, types.Volume{Name: "scratch"}); err != nil || spec.PinnedNode != "" {
		t.Fatalf("local volume: %v %+v", err, spec)
	}
	for _, d := range []string{"nfs", "gfs"} {
		if err := pinToVolume(&spec, types.Volume{Name: "files", Driver: d, Node: "n1"}); err != nil || spec.PinnedNode != "" {
			t.Fatalf("%s volume: %v %+v", d, err, spec)
		}
	}
	if err := pinToVolume(&spec, types.Volume{Name: "db", Driver: "lv2", Node: "n1"}); err != nil || spec.PinnedNode != "n1" || spec.PinnedBy != "volume db (lv2)" {
		t.Fatalf("lv2 volume: %v %+v", err, spec)
	}
	if err := pinToVolume(&spec, types.Volume{Name: "files", Driver: "nfs", Node: "n2"}); err != nil || spec.PinnedNode != "n1" {
		t.Fatalf("an nfs volume of another node: %v %+v", err, spec)
	}
	if err := pinToVolume(&spec, types.Volume{Name: "db2", Driver: "lv2", Node: "n1"}); err != nil || spec.PinnedNode != "n1" {
		t.Fatalf("a second volume of the same node: %v %+v", err, spec)
	}
	if err := pinToVolume(&spec, types.Volume{Name: "other", Driver: "lv2", Node: "n2"}); err == nil || !strings.Contains(err.Error(), "volumes of one node only") || statusOf(err) != 400 {
		t.Fatalf("volumes of two nodes: %v", err)
	}
}
