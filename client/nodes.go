package client

import (
	"context"
	"net/http"
)

// Node is a machine of the cloud as a tenant sees it: what it offers,
// whether it is ready, and how many of the tenant's own pods are placed
// on it.
type Node struct {
	Name        string            `json:"name"`
	Zone        string            `json:"zone,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Arch        string            `json:"arch"`
	CPUs        int               `json:"cpus"`
	MemoryBytes int64             `json:"memoryBytes"`
	Ready       bool              `json:"ready"`
	Pods        int               `json:"pods"`
}

// Nodes lists the cloud's nodes (GET /nodes).
func (c *Client) Nodes(ctx context.Context) ([]Node, error) {
	var out []Node
	if err := c.call(ctx, request{method: http.MethodGet, path: APIPrefix + "/nodes", token: true}, &out); err != nil {
		return nil, err
	}
	return out, nil
}
