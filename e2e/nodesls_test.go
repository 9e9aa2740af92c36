package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/macro-cloud/macro/api"
	"github.com/macro-cloud/macro/auth"
	"github.com/macro-cloud/macro/client"
	"github.com/macro-cloud/macro/image"
	"github.com/macro-cloud/macro/internal/testenv"
	"github.com/macro-cloud/macro/internal/testimages"
)

// TestNodesList lists the nodes of a cluster as its admin (macro admin
// nodes ls|rm), as a tenant (kra nodes ls) and through docker info, while
// two agents run pods of two tenants, one of them dies, is forgotten, and
// comes back.
func TestNodesList(t *testing.T) {
	c := startNodeCluster(t, 3)
	tc := c.tenantCloud(t)
	aliceToken, aliceCerts := tc.newTenant("alice")
	kra := c.kraAs(t, aliceToken)

	// The machine's capacity, as each agent registers it (they all run
	// on this machine).
	cpus := goruntime.NumCPU()
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil {
		t.Fatal(err)
	}
	mem := int64(si.Totalram) * int64(si.Unit)

	waitNodes(t, c, "both agents ready", func(ns []api.AdminNode) bool {
		return len(ns) == 2 && ns[0].Ready && ns[1].Ready
	})

	// Pods of two tenants: default (the server's local socket) and alice
	// (the docker CLI over mutual TLS).
	c.docker(t, "load", "-i", testimages.Busybox(t))
	tc.mustDocker(aliceCerts, "load", "-i", testimages.Busybox(t))
	c.docker(t, "run", "-d", "--name", "d1", "--memory", "64m", "--cpus", "0.5", "busybox", "sleep", "1d")
	c.docker(t, "run", "-d", "--name", "d2", "--memory", "64m", "--cpus", "0.25", "busybox", "sleep", "1d")
	tc.mustDocker(aliceCerts, "run", "-d", "--name", "a1", "--memory", "32m", "busybox", "sleep", "1d")
	onNode := func(n string) bool { return n == "n2" || n == "n3" }
	placed := map[string]string{"d1": c.waitPlaced(t, "d1", onNode).Node, "d2": c.waitPlaced(t, "d2", onNode).Node}
	// alicePlaced waits until alice's a1 runs on a node accepted by ok.
	alicePlaced := func(ok func(node string) bool) string {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			out := tc.mustDocker(aliceCerts, "inspect", "--format", "{{.State.Running}} {{index . \"Node\"}}", "a1")
			if running, node, _ := strings.Cut(out, " "); running == "true" && ok(node) {
				return node
			}
			if time.Now().After(deadline) {
				t.Fatalf("alice's a1 is not running on the node expected after 60 s: %s", out)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	aliceNode := alicePlaced(onNode)
	placed["a1"] = aliceNode
	t.Logf("placed: %v", placed)

	// What each node holds, as the scheduler counts it.
	type want struct {
		pods, alicePods int
		mem, nanoCPUs   int64
	}
	wants := map[string]*want{"n2": {}, "n3": {}}
	for name, res := range map[string]struct{ mem, cpu int64 }{"d1": {64 << 20, 5e8}, "d2": {64 << 20, 25e7}, "a1": {32 << 20, 0}} {
		w := wants[placed[name]]
		w.pods++
		w.mem += res.mem
		w.nanoCPUs += res.cpu
		if name == "a1" {
			w.alicePods++
		}
	}

	t.Run("macro admin nodes ls", func(t *testing.T) {
		nodes := adminNodes(t, c)
		if len(nodes) != 2 {
			t.Fatalf("admin GET /nodes: %+v", nodes)
		}
		for _, n := range nodes {
			w := wants[n.Name]
			if w == nil || !n.Ready || n.Zone != "z" || n.Arch != goruntime.GOARCH || n.CPUs != cpus || n.MemoryBytes != mem ||
				n.Pods != w.pods || n.RequestedMemoryBytes != w.mem || n.RequestedNanoCPUs != w.nanoCPUs || len(n.Runtimes) == 0 {
				t.Errorf("admin node %+v, want %+v and %d CPUs, %d bytes", n, w, cpus, mem)
			}
		}
		out := c.admin(t, "nodes", "ls")
		t.Logf("macro admin nodes ls:\n%s", out)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 3 || strings.Join(strings.Fields(lines[0]), " ") != "NAME STATUS ZONE ARCH CPUS MEMORY PODS RUNTIMES LABELS" {
			t.Fatalf("macro admin nodes ls:\n%s", out)
		}
		for i, name := range []string{"n2", "n3"} {
			w := wants[name]
			f := strings.Fields(lines[i+1])
			cpuReq := strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.2f", float64(w.nanoCPUs)/1e9), "0"), ".")
			wantRow := []string{name, "ready", "z", goruntime.GOARCH, fmt.Sprintf("%s/%d", cpuReq, cpus),
				sizeText(w.mem) + "/" + sizeText(mem), fmt.Sprint(w.pods)}
			if len(f) < 9 || strings.Join(f[:7], " ") != strings.Join(wantRow, " ") || !strings.Contains(f[7], "sandbox") {
				t.Errorf("macro admin nodes ls, row of %s: %q, want %q", name, lines[i+1], wantRow)
			}
		}
	})

	t.Run("kra nodes ls shows only the tenant's pods", func(t *testing.T) {
		var list []client.Node
		if err := json.Unmarshal([]byte(kra("nodes", "ls", "-o", "json")), &list); err != nil || len(list) != 2 {
			t.Fatalf("kra nodes ls -o json: %+v %v", list, err)
		}
		for _, n := range list {
			w := wants[n.Name]
			if w == nil || !n.Ready || n.Zone != "z" || n.CPUs != cpus || n.MemoryBytes != mem || n.Pods != w.alicePods {
				t.Errorf("alice's view of %+v, want %d of her pods", n, w.alicePods)
			}
		}
		out := kra("nodes", "ls")
		t.Logf("kra nodes ls as alice:\n%s", out)
		for _, name := range []string{"n2", "n3"} {
			if !rowMatches(out, name, "ready", "z", goruntime.GOARCH, fmt.Sprint(cpus), "", fmt.Sprint(wants[name].alicePods), "-") {
				t.Errorf("kra nodes ls: no row for %s with %d of alice's pods:\n%s", name, wants[name].alicePods, out)
			}
		}
		// No admin field on the tenant side, on the wire either.
		body := nativeGet(t, tc, aliceToken, "/nodes")
		for _, field := range []string{"requested", "runtimes", "kernel", "address", "registered"} {
			if strings.Contains(body, `"`+field) {
				t.Errorf("the tenant side shows %q: %s", field, body)
			}
		}
	})

	t.Run("docker info sums the ready nodes", func(t *testing.T) {
		checkDockerInfo(t, c, 2*cpus, 2*mem, "2 (2 ready)")
		// Alice's docker info: the same cluster, her own containers only.
		out := tc.mustDocker(aliceCerts, "info", "--format", "{{.Containers}} {{.NCPU}} {{json .SystemStatus}}")
		if want := fmt.Sprintf(`1 %d [["Nodes","2 (2 ready)"],["Zones","z"]]`, 2*cpus); out != want {
			t.Errorf("alice's docker info: %q, want %q", out, want)
		}
	})

	// The node that runs alice's pod dies.
	dead, other := aliceNode, map[string]string{"n2": "n3", "n3": "n2"}[aliceNode]
	if _, errOut, err := c.tryAdmin(t, "nodes", "rm", dead); err == nil || !strings.Contains(errOut, fmt.Sprintf(`macro admin: node %q is ready: only a node that is down can be removed`, dead)) {
		t.Fatalf("macro admin nodes rm of a ready node: %v\n%s", err, errOut)
	}
	c.agents[dead].Kill()
	waitNodes(t, c, dead+" down", func(ns []api.AdminNode) bool {
		for _, n := range ns {
			if n.Name == dead {
				return !n.Ready
			}
		}
		return false
	})
	if !rowMatches(c.admin(t, "nodes", "ls"), dead, "down", "z") {
		t.Errorf("macro admin nodes ls does not show %s down", dead)
	}
	if !rowMatches(kra("nodes", "ls"), dead, "down", "z") {
		t.Errorf("kra nodes ls does not show %s down", dead)
	}
	checkDockerInfo(t, c, cpus, mem, "2 (1 ready)")

	// Forget it: refused while its pods are still placed on it (the
	// controller moves them within seconds of the lease's expiry).
	deadline := time.Now().Add(90 * time.Second)
	for {
		out, errOut, err := c.tryAdmin(t, "nodes", "rm", dead)
		if err == nil {
			if out != "node "+dead+" removed\n" {
				t.Errorf("macro admin nodes rm: %q", out)
			}
			break
		}
		if !strings.Contains(errOut, "pods are still placed on it: they are being moved to other nodes, try again in a few seconds") || time.Now().After(deadline) {
			t.Fatalf("macro admin nodes rm of a down node: %v\n%s\n%s", err, errOut, c.srv.Log())
		}
		time.Sleep(500 * time.Millisecond)
	}
	if _, errOut, err := c.tryAdmin(t, "nodes", "rm", dead); err == nil || !strings.Contains(errOut, fmt.Sprintf("macro admin: no node %q", dead)) {
		t.Errorf("macro admin nodes rm twice: %v %s", err, errOut)
	}
	alicePlaced(func(n string) bool { return n == other })
	if ns := adminNodes(t, c); len(ns) != 1 || ns[0].Name != other || ns[0].Pods != 3 {
		t.Errorf("after removing %s: %+v", dead, ns)
	}
	var list []client.Node
	if err := json.Unmarshal([]byte(kra("nodes", "ls", "-o", "json")), &list); err != nil || len(list) != 1 || list[0].Name != other || list[0].Pods != 1 {
		t.Errorf("alice's nodes after removing %s: %+v %v", dead, list, err)
	}
	checkDockerInfo(t, c, cpus, mem, "1 (1 ready)")

	// A forgotten node that starts again joins anew, and stops the copy
	// of the pod that moved away.
	c.agents[dead].Start()
	waitNodes(t, c, dead+" back", func(ns []api.AdminNode) bool { return len(ns) == 2 && ns[0].Ready && ns[1].Ready })
	checkDockerInfo(t, c, 2*cpus, 2*mem, "2 (2 ready)")
}

// tenantCloud is the cluster's server as e2e's tenancy helpers use it.
func (c *nodeCluster) tenantCloud(t *testing.T) *tenantCloud {
	caPEM, err := os.ReadFile(filepath.Join(c.srv.DataDir, "ca", auth.CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(c.api)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &tenantCloud{t: t, macro: testenv.Macro(t), srv: c.srv, addr: u.Host, caPEM: caPEM,
		http: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}}
}

// kraAs returns a runner of kra as the tenant of token, against the
// cluster's API port; it fails the test when kra fails.
func (c *nodeCluster) kraAs(t *testing.T, token string) func(args ...string) string {
	home := t.TempDir()
	ca := filepath.Join(home, "ca.pem")
	caPEM, err := os.ReadFile(filepath.Join(c.srv.DataDir, "ca", auth.CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ca, caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	bin := testenv.Kra(t)
	return func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "TZ=UTC", "HOME=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, "config"),
			"KR_HOST=" + c.api, "KR_CA=" + ca, "KR_ACCESS_TOKEN=" + token}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("kra %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return string(out)
	}
}

// tryAdmin runs macro admin on the cluster's server.
func (c *nodeCluster) tryAdmin(t *testing.T, args ...string) (stdout, stderr string, err error) {
	cmd := exec.Command(testenv.Macro(t), append([]string{"admin", "--data-dir", c.srv.DataDir}, args...)...)
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

func (c *nodeCluster) admin(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := c.tryAdmin(t, args...)
	if err != nil {
		t.Fatalf("macro admin %s: %v\n%s", strings.Join(args, " "), err, errOut)
	}
	return out
}

// adminNodes asks the admin API (DATA-DIR/admin.sock) for the nodes.
func adminNodes(t *testing.T, c *nodeCluster) []api.AdminNode {
	t.Helper()
	sock := filepath.Join(c.srv.DataDir, "admin.sock")
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	resp, err := hc.Get("http://admin" + api.Prefix + "/nodes")
	if err != nil {
		t.Fatalf("admin GET /nodes: %v", err)
	}
	defer resp.Body.Close()
	var nodes []api.AdminNode
	if err := json.NewDecoder(resp.Body).Decode(&nodes); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("admin GET /nodes: %d %v", resp.StatusCode, err)
	}
	return nodes
}

// waitNodes waits (generously: leases expire after the node TTL) until
// the admin's list of nodes satisfies ok.
func waitNodes(t *testing.T, c *nodeCluster, what string, ok func([]api.AdminNode) bool) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		ns := adminNodes(t, c)
		if ok(ns) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: nodes are %+v after 90 s\n%s", what, ns, c.srv.Log())
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// nativeGet calls the tenant side of the native API with a token.
func nativeGet(t *testing.T, tc *tenantCloud, token, path string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "https://"+tc.addr+api.Prefix+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := tc.http.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v %s", path, resp.StatusCode, err, b)
	}
	return string(b)
}

// checkDockerInfo: docker info as the default tenant shows the CPUs and
// memory of the ready nodes, and the nodes in its summary.
func checkDockerInfo(t *testing.T, c *nodeCluster, cpus int, mem int64, nodes string) {
	t.Helper()
	want := fmt.Sprintf(`%d %d [["Nodes",%q],["Zones","z"]]`, cpus, mem, nodes)
	if out := c.docker(t, "info", "--format", "{{.NCPU}} {{.MemTotal}} {{json .SystemStatus}}"); out != want {
		t.Errorf("docker info: %q, want %q", out, want)
	}
	out := c.docker(t, "info")
	t.Logf("docker info:\n%s", out)
	for _, line := range []string{" Nodes: " + nodes + "\n", " Zones: z\n", fmt.Sprintf(" CPUs: %d\n", cpus)} {
		if !strings.Contains(out, line) {
			t.Errorf("docker info does not print %q:\n%s", line, out)
		}
	}
}

// sizeText is a size as macro admin's tables print it.
func sizeText(n int64) string { return strings.ReplaceAll(image.HumanSize(n), " ", "") }

// rowMatches says whether a table has a row whose first columns are
// cols ("" matches any value).
func rowMatches(table string, cols ...string) bool {
	for _, line := range strings.Split(table, "\n") {
		f := strings.Fields(line)
		if len(f) < len(cols) {
			continue
		}
		ok := true
		for i, c := range cols {
			if c != "" && f[i] != c {
				ok = false
			}
		}
		if ok {
			return true
		}
	}
	return false
}
