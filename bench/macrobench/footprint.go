package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// footprintMain starts -fill containers running `sleep 100000` (timing
// their starts as the node fills up), lets the server settle, then measures
// over -idle: the RSS of the macro server, of its shims (total and per
// shim, RSS and the private part no other process shares) and the CPU
// time the server and the shims used.
func footprintMain(args []string) error {
	fs := flag.NewFlagSet("footprint", flag.ExitOnError)
	sock := fs.String("socket", "", "Docker API unix socket")
	pid := fs.Int("pid", 0, "pid of macro server")
	fill := fs.Int("fill", 0, "containers to start first (sleep 100000)")
	settle := fs.Duration("settle", 15*time.Second, "wait before measuring")
	idle := fs.Duration("idle", 60*time.Second, "idle window for CPU")
	img := fs.String("image", "busybox", "image")
	fs.Parse(args)
	if *pid == 0 {
		return fmt.Errorf("-pid is required")
	}
	a := newAPI(*sock)
	have, err := a.ids()
	if err != nil {
		return err
	}
	var starts []time.Duration
	for i := len(have); i < *fill; i++ {
		t0 := time.Now()
		id, err := a.create(*img, "sleep", "100000")
		if err != nil {
			return err
		}
		if err := a.start(id); err != nil {
			return err
		}
		t1, _, _, err := a.ranAt(id, "sleep", time.Now())
		if err != nil {
			return err
		}
		starts = append(starts, t1.Sub(t0))
	}
	if len(starts) > 0 {
		q := len(starts) / 4
		printTable(fmt.Sprintf("create+start (until the command runs) while filling the node to %d running containers", *fill), []row{
			{"all", starts},
			{fmt.Sprintf("first quarter (0-%d running)", q-1), starts[:q]},
			{fmt.Sprintf("last quarter (%d-%d running)", len(starts)-q, len(starts)-1), starts[len(starts)-q:]},
		})
	}
	ids, err := a.ids()
	if err != nil {
		return err
	}
	nrun := 0
	for _, id := range ids {
		if _, err := a.checkRunning(id, "sleep"); err == nil {
			nrun++
		}
	}
	time.Sleep(*settle)

	shims := func() []int { return shimPids(*pid) }
	cpu0, err := procCPU(*pid)
	if err != nil {
		return err
	}
	shimCPU0 := sumCPU(shims())
	t0 := time.Now()
	time.Sleep(*idle)
	cpu1, err := procCPU(*pid)
	if err != nil {
		return err
	}
	wall := time.Since(t0).Seconds()
	shimList := shims()
	shimCPU1 := sumCPU(shimList)

	mem, err := procMem(*pid)
	if err != nil {
		return err
	}
	var shimTotal memInfo
	for _, p := range shimList {
		m, err := procMem(p)
		if err != nil {
			continue
		}
		shimTotal.rss += m.rss
		shimTotal.anon += m.anon
		shimTotal.pss += m.pss
		shimTotal.private += m.private
	}
	fmt.Printf("\nidle footprint with %d running containers (settled %v, CPU over %.0f s)\n", nrun, *settle, wall)
	fmt.Printf("  macro server pid %d: RSS %s (anon %s, file %s), PSS %s, private %s, threads %d\n",
		*pid, mib(mem.rss), mib(mem.anon), mib(mem.rss-mem.anon), mib(mem.pss), mib(mem.private), mem.threads)
	fmt.Printf("  macro server CPU: %.2f%% of one core (utime+stime %+.2f s; waited-for children %+.2f s)\n",
		100*(cpu1.self-cpu0.self)/wall, cpu1.self-cpu0.self, cpu1.children-cpu0.children)
	fmt.Printf("  shims: %d, RSS total %s, PSS total %s, private total %s\n",
		len(shimList), mib(shimTotal.rss), mib(shimTotal.pss), mib(shimTotal.private))
	if n := int64(len(shimList)); n > 0 {
		fmt.Printf("  per shim: RSS %s, PSS %s, private %s\n", mib(shimTotal.rss/n), mib(shimTotal.pss/n), mib(shimTotal.private/n))
		fmt.Printf("  shims CPU: %.3f%% of one core in total\n", 100*(shimCPU1-shimCPU0)/wall)
	}
	return nil
}

// shimPids returns the children of the server that run `macro shim`.
func shimPids(server int) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		argv := bytes.Split(cmd, []byte{0})
		if len(argv) < 2 || string(argv[1]) != "shim" {
			continue
		}
		if ppid, err := procPPid(pid); err == nil && ppid == server {
			pids = append(pids, pid)
		}
	}
	return pids
}

type cpuTimes struct{ self, children float64 }

// clkTck is USER_HZ, 100 on every Linux architecture Go runs on.
const clkTck = 100

// statFields returns the fields of /proc/pid/stat after the command name
// (fields 3 and on, so field N is at index N-3).
func statFields(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return nil, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	return f, nil
}

func procCPU(pid int) (cpuTimes, error) {
	f, err := statFields(pid)
	if err != nil {
		return cpuTimes{}, err
	}
	v := func(n int) float64 { x, _ := strconv.ParseFloat(f[n-3], 64); return x / clkTck }
	return cpuTimes{self: v(14) + v(15), children: v(16) + v(17)}, nil
}

func procPPid(pid int) (int, error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(f[4-3])
}

func sumCPU(pids []int) float64 {
	var s float64
	for _, p := range pids {
		if c, err := procCPU(p); err == nil {
			s += c.self
		}
	}
	return s
}

type memInfo struct {
	rss, anon, pss, private int64 // bytes
	threads                 int
}

// procMem reads VmRSS, RssAnon and Threads from /proc/pid/status and Pss
// and Private_* from /proc/pid/smaps_rollup.
func procMem(pid int) (memInfo, error) {
	var m memInfo
	kb := func(line string) int64 {
		f := strings.Fields(line)
		if len(f) < 2 {
			return 0
		}
		x, _ := strconv.ParseInt(f[1], 10, 64)
		return x << 10
	}
	for _, file := range []string{"status", "smaps_rollup"} {
		fh, err := os.Open(fmt.Sprintf("/proc/%d/%s", pid, file))
		if err != nil {
			return m, err
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			l := sc.Text()
			switch {
			case strings.HasPrefix(l, "VmRSS:"):
				m.rss = kb(l)
			case strings.HasPrefix(l, "RssAnon:"):
				m.anon = kb(l)
			case strings.HasPrefix(l, "Threads:"):
				m.threads, _ = strconv.Atoi(strings.Fields(l)[1])
			case strings.HasPrefix(l, "Pss:"):
				m.pss = kb(l)
			case strings.HasPrefix(l, "Private_Clean:"), strings.HasPrefix(l, "Private_Dirty:"):
				m.private += kb(l)
			}
		}
		fh.Close()
	}
	return m, nil
}

// machineBusy returns the CPU time, in seconds, all cores spent outside
// idle and iowait since boot (the first line of /proc/stat).
func machineBusy() float64 {
	b, _ := os.ReadFile("/proc/stat")
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var busy float64
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		if i >= 7 { // guest time is already counted in user
			break
		}
		x, _ := strconv.ParseFloat(v, 64)
		busy += x
	}
	return busy / clkTck
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
