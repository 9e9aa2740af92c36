// Command macrobench is the measuring half of bench/run.sh: it times
// container starts through macro's Docker API, through the docker CLI and
// through raw runc on the bundle macro generated, traces where the time of
// one start goes, and measures the idle footprint of a running server.
// bench/run.sh starts the server and cleans up; macrobench only measures.
//
//	macrobench latency   -socket S [-n 200]         API create+start, split
//	macrobench cli       -socket S [-n 100]         docker run -d wall time
//	macrobench runc      -socket S -data-dir D -work W [-n 200]
//	macrobench timeline  -socket S [-n 50]          ftrace breakdown of a start
//	macrobench footprint -socket S -pid P [-fill 100] [-idle 60s]
//	macrobench busybox   -dir D                     build the busybox archive
//	macrobench energy    -socket S -pid P [-n 20] [-idle 10m]   auto-suspend's CPU saving
//	macrobench wake      -socket S -ingress A -domain D [-n 30]  a wake's added latency
//	macrobench backend   -listen A                  a static page (bench/ingress.sh)
//	macrobench ingress   -listen A -backend B       macro's ingress proxy alone
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: macrobench latency|cli|runc|timeline|footprint|busybox|energy|wake|backend|ingress [flags]")
		os.Exit(2)
	}
	cmds := map[string]func([]string) error{
		"latency":   latencyMain,
		"cli":       cliMain,
		"runc":      runcMain,
		"timeline":  timelineMain,
		"footprint": footprintMain,
		"busybox":   busyboxMain,
		"backend":   backendMain,
		"energy":    energyMain,
		"wake":      wakeMain,
		"ingress":   ingressMain,
	}
	f, ok := cmds[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "macrobench: unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
	if err := f(os.Args[2:]); err != nil {
		fmt.Fprintf(os.Stderr, "macrobench %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}
