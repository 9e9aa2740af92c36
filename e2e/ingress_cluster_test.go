package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/macro-cloud/macro/internal/testenv"
	"github.com/macro-cloud/macro/internal/testimages"
)

// TestIngressCluster: two servers, each with its node, on two test hosts
// (no mesh between their networks). A route with a replica on each node is
// served through the ingress of both servers, balanced over both replicas:
// each ingress reaches the other node's pod through that node's tunnel.
// When a replica's server process dies (the pod still runs, so nothing but
// failed dials tells), and then the pod is killed, a client that never
// retries sees no error: a failed dial goes to the other replica, and the
// dead one is left out for the backoff.
func TestIngressCluster(t *testing.T) {
	port := testenv.FreePort(t)
	servers := startCluster(t, 2, "--vpc=true", "--ingress-http", ":"+strconv.Itoa(port), "--domain", "cloud.test")
	s1 := servers[0]
	// Each server's own agent runs from its server's image store, which
	// does not fetch from its peers on a start: load the image on both.
	for _, cs := range servers {
		testenv.MustDocker(t, cs.srv.Host(), "load", "-i", testimages.Busybox(t))
	}
	node := func(name string) string {
		var ps []struct{ Node string }
		out := testenv.MustDocker(t, s1.srv.Host(), "inspect", name).Stdout
		if err := json.Unmarshal([]byte(out), &ps); err != nil || len(ps) != 1 {
			t.Fatalf("inspect %s: %v", name, err)
		}
		return ps[0].Node
	}
	// Both nodes are this machine: a replica that asks for 60% of its
	// memory (a reservation the scheduler counts; the pod uses little)
	// leaves room for no other on its node.
	mem := int64(float64(memTotal(t)) * 0.6)
	byNode := map[string]string{} // node -> a replica on it
	for i := 1; i <= 2; i++ {
		name := "web" + strconv.Itoa(i)
		testenv.MustDocker(t, s1.srv.Host(), "run", "-d", "--name", name, "-m", strconv.FormatInt(mem, 10), "-l", "kr.ingress.8080=http://web.*", "busybox",
			"sh", "-c", "mkdir /www && echo hello from "+name+" > /www/index.html && httpd -f -p 8080 -h /www; sleep 3600")
		t.Cleanup(func() { testenv.Docker(t, s1.srv.Host(), "rm", "-f", name) })
		deadline := time.Now().Add(60 * time.Second)
		for node(name) == "" && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		n := node(name)
		t.Logf("%s runs on node %q", name, n)
		if byNode[n] == "" {
			byNode[n] = name
		}
	}
	if len(byNode) < 2 {
		t.Fatalf("replicas on one node only: %v", byNode)
	}
	var replicas []string
	for _, name := range byNode {
		replicas = append(replicas, name)
	}

	// A client without retries; every name is the ingress it asks.
	client := func(cs *clusterServer) *http.Client {
		return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, net.JoinHostPort(cs.host.Addr.String(), strconv.Itoa(port)))
			},
			MaxIdleConnsPerHost: 4,
		}}
	}
	url := fmt.Sprintf("http://web.default.cloud.test:%d/", port)
	get := func(c *http.Client) (int, string, error) {
		resp, err := c.Get(url)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b)), nil
	}
	for _, cs := range servers {
		c := client(cs)
		seen := map[string]int{}
		deadline := time.Now().Add(60 * time.Second)
		for !(seen["hello from "+replicas[0]] > 0 && seen["hello from "+replicas[1]] > 0) {
			if time.Now().After(deadline) {
				t.Fatalf("through %s's ingress, saw %v, want both %v\n%s", cs.name, seen, replicas, cs.srv.Log())
			}
			if code, body, err := get(c); err == nil && code == 200 {
				seen[body]++
			} else {
				time.Sleep(100 * time.Millisecond)
			}
		}
		t.Logf("through %s: %v", cs.name, seen)
	}

	// The replica on the second server's node dies; through both ingresses
	// every request is answered by the other one.
	victim := byNode[servers[1].name]
	if victim == "" {
		t.Fatalf("no replica on %s: %v", servers[1].name, byNode)
	}
	clients := []*http.Client{client(servers[0]), client(servers[1])}
	for _, c := range clients { // keep-alive connections to both replicas
		for range 4 {
			get(c)
		}
	}
	check := func(what string, n int) {
		t.Helper()
		for i := range n {
			code, body, err := get(clients[i%2])
			if err != nil || code != 200 || body == "hello from "+victim {
				t.Fatalf("request %d after %s, through %s: %d %q %v", i, what, servers[i%2].name, code, body, err)
			}
		}
	}
	// Its server dies, the pod runs on: only the failed dials tell.
	testenv.MustDocker(t, s1.srv.Host(), "exec", victim, "killall", "httpd")
	check("the victim's httpd was killed", 40)
	// The pod itself is killed.
	testenv.MustDocker(t, s1.srv.Host(), "kill", victim)
	check("the victim was killed", 20)

	// A pod suspended on one node is woken by a request through the other
	// server's ingress (through its node's tunnel), and held, not dropped.
	testenv.MustDocker(t, s1.srv.Host(), "rm", "-f", "web1", "web2")
	testenv.MustDocker(t, s1.srv.Host(), "run", "-d", "--name", "sleepy", "-m", strconv.FormatInt(mem, 10),
		"-l", "kr.ingress.8080=http://sleepy.*", "-l", "kr.suspend=1s", "busybox",
		"sh", "-c", "mkdir /www && echo hello from sleepy > /www/index.html && exec httpd -f -p 8080 -h /www")
	t.Cleanup(func() { testenv.Docker(t, s1.srv.Host(), "rm", "-f", "sleepy") })
	deadline := time.Now().Add(60 * time.Second)
	for node("sleepy") == "" && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	far := servers[0]
	if node("sleepy") == far.name {
		far = servers[1]
	}
	t.Logf("sleepy runs on %s; asked through %s", node("sleepy"), far.name)
	sleepyURL := fmt.Sprintf("http://sleepy.default.cloud.test:%d/", port)
	fc := client(far)
	getSleepy := func() (int, string) {
		resp, err := fc.Get(sleepyURL)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	eventually(t, "sleepy serves through the far ingress", func() bool { code, _ := getSleepy(); return code == 200 })
	fc.CloseIdleConnections()
	eventually(t, "sleepy is suspended", func() bool {
		return strings.HasSuffix(strings.TrimSpace(testenv.MustDocker(t, s1.srv.Host(), "ps", "--filter", "name=sleepy", "--format", "{{.Status}}").Stdout), "(suspended)")
	})
	if code, body := getSleepy(); code != 200 || body != "hello from sleepy" {
		t.Fatalf("the request to the suspended pod on the other node: %d %s", code, body)
	}
	var st []struct {
		State struct{ Suspend struct{ Wakes int } }
	}
	json.Unmarshal([]byte(testenv.MustDocker(t, s1.srv.Host(), "inspect", "sleepy").Stdout), &st)
	if len(st) != 1 || st[0].State.Suspend.Wakes < 1 {
		t.Fatalf("no wake recorded: %+v", st)
	}
}

// memTotal is the machine's memory in bytes.
func memTotal(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	var kb int64
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
			kb, _ = strconv.ParseInt(f[1], 10, 64)
		}
	}
	if kb == 0 {
		t.Fatal("no MemTotal in /proc/meminfo")
	}
	return kb << 10
}
