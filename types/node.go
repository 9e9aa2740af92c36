package types

import "time"

// Node is a machine that runs pods: registered by its agent, kept alive by
// heartbeats on a lease.
type Node struct {
	Name        string            `json:"name"`
	Arch        string            `json:"arch"` // GOARCH: amd64, arm64
	OS          string            `json:"os"`
	CPUs        int               `json:"cpus"`
	MemoryBytes int64             `json:"memoryBytes"`
	Labels      map[string]string `json:"labels,omitempty"`
	Runtimes    []string          `json:"runtimes"`
	Kernel      string            `json:"kernel,omitempty"`
	Address     string            `json:"address,omitempty"`
	// MeshKey is the node's WireGuard public key (base64) and
	// MeshEndpoint the address:port other nodes reach it on; empty on a
	// node without the mesh.
	MeshKey      string `json:"meshKey,omitempty"`
	MeshEndpoint string `json:"meshEndpoint,omitempty"`
	// MeshNextKey is the public key a rotating node is about to use:
	// the other nodes stand by for it (make before break).
	MeshNextKey string `json:"meshNextKey,omitempty"`
	// HostAddrs are the node's own addresses (not loopback or link-local):
	// pods' egress never reaches them from another node.
	HostAddrs []string  `json:"hostAddrs,omitempty"`
	Ready     bool      `json:"ready"`
	Seen      time.Time `json:"seen"`
}

// Assignment is one message of the node protocol's pod watch: Sync carries
// the full set of pods assigned to the node (sent first and after every
// reconnect); otherwise Pod is a changed pod or Deleted names a pod that is
// gone or moved away.
type Assignment struct {
	Sync    bool   `json:"sync,omitempty"`
	Pods    []Pod  `json:"pods,omitempty"`
	Pod     *Pod   `json:"pod,omitempty"`
	Deleted string `json:"deleted,omitempty"`
}
