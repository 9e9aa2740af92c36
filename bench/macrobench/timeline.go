package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

const tracefs = "/sys/kernel/tracing"

// timelineMain traces where the time of `docker run -d` goes without
// touching the server: in a private ftrace instance (CLOCK_MONOTONIC) it
// records every exec and fork of the server's process tree and every
// fsync/fdatasync on the machine, while markers written to the same buffer
// stamp the API requests. Each run is then a sequence of events (request
// sent, shim exec'd, runc create exec'd, ..., container exec'd, answer);
// the table gives the median gap before each event and the fsyncs that
// began in that gap.
func timelineMain(args []string) error {
	fs := flag.NewFlagSet("timeline", flag.ExitOnError)
	sock := fs.String("socket", "", "Docker API unix socket")
	server := fs.Int("pid", 0, "pid of macro server")
	n := fs.Int("n", 50, "traced runs")
	img := fs.String("image", "busybox", "image")
	fs.Parse(args)
	if *server == 0 {
		return fmt.Errorf("-pid is required")
	}
	a := newAPI(*sock)
	if err := a.removeAll(); err != nil {
		return err
	}
	inst := filepath.Join(tracefs, "instances", fmt.Sprintf("macrobench-%d", os.Getpid()))
	if err := os.Mkdir(inst, 0o755); err != nil {
		return fmt.Errorf("ftrace instance: %w", err)
	}
	defer os.Remove(inst)
	w := func(file, v string) error { return os.WriteFile(filepath.Join(inst, file), []byte(v), 0) }
	for _, kv := range [][2]string{{"tracing_on", "0"}, {"trace_clock", "mono"}, {"buffer_size_kb", "16384"}} {
		if err := w(kv[0], kv[1]); err != nil {
			return fmt.Errorf("ftrace %s: %w", kv[0], err)
		}
	}
	events := []string{"sched/sched_process_exec", "sched/sched_process_fork", "sched/sched_process_exit",
		"syscalls/sys_enter_fdatasync", "syscalls/sys_exit_fdatasync",
		"syscalls/sys_enter_fsync", "syscalls/sys_exit_fsync"}
	for _, e := range events {
		if err := w("events/"+e+"/enable", "1"); err != nil {
			return fmt.Errorf("ftrace %s: %w", e, err)
		}
		defer w("events/"+e+"/enable", "0")
	}
	marker, err := os.OpenFile(filepath.Join(inst, "trace_marker"), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer marker.Close()
	mark := func(format string, args ...any) { fmt.Fprintf(marker, "mb "+format, args...) }

	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", *server))
	if err := w("tracing_on", "1"); err != nil {
		return err
	}
	for i := 0; i < *n; i++ {
		mark("%d create", i)
		id, err := a.create(*img, "sleep", "600")
		if err != nil {
			return err
		}
		mark("%d start", i)
		if err := a.start(id); err != nil {
			return err
		}
		mark("%d done", i)
		if (i+1)%20 == 0 {
			if err := a.removeAll(); err != nil {
				return err
			}
		}
	}
	w("tracing_on", "0")
	defer a.removeAll()

	var serverTasks []int
	for _, t := range tasks {
		if tid, err := strconv.Atoi(t.Name()); err == nil {
			serverTasks = append(serverTasks, tid)
		}
	}
	runs, err := parseTrace(filepath.Join(inst, "trace"), serverTasks)
	if err != nil {
		return err
	}
	return printTimeline(runs)
}

type traceEvent struct {
	at    time.Duration // CLOCK_MONOTONIC
	label string
}

type fsyncSpan struct {
	at, d time.Duration
	comm  string
}

type tracedRun struct {
	events []traceEvent
	fsyncs []fsyncSpan
}

var (
	lineRE   = regexp.MustCompile(`^\s*(.+)-(\d+)\s+\[\d+\]\s+\S+\s+(\d+)\.(\d+): (\w+)(.*)$`)
	execRE   = regexp.MustCompile(`filename=(\S+) pid=(\d+)`)
	forkRE   = regexp.MustCompile(`pid=(\d+) child_comm=.* child_pid=(\d+)`)
	exitRE   = regexp.MustCompile(` pid=(\d+) `)
	markerRE = regexp.MustCompile(`^mb (\d+) (\w+)`)
)

// parseTrace reads the ftrace text output and cuts it into runs. Exec
// events count only for the server's process tree (other work on the
// machine is ignored); fsyncs count for every process, labelled by command.
func parseTrace(path string, serverTasks []int) ([]tracedRun, error) {
	// prog names the program each task of the server's tree runs;
	// leader marks the tasks that exec'd (the main thread of a program).
	prog, leader := map[int]string{}, map[int]bool{}
	for _, t := range serverTasks {
		prog[t] = "server"
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var runs []tracedRun
	cur := -1
	open := map[int]time.Duration{} // tid -> fsync entry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := lineRE.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		comm, tid := m[1], atoi(m[2])
		sec, frac := atoi(m[3]), m[4]
		for len(frac) < 9 {
			frac += "0"
		}
		at := time.Duration(sec)*time.Second + time.Duration(atoi(frac[:9]))
		ev, rest := m[5], m[6]
		body := strings.TrimPrefix(rest, ": ")
		switch ev {
		case "tracing_mark_write":
			mm := markerRE.FindStringSubmatch(body)
			if mm == nil {
				continue
			}
			i := atoi(mm[1])
			if mm[2] == "create" {
				for len(runs) <= i {
					runs = append(runs, tracedRun{})
				}
				cur = i
			}
			if cur >= 0 {
				runs[cur].events = append(runs[cur].events, traceEvent{at, "API " + mm[2]})
			}
			if mm[2] == "done" {
				cur = -1
			}
		case "sched_process_fork":
			if fm := forkRE.FindStringSubmatch(body); fm != nil {
				if p, ok := prog[atoi(fm[1])]; ok {
					prog[atoi(fm[2])] = p
				}
			}
		case "sched_process_exec":
			em := execRE.FindStringSubmatch(body)
			if em == nil {
				continue
			}
			pid := atoi(em[2])
			parent, ok := prog[pid]
			if !ok {
				continue
			}
			name := execName(em[1])
			prog[pid] = name
			leader[pid] = true
			if cur >= 0 {
				runs[cur].events = append(runs[cur].events, traceEvent{at, "exec " + name + " <- " + parent})
			}
		case "sched_process_exit":
			xm := exitRE.FindStringSubmatch(body)
			if xm == nil {
				continue
			}
			pid := atoi(xm[1])
			if leader[pid] && cur >= 0 {
				runs[cur].events = append(runs[cur].events, traceEvent{at, "exit " + prog[pid]})
			}
			delete(leader, pid)
			delete(prog, pid)
		case "sys_fdatasync", "sys_fsync":
			if strings.Contains(rest, "->") {
				if t0, ok := open[tid]; ok {
					delete(open, tid)
					if cur >= 0 {
						runs[cur].fsyncs = append(runs[cur].fsyncs, fsyncSpan{t0, at - t0, comm})
					}
				}
			} else {
				open[tid] = at
			}
		}
	}
	return runs, sc.Err()
}

// execName names an exec'd file: runc's re-exec of itself shows as
// /proc/self/exe, the container's command by its path.
func execName(fn string) string {
	switch {
	case fn == "/proc/self/exe":
		return "runc init"
	case fn == "/dev/fd/6" || strings.HasPrefix(fn, "/dev/fd/") || strings.HasPrefix(fn, "/proc/self/fd/"):
		return "runc (memfd copy)"
	case strings.HasSuffix(fn, "/macro"):
		return "shim"
	}
	return filepath.Base(fn)
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

func printTimeline(runs []tracedRun) error {
	// The sequence of labels most runs share.
	count := map[string]int{}
	seqOf := func(r tracedRun) string {
		var ls []string
		for _, e := range r.events {
			ls = append(ls, e.label)
		}
		return strings.Join(ls, "|")
	}
	for _, r := range runs {
		count[seqOf(r)]++
	}
	var best string
	for s, c := range count {
		if c > count[best] || c == count[best] && s < best {
			best = s
		}
	}
	if best == "" {
		return fmt.Errorf("no traced runs")
	}
	labels := strings.Split(best, "|")
	var same []tracedRun
	for _, r := range runs {
		if seqOf(r) == best {
			same = append(same, r)
		}
	}
	gaps := make([][]time.Duration, len(labels))
	fsyncN := make([]int, len(labels))
	fsyncD := make([][]time.Duration, len(labels))
	fsyncComm := make([]map[string]int, len(labels))
	var total []time.Duration
	for i := range labels {
		fsyncComm[i] = map[string]int{}
	}
	for _, r := range same {
		total = append(total, r.events[len(r.events)-1].at-r.events[0].at)
		for i := 1; i < len(r.events); i++ {
			from, to := r.events[i-1].at, r.events[i].at
			gaps[i] = append(gaps[i], to-from)
			var c int
			var d time.Duration
			for _, fs := range r.fsyncs {
				if fs.at >= from && fs.at < to {
					c++
					d += fs.d
					fsyncComm[i][fs.comm]++
				}
			}
			fsyncN[i] += c
			fsyncD[i] = append(fsyncD[i], d)
		}
	}
	fmt.Printf("\ntimeline of docker run -d (ftrace, %d of %d runs share this sequence of events)\n", len(same), len(runs))
	fmt.Printf("  %-40s %8s %8s %8s %9s  %s\n", "event (gap = time since the previous one)", "p50 ms", "p90 ms", "mean ms", "fsyncs", "fsync ms (mean; fsyncs per run by command)")
	for i, l := range labels {
		if i == 0 {
			fmt.Printf("  %-40s\n", l)
			continue
		}
		g, fd := summarize(gaps[i]), summarize(fsyncD[i])
		perRun := func(k int) float64 { return float64(k) / float64(len(same)) }
		var who []string
		for c, k := range fsyncComm[i] {
			who = append(who, fmt.Sprintf("%s:%.1f", c, perRun(k)))
		}
		sort.Strings(who)
		fmt.Printf("  %-40s %8s %8s %8s %9.1f  %s %s\n", l, ms(g.p50), ms(g.p90), ms(g.avg), perRun(fsyncN[i]), ms(fd.avg), strings.Join(who, " "))
	}
	t := summarize(total)
	fmt.Printf("  %-40s %8s %8s %8s\n", "total (traced)", ms(t.p50), ms(t.p90), ms(t.avg))
	return nil
}
