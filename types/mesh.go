package types

// MeshView is what a node learns of the others for the VPC mesh (the node
// protocol's mesh stream): the nodes it peers with and the pods of the
// tenants it runs pods of, with their addresses, wherever they run.
type MeshView struct {
	Nodes []MeshNode `json:"nodes"`
	Pods  []MeshPod  `json:"pods"`
	// RotateKey is the key generation asked of the receiving node
	// (macro admin nodes rotate-key): a node that has made fewer makes a
	// new key.
	RotateKey int64 `json:"rotateKey,omitempty"`
}

// MeshNode is one node of the mesh.
type MeshNode struct {
	Name     string `json:"name"`
	Key      string `json:"key"`      // WireGuard public key, base64
	Endpoint string `json:"endpoint"` // address:port
	// NextKey is the key the node is about to switch to (a rotation).
	NextKey string `json:"nextKey,omitempty"`
	// Addrs are the node's host addresses, which no pod may reach.
	Addrs []string `json:"addrs,omitempty"`
}

// MeshPod is one running pod with its VPC addresses, as its node
// reported them.
type MeshPod struct {
	ID        string   `json:"id"`
	Tenant    string   `json:"tenant"`
	Namespace string   `json:"namespace"`
	Node      string   `json:"node"`
	Names     []string `json:"names"`
	IPv6      string   `json:"ipv6,omitempty"`
	IPv4      string   `json:"ipv4,omitempty"`
	// Overlays are the pod's addresses on its tenant's IPv4 overlays
	// with a subnet (ipip networks), by network ID.
	Overlays map[string]string `json:"overlays,omitempty"`
}
