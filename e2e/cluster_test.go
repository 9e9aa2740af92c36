package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/macro-cloud/macro/internal/testenv"
)

// A cluster of three servers, each its own process on its own test host:
// the first plain, two joining with a server join token. Clients write and
// read volumes through the Docker API of random servers while the server
// that leads the control loop is killed (SIGKILL). The API answers again
// from the survivors, no acknowledged write is lost, and the history of
// what every client saw is linearizable (porcupine). Then the dead member is
// removed, and a live one: it stops, saying why.

// clusterServer is one server of the test cluster.
type clusterServer struct {
	name string
	host *testenv.Host
	srv  *testenv.Server
	api  string // https://ADDR:7443
	dead atomic.Bool
}

// startCluster starts n servers on n hosts: s1 first, the others joining it
// (each through the server before it) with a server join token.
func startCluster(t *testing.T, n int, extra ...string) []*clusterServer {
	t.Helper()
	return startClusterOn(t, testenv.NewHosts(t, n).List, extra...)
}

// startClusterOn starts a server on each of hosts, as startCluster does.
func startClusterOn(t *testing.T, hosts []*testenv.Host, extra ...string) []*clusterServer {
	t.Helper()
	var servers []*clusterServer
	args := func(h *testenv.Host, name string) []string {
		a := []string{"--node-name", name, "--api-addr", netip.AddrPortFrom(h.Addr, 7443).String(),
			"--ingress-http", "off", "--ingress-https", "off", "--vpc=false", "--leader-ttl", "3s"}
		return append(a, extra...)
	}
	for i, h := range hosts {
		cs := &clusterServer{name: fmt.Sprintf("s%d", i+1), host: h, api: "https://" + netip.AddrPortFrom(h.Addr, 7443).String()}
		a := args(h, cs.name)
		if i == 0 {
			a = append(a, "--etcd-peer-addr", netip.AddrPortFrom(h.Addr, 2380).String())
		} else {
			prev := servers[i-1]
			out, errOut, err := macroAdmin(t, prev.srv.DataDir, "join-token", "server", "--ttl", "1h")
			if err != nil {
				t.Fatalf("join-token server: %v\n%s", err, errOut)
			}
			hash := regexp.MustCompile(`--ca-hash (sha256:[0-9a-f]{64})`).FindStringSubmatch(errOut)
			if hash == nil {
				t.Fatalf("join-token server printed no --ca-hash: %s", errOut)
			}
			a = append(a, "--join", prev.api, "--token", strings.TrimSpace(out), "--ca-hash", hash[1])
		}
		start := time.Now()
		cs.srv = testenv.StartServer(t, testenv.OnHost(h), testenv.WithArgs(a...))
		t.Logf("%s up on %s in %v", cs.name, h.Addr, time.Since(start).Round(time.Millisecond))
		servers = append(servers, cs)
	}
	return servers
}

