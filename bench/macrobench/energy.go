package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// energyMain is the energy proxy of auto-suspend: n idle web pods for a
// while, once as they are and once with kr.suspend, and the CPU time they
// used from cgroup accounting (this machine has no RAPL). An idle pod here
// is busybox httpd plus a timer that wakes ten times a second, as the
// housekeeping of a runtime (GC, timers, health loops) does in real apps;
// a bare httpd would use no CPU either way.
func energyMain(args []string) error {
	fs := flag.NewFlagSet("energy", flag.ExitOnError)
	sock := fs.String("socket", "", "Docker API unix socket")
	pid := fs.Int("pid", 0, "pid of the macro server (its own CPU is counted too)")
	n := fs.Int("n", 20, "pods")
	idle := fs.Duration("idle", 10*time.Minute, "how long the pods stay idle in each round")
	after := fs.String("suspend", "30s", "the kr.suspend rule of the second round")
	img := fs.String("image", "busybox", "image")
	fs.Parse(args)
	a := newAPI(*sock)
	cmd := []string{"sh", "-c", "httpd -p 8080; while true; do sleep 0.1; done"}

	round := func(labels map[string]string) (pods, server float64, suspended int, err error) {
		var ids []string
		defer func() {
			for _, id := range ids {
				a.remove(id)
			}
		}()
		for i := 0; i < *n; i++ {
			var cr struct{ Id string }
			if err := a.call("POST", "/containers/create", map[string]any{"Image": *img, "Cmd": cmd, "Labels": labels}, &cr); err != nil {
				return 0, 0, 0, err
			}
			ids = append(ids, cr.Id)
			if err := a.start(cr.Id); err != nil {
				return 0, 0, 0, err
			}
		}
		pods0, server0 := podsCPU(ids), serverCPU(*pid)
		time.Sleep(*idle)
		pods, server = podsCPU(ids)-pods0, serverCPU(*pid)-server0
		for _, id := range ids {
			var c struct {
				State struct{ Suspend *struct{ Suspended bool } }
			}
			if a.call("GET", "/containers/"+id+"/json", nil, &c) == nil && c.State.Suspend != nil && c.State.Suspend.Suspended {
				suspended++
			}
		}
		return pods, server, suspended, nil
	}
	fmt.Printf("\nauto-suspend energy proxy: %d idle web pods for %s each round, CPU seconds from cgroup cpuacct\n", *n, *idle)
	p1, s1, _, err := round(nil)
	if err != nil {
		return err
	}
	p2, s2, sus, err := round(map[string]string{"kr.suspend": *after})
	if err != nil {
		return err
	}
	fmt.Printf("  %-28s %10s %12s %10s\n", "round", "pods CPU s", "server CPU s", "suspended")
	fmt.Printf("  %-28s %10.2f %12.2f %10s\n", "always running", p1, s1, "-")
	fmt.Printf("  %-28s %10.2f %12.2f %7d/%d\n", "kr.suspend="+*after, p2, s2, sus, *n)
	if p2+s2 > 0 {
		fmt.Printf("  ratio (running / suspended, pods and server): %.1fx\n", (p1+s1)/(p2+s2))
	}
	return nil
}

// podsCPU sums the CPU time, in seconds, of the pods' cgroups.
func podsCPU(ids []string) float64 {
	var s float64
	for _, id := range ids {
		b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/cpuacct/macro", id, "cpuacct.usage"))
		if err != nil {
			continue
		}
		ns, _ := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
		s += ns / 1e9
	}
	return s
}

func serverCPU(pid int) float64 {
	if pid == 0 {
		return 0
	}
	c, err := procCPU(pid)
	if err != nil {
		return 0
	}
	return c.self
}
