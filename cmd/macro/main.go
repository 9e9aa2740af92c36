// Command macro is the cloud's server, node agent and shim. This package is
// the only one that imports everything: it reads flags and wires the store,
// the control loops, the agent, the runtimes, the image store and the APIs
// together. `macro server` runs all of them on one machine (the embedded
// default); `macro shim` is the small process that holds a container's
// stdio while macro itself restarts.
package main

import (
	"fmt"
	"os"

	"github.com/macro-cloud/macro/net/router"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	switch os.Args[1] {
	case "server":
		os.Exit(serverMain(os.Args[2:]))
	case "agent":
		os.Exit(agentMain(os.Args[2:]))
	case "admin":
		os.Exit(adminMain(os.Args[2:]))
	case "shim":
		os.Exit(shimMain(os.Args[2:]))
	case "volfs-shim":
		os.Exit(volfsShimMain(os.Args[2:]))
	case router.MeshDeviceCommand: // the mesh's userspace WireGuard device (net/router/meshdev.go)
		os.Exit(router.MeshDeviceMain(os.Args[2:]))
	case "version", "--version", "-v":
		fmt.Println("macro", version)
	case "help", "--help", "-h":
		usage()
	default:
		fmt.Fprintf(os.Stderr, "macro: unknown command %q\n\n", os.Args[1])
		usage()
		os.Exit(2)
	}
}

func usage() {
	fmt.Fprint(os.Stderr, `macro: a cloud on your own machines that looks like Docker from the outside

Usage:
  macro server [flags]   run the API, the embedded state store, the scheduler and a node agent
  macro agent [flags]    make this machine a node of a cluster (macro agent --help)
  macro admin ...        manage tenants and access tokens (macro admin --help)
  macro version          print the version

Run 'macro server --help' for the server's flags.
`)
}