// macroAdmin runs `macro admin --data-dir dir ARGS`.
func macroAdmin(t *testing.T, dir string, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.Command(testenv.Macro(t), append([]string{"admin", "--data-dir", dir}, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	return out.String(), errOut.String(), err
}

// member is a row of `macro admin members ls`.
type member struct{ name, role string }

func membersLs(t *testing.T, dir string) ([]member, error) {
	out, errOut, err := macroAdmin(t, dir, "members", "ls")
	if err != nil {
		return nil, fmt.Errorf("members ls: %v: %s", err, errOut)
	}
	var ms []member
	for _, line := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
		f := regexp.MustCompile(`\s{3,}`).Split(strings.TrimSpace(line), -1)
		m := member{name: strings.TrimSuffix(f[0], " *")}
		if len(f) > 3 {
			m.role = f[3]
		}
		ms = append(ms, m)
	}
	return ms, nil
}

// controlLeader is the member that runs the control loop, "" when none.
func controlLeader(ms []member) string {
	for _, m := range ms {
		if strings.Contains(m.role, "control loop") {
			return m.name
		}
	}
	return ""
}

// The key-value model the history is checked against: a key is a volume
// name, its value the label "v" it was created with ("" while absent).
const (
	opCreate = iota // POST /volumes/create: creates, or returns the existing one
	opGet           // GET /volumes/{name}
	opRemove        // DELETE /volumes/{name}
)

type kvIn struct {
	op         int
	key, value string
}

type kvOut struct {
	value   string // the volume's label after create, or as read
	exists  bool   // get: found; remove: removed
	unknown bool   // a write whose outcome is unknown (no answer)
}

var kvModel = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		for _, op := range h {
			k := op.Input.(kvIn).key
			by[k] = append(by[k], op)
		}
		var out [][]porcupine.Operation
		for _, ops := range by {
			out = append(out, ops)
		}
		return out
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		st, in, out := state.(string), input.(kvIn), output.(kvOut)
		switch in.op {
		case opCreate:
			next := st
			if st == "" {
				next = in.value
			}
			return out.unknown || out.value == next, next
		case opGet:
			return out.exists && out.value == st || !out.exists && st == "", st
		default:
			return out.unknown || out.exists == (st != ""), ""
		}
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(kvIn), output.(kvOut)
		return fmt.Sprintf("%v %s %s -> %+v", in.op, in.key, in.value, out)
	},
}

// volumeClient speaks the Docker API of the servers over their sockets.
type volumeClient struct {
	clients map[*clusterServer]*http.Client
}

func newVolumeClient(servers []*clusterServer) *volumeClient {
	vc := &volumeClient{clients: map[*clusterServer]*http.Client{}}
	for _, s := range servers {
		c := s.srv.Client()
		c.Timeout = 10 * time.Second
		vc.clients[s] = c
	}
	return vc
}

