package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// latencyMain times `docker run -d IMAGE sleep 600` as the docker CLI makes
// it, POST /containers/create then POST /containers/{id}/start, from the
// first byte sent to the answer of start (which macro gives once the agent
// reports the container running). Containers are removed in batches, off
// the clock, so that every start sees a nearly empty node.
func latencyMain(args []string) error {
	fs := flag.NewFlagSet("latency", flag.ExitOnError)
	sock := fs.String("socket", "", "Docker API unix socket")
	n := fs.Int("n", 200, "timed runs")
	warm := fs.Int("warmup", 10, "untimed runs first")
	batch := fs.Int("batch", 20, "remove the containers after this many runs")
	img := fs.String("image", "busybox", "image")
	server := fs.Int("pid", 0, "pid of macro server, to report its CPU time per run")
	fs.Parse(args)
	a := newAPI(*sock)
	if err := a.removeAll(); err != nil {
		return err
	}
	var create, start, total, running []time.Duration
	nlate := 0
	// CPU seconds over the timed runs: the server itself, the processes it
	// waited for (runc delete), the new shim itself and the processes it
	// waited for (runc create, runc start), every process on the machine.
	var serverCPU, serverKids, shimCPU, shimKids, initCPU, machineCPU float64
	shims := map[int]bool{}
	for _, p := range shimPids(*server) {
		shims[p] = true
	}
	live := 0
	for i := 0; i < *warm+*n; i++ {
		s0, _ := procCPU(*server)
		m0 := machineBusy()
		t0 := time.Now()
		id, err := a.create(*img, "sleep", "600")
		if err != nil {
			return err
		}
		t1 := time.Now()
		if err := a.start(id); err != nil {
			return err
		}
		t2 := time.Now()
		s1, _ := procCPU(*server)
		m1 := machineBusy()
		t3, late, pid, err := a.ranAt(id, "sleep", t2)
		if err != nil {
			return err
		}
		ic, _ := procCPU(pid)
		var newShim cpuTimes
		for _, p := range shimPids(*server) {
			if !shims[p] {
				shims[p] = true
				newShim, _ = procCPU(p)
			}
		}
		if i >= *warm {
			serverCPU += s1.self - s0.self
			serverKids += s1.children - s0.children
			shimCPU += newShim.self
			shimKids += newShim.children
			initCPU += ic.self
			machineCPU += m1 - m0
			create = append(create, t1.Sub(t0))
			start = append(start, t2.Sub(t1))
			total = append(total, t2.Sub(t0))
			running = append(running, t3.Sub(t0))
			if late {
				nlate++
			}
		}
		if live++; live == *batch {
			if err := a.removeAll(); err != nil {
				return err
			}
			live = 0
		}
	}
	printTable(fmt.Sprintf("docker run -d through macro's API (%d warm-up runs not counted)", *warm), []row{
		{"create", create}, {"start", start}, {"create+start (until start answers)", total},
		{"create+start (until the command runs)", running},
	})
	fmt.Printf("  start answered before the container's command had exec'd in %d of %d runs\n", nlate, *n)
	if *server != 0 {
		per := func(s float64) string { return fmt.Sprintf("%.1f ms", 1000*s/float64(*n)) }
		fmt.Printf("  CPU per run: macro server %s + the runc it waits for (delete) %s; shim %s + its runc create/start %s;\n",
			per(serverCPU), per(serverKids), per(shimCPU), per(shimKids))
		fmt.Printf("               the container's process (runc init before it exec'd) %s;\n", per(initCPU))
		fmt.Printf("               whole machine (every process and the kernel, /proc/stat) %s\n", per(machineCPU))
	}
	return a.removeAll()
}

// cliMain times the real docker CLI, `docker run -d IMAGE sleep 600`, wall
// clock: what a user waits for, CLI start-up included. `docker version`
// (one API call) beside it shows what the CLI itself costs.
func cliMain(args []string) error {
	fs := flag.NewFlagSet("cli", flag.ExitOnError)
	sock := fs.String("socket", "", "Docker API unix socket")
	n := fs.Int("n", 100, "timed runs")
	warm := fs.Int("warmup", 5, "untimed runs first")
	batch := fs.Int("batch", 20, "remove the containers after this many runs")
	img := fs.String("image", "busybox", "image")
	docker := fs.String("docker", "docker", "docker CLI")
	fs.Parse(args)
	a := newAPI(*sock)
	if err := a.removeAll(); err != nil {
		return err
	}
	env := append(os.Environ(), "DOCKER_HOST=unix://"+*sock)
	dockerCmd := func(args ...string) (string, time.Duration, error) {
		cmd := exec.Command(*docker, args...)
		cmd.Env = env
		t0 := time.Now()
		out, err := cmd.Output()
		d := time.Since(t0)
		if err != nil {
			if ee, ok := err.(*exec.ExitError); ok {
				err = fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, ee.Stderr)
			}
		}
		return strings.TrimSpace(string(out)), d, err
	}
	var run, version []time.Duration
	nlate, running := 0, 0
	for i := 0; i < *warm+*n; i++ {
		_, dv, err := dockerCmd("version", "--format", "{{.Server.Version}}")
		if err != nil {
			return err
		}
		id, d, err := dockerCmd("run", "-d", *img, "sleep", "600")
		if err != nil {
			return err
		}
		_, late, _, err := a.ranAt(id, "sleep", time.Now())
		if err != nil {
			return err
		}
		if i >= *warm {
			if late {
				nlate++
			}
			run = append(run, d)
			version = append(version, dv)
		}
		if running++; running == *batch {
			if err := a.removeAll(); err != nil {
				return err
			}
			running = 0
		}
	}
	printTable("docker CLI wall time (process start to exit)", []row{
		{"docker run -d busybox sleep 600", run},
		{"docker version (CLI floor: 1 API call)", version},
	})
	fmt.Printf("  docker run exited before the container's command had exec'd in %d of %d runs\n", nlate, *n)
	return a.removeAll()
}
