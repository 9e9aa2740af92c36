package ingress

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestBalanceRetryAndBackoff: of two replicas, one whose port no longer
// answers costs no request an error (the failed dial goes to the other,
// bodies included); the dead one is then left out for the backoff, and
// served again once it is up.
func TestBalanceRetryAndBackoff(t *testing.T) {
	_, live := app(t, "live")
	s, dead := app(t, "dead")
	s.Close()
	a := routeTo("alice", "a-live", live, "http://app.*")
	b := routeTo("alice", "b-dead", live, "http://app.*")
	b.Addr = dead.Addr()
	b.Labels = map[string]string{"kr.ingress." + itoa(int(dead.Port())): "http://app.*"}
	f := newIngressWith(t, Options{Backoff: time.Hour}, Config{Domain: "cloud.test"}, a, b)
	var dials int
	var mu sync.Mutex
	plain := f.proxy.opts.Dial
	f.proxy.opts.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		dials++
		mu.Unlock()
		return plain(ctx, network, addr)
	}
	for i := range 6 {
		var resp *http.Response
		var body string
		if i%2 == 0 {
			resp, body = f.get(t, f.http, "app.alice.cloud.test", "/")
		} else {
			req, _ := http.NewRequest("POST", strings.Replace(f.http, "127.0.0.1", "app.alice.cloud.test", 1)+"/x", strings.NewReader("hello"))
			r, err := f.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b := make([]byte, 512)
			n, _ := r.Body.Read(b)
			r.Body.Close()
			resp, body = r, string(b[:n])
		}
		if resp.StatusCode != 200 || !strings.HasPrefix(body, "live ") {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, body)
		}
		if i%2 == 1 && !strings.Contains(body, "body=5") {
			t.Fatalf("request %d lost its body on the retry: %s", i, body)
		}
	}
	if d := f.proxy.Down(); len(d) != 1 || d["b-dead"].IsZero() {
		t.Fatalf("down: %v", d)
	}
	mu.Lock()
	before := dials
	mu.Unlock()
	for range 4 {
		if resp, _ := f.get(t, f.http, "app.alice.cloud.test", "/"); resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	mu.Lock()
	if dials != before {
		t.Errorf("%d dials during the backoff (the dead replica was tried again, or keep-alive is off)", dials-before)
	}
	mu.Unlock()
	// Past the backoff the replica is tried again (and, dead, left out again).
	f.proxy.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	if resp, _ := f.get(t, f.http, "app.alice.cloud.test", "/"); resp.StatusCode != 200 {
		t.Fatalf("after the backoff: %d", resp.StatusCode)
	}
}

