package sandbox

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/macro-cloud/macro/runtime"
)

// Stats implements runtime.Runtime from the container's cgroup v1 files
// (for runsc: the cgroup of the whole sandbox).
func (r *Runtime) Stats(ctx context.Context, id string) (runtime.Stats, error) {
	dir, err := r.stateDir(id)
	if err != nil {
		return runtime.Stats{}, err
	}
	st, err := readShimState(dir)
	if err != nil {
		return runtime.Stats{}, fmt.Errorf("stats: %w", err)
	}
	if st.Exited {
		return runtime.Stats{}, runtime.ErrNotRunning
	}
	if len(st.Cgroups) == 0 {
		return runtime.Stats{}, errors.New("stats: container cgroups unknown")
	}
	return readStats(st.Cgroups)
}

func readStats(cg map[string]string) (runtime.Stats, error) {
	file := func(ctrl, name string) string {
		return filepath.Join(cgroupRoot, ctrl, cg[ctrl], name)
	}
	s := runtime.Stats{Read: time.Now().UTC()}
	var err error
	if s.CPUUsageNanos, err = readUint(file("cpuacct", "cpuacct.usage")); err != nil {
		return s, fmt.Errorf("stats: %w", err)
	}
	if s.MemoryUsage, err = readUint(file("memory", "memory.usage_in_bytes")); err != nil {
		return s, fmt.Errorf("stats: %w", err)
	}
	s.MemoryLimit, _ = readUint(file("memory", "memory.limit_in_bytes"))
	if total := hostMemory(); total > 0 && (s.MemoryLimit == 0 || s.MemoryLimit > total) {
		s.MemoryLimit = total // unlimited: Docker reports the host's memory
	}
	if ms, err := readKV(file("memory", "memory.stat")); err == nil {
		s.MemoryCache = ms["total_cache"]
		if s.MemoryCache == 0 {
			s.MemoryCache = ms["cache"]
		}
	}
	s.PidsCurrent, _ = readUint(file("pids", "pids.current"))
	s.PidsLimit, _ = readUint(file("pids", "pids.max")) // "max" reads as 0: no limit
	s.SystemNanos, _ = systemNanos()
	s.OnlineCPUs = onlineCPUs()
	return s, nil
}

func readUint(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}

func readKV(path string) (map[string]uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := map[string]uint64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err == nil {
			m[k] = n
		}
	}
	return m, sc.Err()
}

// clockTicks is USER_HZ, 100 on every Linux architecture macro runs on.
const clockTicks = 100

// systemNanos is the host's total CPU time from /proc/stat, as Docker
// computes system_cpu_usage.
func systemNanos() (uint64, error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 8 || fields[0] != "cpu" {
			continue
		}
		var ticks uint64
		for _, v := range fields[1:8] { // user nice system idle iowait irq softirq
			n, _ := strconv.ParseUint(v, 10, 64)
			ticks += n
		}
		return ticks * (1e9 / clockTicks), nil
	}
	return 0, errors.New("no cpu line in /proc/stat")
}

// onlineCPUs counts /sys/devices/system/cpu/online ("0-3,6").
func onlineCPUs() int {
	b, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		return 0
	}
	n := 0
	for part := range strings.SplitSeq(strings.TrimSpace(string(b)), ",") {
		lo, hi, found := strings.Cut(part, "-")
		a, err1 := strconv.Atoi(lo)
		if !found {
			if err1 == nil {
				n++
			}
			continue
		}
		b, err2 := strconv.Atoi(hi)
		if err1 == nil && err2 == nil && b >= a {
			n += b - a + 1
		}
	}
	return n
}

func hostMemory() uint64 {
	// "MemTotal:       16318480 kB"
	f, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(f), "\n") {
		if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			fs := strings.Fields(v)
			if len(fs) > 0 {
				n, _ := strconv.ParseUint(fs[0], 10, 64)
				return n * 1024
			}
		}
	}
	return 0
}