// do sends one operation to s; ok is false when no answer came (or one
// that does not tell the outcome: a 5xx).
func (vc *volumeClient) do(s *clusterServer, in kvIn) (out kvOut, ok bool) {
	c := vc.clients[s]
	var req *http.Request
	switch in.op {
	case opCreate:
		body, _ := json.Marshal(map[string]any{"Name": in.key, "Labels": map[string]string{"v": in.value}})
		req, _ = http.NewRequest(http.MethodPost, "http://docker/volumes/create", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
	case opGet:
		req, _ = http.NewRequest(http.MethodGet, "http://docker/volumes/"+in.key, nil)
	default:
		req, _ = http.NewRequest(http.MethodDelete, "http://docker/volumes/"+in.key, nil)
	}
	resp, err := c.Do(req)
	if err != nil {
		return kvOut{unknown: true}, false
	}
	defer resp.Body.Close()
	var v struct{ Labels map[string]string }
	json.NewDecoder(resp.Body).Decode(&v)
	switch {
	case resp.StatusCode >= 500:
		return kvOut{unknown: true}, false
	case in.op == opRemove && resp.StatusCode == http.StatusNoContent:
		return kvOut{exists: true}, true
	case resp.StatusCode == http.StatusNotFound:
		return kvOut{}, true
	case resp.StatusCode/100 == 2:
		return kvOut{value: v.Labels["v"], exists: true}, true
	}
	return kvOut{unknown: true}, false
}

func TestClusterFailover(t *testing.T) {
	servers := startCluster(t, 3)
	ms, err := membersLs(t, servers[2].srv.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 3 || ms[0].name != "s1" || ms[1].name != "s2" || ms[2].name != "s3" {
		t.Fatalf("members ls: %+v", ms)
	}
	// One server leads the control loop; every server sees the same.
	var leader *clusterServer
	deadline := time.Now().Add(time.Minute)
	for leader == nil && time.Now().Before(deadline) {
		ms, _ := membersLs(t, servers[0].srv.DataDir)
		for _, s := range servers {
			if s.name == controlLeader(ms) {
				leader = s
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	if leader == nil {
		t.Fatal("no server leads the control loop")
	}
	t.Logf("members: %+v; %s leads the control loop", ms, leader.name)
	imageID := clusterImagesBefore(t, servers, leader) // clusterimages_test.go

	// The stream of writes and reads: 4 clients, each on a random server
	// for every operation, over 6 keys; besides, each client creates
	// volumes of its own that nothing removes (acknowledged: must exist).
	vc := newVolumeClient(servers)
	origin := time.Now()
	var (
		mu      sync.Mutex
		history []porcupine.Operation
		acked   []string
		stats   = map[string]int{}
	)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var wg sync.WaitGroup
	var seq atomic.Int64
	for c := 0; c < 4; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(c), 42))
			for n := 0; ctx.Err() == nil; n++ {
				s := servers[rng.IntN(len(servers))]
				if n%5 == 4 {
					name := fmt.Sprintf("ack-%d-%d", c, n)
					if out, ok := vc.do(s, kvIn{op: opCreate, key: name, value: "x"}); ok && out.value == "x" {
						mu.Lock()
						acked = append(acked, name)
						mu.Unlock()
					}
					continue
				}
				in := kvIn{op: rng.IntN(3), key: fmt.Sprintf("kv%d", rng.IntN(6))}
				if in.op == opCreate {
					in.value = fmt.Sprintf("%d", seq.Add(1))
				}
				call := time.Since(origin).Nanoseconds()
				out, ok := vc.do(s, in)
				ret := time.Since(origin).Nanoseconds()
				mu.Lock()
				switch {
				case ok:
					history = append(history, porcupine.Operation{ClientId: c, Input: in, Call: call, Output: out, Return: ret})
					stats["answered"]++
				case in.op != opGet:
					// The outcome is unknown: the write may take effect
					// at any time after its call, or never.
					history = append(history, porcupine.Operation{ClientId: c, Input: in, Call: call, Output: out, Return: 1 << 62})
					stats["unknown"]++
				default:
					stats["read failed"]++
				}
				mu.Unlock()
			}
		}()
	}
	defer func() { stop(); wg.Wait() }()

	time.Sleep(4 * time.Second)
	killed := time.Now()
	leader.srv.Kill()
	leader.dead.Store(true)
	t.Logf("killed %s (the control loop's leader) at +%v", leader.name, killed.Sub(origin).Round(time.Millisecond))
	var survivors []*clusterServer
	for _, s := range servers {
		if !s.dead.Load() {
			survivors = append(survivors, s)
		}
	}

	// The API answers again from the survivors: the first acknowledged
	// write after the kill, and another server leading the control loop.
	// A write that was under way when the raft leader died waits for
	// etcd's request timeout: the probe gives up on each after a second
	// and sends the next, as an impatient client would.
	probe := &volumeClient{clients: map[*clusterServer]*http.Client{survivors[0]: survivors[0].srv.Client()}}
	probe.clients[survivors[0]].Timeout = time.Second
	recovered := waitFor(t, 2*time.Minute, func() bool {
		out, ok := probe.do(survivors[0], kvIn{op: opCreate, key: fmt.Sprintf("probe-%d", time.Now().UnixNano()), value: "p"})
		return ok && out.value == "p"
	})
	t.Logf("first acknowledged write on %s %v after the kill", survivors[0].name, recovered.Sub(killed).Round(time.Millisecond))
	var newLeader string
	led := waitFor(t, 2*time.Minute, func() bool {
		ms, err := membersLs(t, survivors[0].srv.DataDir)
		newLeader = controlLeader(ms)
		return err == nil && newLeader != "" && newLeader != leader.name
	})
	t.Logf("%s leads the control loop %v after the kill", newLeader, led.Sub(killed).Round(time.Millisecond))
	if r := os.Getenv("MACRO_FAILOVER_REPORT"); r != "" {
		f, err := os.OpenFile(r, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			fmt.Fprintf(f, "%d %d\n", recovered.Sub(killed).Milliseconds(), led.Sub(killed).Milliseconds())
			f.Close()
		}
	}

	time.Sleep(3 * time.Second) // more of the stream on the survivors
	stop()
	wg.Wait()

	// Final reads of every key, after everything else.
	for k := 0; k < 6; k++ {
		in := kvIn{op: opGet, key: fmt.Sprintf("kv%d", k)}
		call := time.Since(origin).Nanoseconds()
		out, ok := vc.do(survivors[k%2], in)
		if !ok {
			t.Fatalf("final read of %s on %s failed", in.key, survivors[k%2].name)
		}
		history = append(history, porcupine.Operation{ClientId: 9, Input: in, Call: call, Output: out, Return: time.Since(origin).Nanoseconds()})
	}
	t.Logf("history: %d operations %v, %d acknowledged volumes", len(history), stats, len(acked))
	if stats["answered"] < 20 {
		t.Fatalf("too few answered operations to check: %v", stats)
	}
	res, info := porcupine.CheckOperationsVerbose(kvModel, history, 2*time.Minute)
	if res != porcupine.Ok {
		f, _ := os.CreateTemp("", "macro-cluster-history-*.html")
		porcupine.Visualize(kvModel, info, f)
		f.Close()
		t.Fatalf("the history is not linearizable (%s); visualization in %s", res, f.Name())
	}

	// No acknowledged write lost: every acknowledged volume is listed,
	// with the docker CLI, on each survivor.
	for _, s := range survivors {
		out := testenv.Docker(t, s.srv.Host(), "volume", "ls", "--format", "{{.Name}}")
		if out.ExitCode != 0 {
			t.Fatalf("docker volume ls on %s: %s", s.name, out.Combined())
		}
		have := map[string]bool{}
		for _, n := range strings.Fields(out.Stdout) {
			have[n] = true
		}
		var lost []string
		for _, n := range acked {
			if !have[n] {
				lost = append(lost, n)
			}
		}
		sort.Strings(lost)
		if len(lost) > 0 {
			t.Errorf("on %s, %d acknowledged volumes are lost: %v", s.name, len(lost), lost)
		}
	}

	clusterImagesAfter(t, survivors, imageID)

	// members rm of the dead member; then of a live one, which stops.
	if out, errOut, err := macroAdmin(t, survivors[0].srv.DataDir, "members", "rm", leader.name); err != nil || !strings.Contains(out, "member "+leader.name) {
		t.Fatalf("members rm %s: %v %s %s", leader.name, err, out, errOut)
	}
	if ms, err := membersLs(t, survivors[1].srv.DataDir); err != nil || len(ms) != 2 {
		t.Fatalf("members after rm: %+v %v", ms, err)
	}
	gone, stays := survivors[1], survivors[0] // probe talks to survivors[0]
	if out, errOut, err := macroAdmin(t, stays.srv.DataDir, "members", "rm", gone.name); err != nil {
		t.Fatalf("members rm %s: %v %s %s", gone.name, err, out, errOut)
	}
	waitFor(t, time.Minute, func() bool { return !gone.srv.Running() })
	if !strings.Contains(gone.srv.Log(), "removed from the cluster") {
		t.Errorf("the removed server's log does not say it was removed:\n%s", gone.srv.Log())
	}
	// The last member goes on alone (the removed one may have been the
	// raft leader: the other elects itself first).
	rmAt := time.Now()
	wrote := waitFor(t, time.Minute, func() bool {
		out, ok := probe.do(stays, kvIn{op: opCreate, key: "after-rm", value: "a"})
		return ok && out.value == "a"
	})
	t.Logf("write on %s %v after removing %s", stays.name, wrote.Sub(rmAt).Round(time.Millisecond), gone.name)
	if ms, err := membersLs(t, stays.srv.DataDir); err != nil || len(ms) != 1 || ms[0].name != stays.name {
		t.Fatalf("members at the end: %+v %v", ms, err)
	}
}

// waitFor polls cond until it holds and returns when; the test fails
// after timeout.
func waitFor(t *testing.T, timeout time.Duration, cond func() bool) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v", timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Now()
}

