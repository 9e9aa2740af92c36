package types

import "time"

// Join token kinds: a server token lets a machine join the control plane
// (an etcd member and API server), a node token lets a machine's agent
// register as a node and speak the node protocol.
const (
	JoinServer = "server"
	JoinNode   = "node"
)

// JoinToken is a token that admits a machine into the cluster, as the store
// keeps it: only the SHA-256 of its secret. The token itself reads
// "kj_<id>_<secret>" and is shown once, by `macro admin join-token`.
type JoinToken struct {
	ID      string    `json:"id"`
	Kind    string    `json:"kind"` // server or node
	Hash    string    `json:"hash"` // hex SHA-256 of the secret
	Created time.Time `json:"created"`
	// Expires is when the token stops admitting machines; zero: never.
	Expires time.Time `json:"expires,omitzero"`
	// Node, on a node token, binds it to that node: it is the node's
	// credential (the agent's, exchanged for a join token at its first
	// start, or a server's own node), and speaks for that node alone.
	Node string `json:"node,omitempty"`
}
