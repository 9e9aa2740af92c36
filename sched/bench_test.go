package sched

import (
	"flag"
	"fmt"
	"math/rand"
	"syscall"
	"testing"
	"time"

	"github.com/macro-cloud/macro/types"
)

// c1m selects the full benchmark of the issue: a million pods onto 5,000
// nodes in one Place (bench/sched.sh passes it). It needs about 2 GiB of
// memory, so plain `go test -bench .` leaves it out.
var c1m = flag.Bool("c1m", false, "run BenchmarkPlaceC1M: 1,000,000 pods onto 5,000 nodes")

// workload makes a deterministic cluster for the benchmarks: nodes of
// 128 GiB and 64 CPUs (half also 16 GiB and 8 CPUs more) in three zones,
// one in ten arm64, half offering gvisor beside sandbox, one in a hundred
// not ready; pods in compose services of ten replicas (and one in ten
// alone), most of them small, some with kr.res.mem, kr.zone, a CPU
// request, an arm64 image or gvisor. It is sized to fill about four
// fifths of the cluster's memory and CPU, so the last pods meet full
// nodes and some are explained.
func workload(pods, nodes int) ([]types.Pod, []types.Node) {
	rng := rand.New(rand.NewSource(1))
	zones := []string{"eu-1", "eu-2", "eu-3"}
	ns := make([]types.Node, nodes)
	for i := range ns {
		n := types.Node{
			Name: fmt.Sprintf("node-%05d", i), Arch: "amd64", Ready: i%100 != 99,
			CPUs: 64, MemoryBytes: 128 * gib, Runtimes: []string{"sandbox"},
			Labels: map[string]string{"zone": zones[i%3]},
		}
		if i%2 == 1 {
			n.CPUs += 8
			n.MemoryBytes += 16 * gib
			n.Runtimes = append(n.Runtimes, "gvisor")
		}
		if i%10 == 7 {
			n.Arch = "arm64"
		}
		ns[i] = n
	}
	// Scale requests to the cluster: the full benchmark's mix is about
	// 0.5 GiB and 0.25 CPUs a pod, for 200 pods a node.
	scale := float64(nodes) * 200 / float64(pods)
	ps := make([]types.Pod, 0, pods)
	for len(ps) < pods {
		spec := types.PodSpec{Runtime: "sandbox", Labels: map[string]string{}}
		switch x := rng.Intn(100); {
		case x < 60:
		case x < 85:
			spec.Resources.MemoryBytes = 512 * mib
		case x < 95:
			spec.Resources.MemoryBytes = gib
		case x < 99:
			spec.Labels[MemLabel] = "2G"
		default:
			spec.Resources.MemoryBytes = 4 * gib
		}
		spec.Resources.MemoryBytes = int64(float64(spec.Resources.MemoryBytes) * scale)
		switch x := rng.Intn(100); {
		case x < 50:
		case x < 80:
			spec.Resources.NanoCPUs = int64(25e7 * scale)
		case x < 95:
			spec.Resources.NanoCPUs = int64(5e8 * scale)
		default:
			spec.Resources.NanoCPUs = int64(2e9 * scale)
		}
		if rng.Intn(5) == 0 {
			spec.Labels[ZoneLabel] = zones[rng.Intn(3)]
		}
		if rng.Intn(20) == 0 {
			spec.Arch = "arm64"
		}
		if rng.Intn(7) == 0 {
			spec.Runtime = "gvisor"
		}
		replicas := 1
		tenant := fmt.Sprintf("t%d", rng.Intn(1000))
		if rng.Intn(10) > 0 {
			replicas = 10
			spec.Labels[ServiceLabel] = fmt.Sprintf("svc%d", len(ps))
		}
		for r := 0; r < replicas && len(ps) < pods; r++ {
			ps = append(ps, types.Pod{ID: fmt.Sprintf("%064x", len(ps)), Tenant: tenant, Namespace: "default", Spec: spec})
		}
	}
	return ps, ns
}

func benchPlace(b *testing.B, pods, nodes int) {
	pending, ns := workload(pods, nodes)
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cpuTime()
	var plan Plan
	for b.Loop() {
		plan = Place(pending, ns, nil)
	}
	report(b, pods, cpu)
	b.ReportMetric(float64(len(plan.Unschedulable)), "unschedulable")
}

// report gives the rate of placements by the clock and by the CPU time
// the process used (this machine is shared: the clock counts the time
// other programs had the cores too; the CPU time includes the garbage
// collector's other threads).
func report(b *testing.B, pods int, cpuBefore time.Duration) {
	n := float64(pods) * float64(b.N)
	b.ReportMetric(n/b.Elapsed().Seconds(), "placements/s")
	b.ReportMetric(n/(cpuTime()-cpuBefore).Seconds(), "placements/cpu-s")
}

// cpuTime is the user and system CPU time of the process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkPlace1k places 1,000 pods onto 100 nodes in one round.
func BenchmarkPlace1k(b *testing.B) { benchPlace(b, 1_000, 100) }

// BenchmarkPlace100k places 100,000 pods onto 1,000 nodes in one round.
func BenchmarkPlace100k(b *testing.B) { benchPlace(b, 100_000, 1_000) }

// BenchmarkPlaceC1M places 1,000,000 pods onto 5,000 nodes in one round
// (Nomad's C1M: ~3,750 placements/s); run it with -c1m.
func BenchmarkPlaceC1M(b *testing.B) {
	if !*c1m {
		b.Skip("run with -c1m")
	}
	benchPlace(b, 1_000_000, 5_000)
}

// BenchmarkPlaceRound is one round of the control loop at the scale of
// the issue: 1,000 new pods onto 5,000 nodes that hold 999,000 placed
// pods, which Place reads every round. Run it with -c1m.
func BenchmarkPlaceRound(b *testing.B) {
	if !*c1m {
		b.Skip("run with -c1m")
	}
	pods, ns := workload(1_000_000, 5_000)
	first := Place(pods[:999_000], ns, nil)
	var placed []types.Pod
	for _, p := range pods[:999_000] {
		if n := first.Assign[p.ID]; n != "" {
			p.Node = n
			placed = append(placed, p)
		}
	}
	pending := pods[999_000:]
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cpuTime()
	for b.Loop() {
		Place(pending, ns, placed)
	}
	report(b, len(pending), cpu)
}