// TestClusterPartitionLeader cuts the control loop's leader off the LAN:
// it stops running the loop (its session cannot be kept alive), another
// server leads, the API keeps answering on the majority's side; healed, the
// old leader is a follower member again.
func TestClusterPartitionLeader(t *testing.T) {
	servers := startCluster(t, 3)
	var leader *clusterServer
	waitFor(t, time.Minute, func() bool {
		ms, _ := membersLs(t, servers[1].srv.DataDir)
		for _, s := range servers {
			if s.name == controlLeader(ms) {
				leader = s
			}
		}
		return leader != nil
	})
	var others []*clusterServer
	for _, s := range servers {
		if s != leader {
			others = append(others, s)
		}
	}
	cut := time.Now()
	leader.host.Partition(t)
	t.Logf("partitioned %s, the control loop's leader", leader.name)
	var newLeader string
	led := waitFor(t, 2*time.Minute, func() bool {
		ms, err := membersLs(t, others[0].srv.DataDir)
		newLeader = controlLeader(ms)
		return err == nil && newLeader != "" && newLeader != leader.name
	})
	t.Logf("%s leads the control loop %v after the partition", newLeader, led.Sub(cut).Round(time.Millisecond))
	waitFor(t, time.Minute, func() bool { return strings.Contains(leader.srv.Log(), "no longer leads") })
	// For the record: when the old leader stopped, and the new one began.
	for _, s := range servers {
		for _, line := range strings.Split(s.srv.Log(), "\n") {
			if strings.Contains(line, "leadership lost") || strings.Contains(line, "leads the cluster") {
				t.Logf("%s: %s", s.name, line)
			}
		}
	}
	probe := newVolumeClient(others)
	for _, s := range others {
		probe.clients[s].Timeout = time.Second
		waitFor(t, time.Minute, func() bool {
			out, ok := probe.do(s, kvIn{op: opCreate, key: "during-" + s.name, value: "d"})
			return ok && out.value == "d"
		})
	}
	leader.host.Heal(t)
	// Healed: the old leader reads what the majority wrote meanwhile.
	vc := newVolumeClient([]*clusterServer{leader})
	waitFor(t, time.Minute, func() bool {
		out, ok := vc.do(leader, kvIn{op: opGet, key: "during-" + others[0].name})
		return ok && out.value == "d"
	})
	// (Which server leads may have moved again meanwhile: one does.)
	waitFor(t, time.Minute, func() bool {
		ms, err := membersLs(t, leader.srv.DataDir)
		return err == nil && len(ms) == 3 && controlLeader(ms) != ""
	})

	// A joined server restarts with the same command line: it is a member
	// already, and comes back as one. An image it held was removed while
	// it was down: it drops its copy.
	again := others[len(others)-1]
	imageID, rmi := staleCopyBefore(t, servers, again) // clusterimages_test.go
	if err := again.srv.Stop(); err != nil {
		t.Fatal(err)
	}
	rmi()
	again.srv.Start()
	staleCopyAfter(t, again, imageID)
	if !strings.Contains(again.srv.Log(), "--join is ignored") {
		t.Errorf("the restarted server's log does not say it ignored --join")
	}
	if ms, err := membersLs(t, again.srv.DataDir); err != nil || len(ms) != 3 {
		t.Fatalf("members after a restart: %+v %v", ms, err)
	}
	vc = newVolumeClient([]*clusterServer{again})
	if out, ok := vc.do(again, kvIn{op: opGet, key: "during-" + others[0].name}); !ok || out.value != "d" {
		t.Fatalf("read on the restarted %s: %+v %v", again.name, out, ok)
	}
}
