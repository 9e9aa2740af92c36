package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestClusterFiveMembers grows a cluster to five embedded etcd members
// (each server joining through the one before it, as a learner promoted
// once it caught up), then removes two live members while clients write
// through the other three without pause: no write fails, and the longest
// gap between two acknowledged writes is reported. Five servers cost CI
// time, so it runs for bench/members5.sh only (MACRO_MEMBERS5_REPORT
// names the file its figures go to).
func TestClusterFiveMembers(t *testing.T) {
	report := os.Getenv("MACRO_MEMBERS5_REPORT")
	if report == "" {
		t.Skip("bench/members5.sh runs it (MACRO_MEMBERS5_REPORT)")
	}
	start := time.Now()
	servers := startCluster(t, 5)
	var voting time.Duration
	waitFor(t, 2*time.Minute, func() bool {
		ms, err := membersLs(t, servers[0].srv.DataDir)
		if err != nil || len(ms) != 5 {
			return false
		}
		for _, m := range ms {
			if strings.Contains(m.role, "learner") || strings.HasPrefix(m.name, "(") {
				return false
			}
		}
		voting = time.Since(start)
		return true
	})
	t.Logf("five voting members %v after the first server started", voting.Round(time.Millisecond))

	// Writers on s1..s3, each a volume create every 20 ms.
	vc := newVolumeClient(servers[:3])
	ctx, stop := context.WithCancel(context.Background())
	var (
		mu      sync.Mutex
		lastAck = time.Now()
		maxGap  time.Duration
		acked   int
		failed  []string
		wg      sync.WaitGroup
	)
	for i, s := range servers[:3] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ctx.Err() == nil; n++ {
				name := fmt.Sprintf("m5-%d-%d", i, n)
				out, ok := vc.do(s, kvIn{op: opCreate, key: name, value: "x"})
				now := time.Now()
				mu.Lock()
				if ok && out.value == "x" {
					maxGap = max(maxGap, now.Sub(lastAck))
					lastAck = now
					acked++
				} else {
					failed = append(failed, s.name+":"+name)
				}
				mu.Unlock()
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	time.Sleep(2 * time.Second)
	mu.Lock()
	maxGap = 0 // the gap counted is the removals'
	mu.Unlock()
	rmStart := time.Now()
	for _, gone := range []*clusterServer{servers[4], servers[3]} {
		if out, errOut, err := macroAdmin(t, servers[0].srv.DataDir, "members", "rm", gone.name); err != nil {
			t.Fatalf("members rm %s: %v %s %s", gone.name, err, out, errOut)
		}
		waitFor(t, time.Minute, func() bool { return !gone.srv.Running() })
	}
	removed := time.Since(rmStart)
	time.Sleep(2 * time.Second)
	stop()
	wg.Wait()
	ms, err := membersLs(t, servers[1].srv.DataDir)
	if err != nil || len(ms) != 3 {
		t.Fatalf("members after removing two: %+v %v", ms, err)
	}
	t.Logf("two live members removed in %v; %d writes acknowledged, %d failed, longest gap between acknowledged writes %v",
		removed.Round(time.Millisecond), acked, len(failed), maxGap.Round(time.Millisecond))
	if len(failed) > 0 {
		t.Errorf("writes failed while members were removed: %v", failed)
	}
	f, err := os.OpenFile(report, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err == nil {
		fmt.Fprintf(f, "%d %d %d\n", voting.Milliseconds(), removed.Milliseconds(), maxGap.Milliseconds())
		f.Close()
	}
}