// TestBalanceRemote: a pod of another node is reached through DialRemote
// with its node, tenant, pod and port, never through the local dial; its
// failure is a failed dial like any (the request goes to another replica).
func TestBalanceRemote(t *testing.T) {
	_, local := app(t, "local")
	_, far := app(t, "far")
	a := routeTo("alice", "a-local", local, "http://app.*")
	a.Node = "n1"
	b := routeTo("alice", "b-far", local, "http://app.*")
	b.Node = "n2"
	b.Addr = netip.MustParseAddr("fd00::99") // not routed here: only the tunnel reaches it
	var mu sync.Mutex
	var asked []string
	fail := false
	opts := Options{Node: "n1", DialRemote: func(ctx context.Context, node, tenant, pod string, port int) (net.Conn, error) {
		mu.Lock()
		asked = append(asked, node+"/"+tenant+"/"+pod+"/"+itoa(port))
		f := fail
		mu.Unlock()
		if f {
			return nil, errors.New("node n2 has no tunnel")
		}
		var d net.Dialer
		return d.DialContext(ctx, "tcp", far.String())
	}}
	f := newIngressWith(t, opts, Config{Domain: "cloud.test"}, a, b)
	seen := map[string]int{}
	for range 6 {
		resp, body := f.get(t, f.http, "app.alice.cloud.test", "/")
		if resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		seen[strings.Fields(body)[0]]++
	}
	if seen["local"] != 3 || seen["far"] != 3 {
		t.Fatalf("balance %v, want 3 and 3", seen)
	}
	mu.Lock()
	want := "n2/alice/b-far/" + itoa(int(local.Port()))
	if len(asked) == 0 || asked[0] != want {
		t.Fatalf("remote dials %v, want %s", asked, want)
	}
	fail = true
	mu.Unlock()
	f.proxy.Close() // no pooled tunnel connection left
	for range 4 {
		if resp, body := f.get(t, f.http, "app.alice.cloud.test", "/"); resp.StatusCode != 200 || !strings.HasPrefix(body, "local") {
			t.Fatalf("with the remote node gone: %d %s", resp.StatusCode, body)
		}
	}
	if _, ok := f.proxy.Down()["b-far"]; !ok {
		t.Fatal("the unreachable remote pod is not backed off")
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestBalanceHealth: a replica whose healthcheck says unhealthy, or has not
// said healthy yet, gets no request while a healthy one is there; one still
// starting is served when no replica is healthy; an unhealthy one never.
func TestBalanceHealth(t *testing.T) {
	_, ha := app(t, "healthy")
	_, sa := app(t, "starting")
	_, ua := app(t, "unhealthy")
	healthy := routeTo("alice", "a-healthy", ha, "http://app.*")
	starting := routeTo("alice", "b-starting", sa, "http://app.*")
	starting.Ready, starting.Starting = false, true
	unhealthy := routeTo("alice", "c-unhealthy", ua, "http://app.*")
	unhealthy.Ready = false
	f := newIngress(t, Config{Domain: "cloud.test"}, healthy, starting, unhealthy)
	for range 6 {
		if resp, body := f.get(t, f.http, "app.alice.cloud.test", "/"); resp.StatusCode != 200 || !strings.HasPrefix(body, "healthy ") {
			t.Fatalf("with a healthy replica: %d %s", resp.StatusCode, body)
		}
	}
	f.proxy.SetTable(Build(Config{Domain: "cloud.test"}, []Backend{starting, unhealthy}))
	for range 4 {
		if resp, body := f.get(t, f.http, "app.alice.cloud.test", "/"); resp.StatusCode != 200 || !strings.HasPrefix(body, "starting ") {
			t.Fatalf("with none healthy: %d %s", resp.StatusCode, body)
		}
	}
	f.proxy.SetTable(Build(Config{Domain: "cloud.test"}, []Backend{unhealthy}))
	if resp, body := f.get(t, f.http, "app.alice.cloud.test", "/"); resp.StatusCode != 502 {
		t.Fatalf("unhealthy only: %d %s", resp.StatusCode, body)
	}
}

// TestBalanceStreamsWithReplicas: with several replicas (the request goes
// through the retrying writer), WebSockets and streamed responses pass as
// with one.
func TestBalanceStreamsWithReplicas(t *testing.T) {
	_, a := app(t, "one")
	_, b := app(t, "two")
	f := newIngress(t, Config{Domain: "cloud.test"}, routeTo("alice", "a", a, "http://app.*"), routeTo("alice", "b", b, "http://app.*"))
	port := strings.Split(strings.TrimPrefix(f.http, "http://"), ":")[1]
	d := websocket.Dialer{NetDialContext: f.client.Transport.(*http.Transport).DialContext}
	for range 2 {
		c, _, err := d.Dial("ws://app.alice.cloud.test:"+port+"/ws", nil)
		if err != nil {
			t.Fatal(err)
		}
		c.WriteMessage(websocket.TextMessage, []byte("hi"))
		if _, got, err := c.ReadMessage(); err != nil || !strings.HasSuffix(string(got), ":hi") {
			t.Fatalf("websocket: %q %v", got, err)
		}
		c.Close()
	}
	resp, err := f.client.Get("http://app.alice.cloud.test:" + port + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	for i := range 3 {
		if line, err := r.ReadString('\n'); err != nil || line != "tick "+strconv.Itoa(i)+"\n" {
			t.Fatalf("stream line %d: %q %v", i, line, err)
		}
	}
}
