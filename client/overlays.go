package client

import (
	"context"
	"net/http"
	"net/url"
	"strings"
)

// VPC is the tenant's VPC (GET /vpc): its IPv6 prefix and each
// namespace's /64 and IPv4 /24.
type VPC struct {
	Prefix     string         `json:"prefix"`
	Namespaces []NamespaceNet `json:"namespaces"`
}

// NamespaceNet is a namespace's share of the VPC.
type NamespaceNet struct {
	Name    string `json:"name"`
	Subnet6 string `json:"subnet6"`
	Subnet4 string `json:"subnet4"`
	Pods    int    `json:"pods"`
}

// Overlay is one IPv4 overlay of a namespace ("<namespace>/<overlay>").
type Overlay struct {
	Name      string          `json:"name"`
	Namespace string          `json:"namespace"`
	Network   string          `json:"network,omitempty"`
	ID        string          `json:"id,omitempty"`
	Driver    string          `json:"driver"`
	Subnet    string          `json:"subnet"`
	Members   []OverlayMember `json:"members"`
}

// OverlayMember is a pod on an overlay and its address there.
type OverlayMember struct {
	Pod     string `json:"pod"`
	ID      string `json:"id"`
	Address string `json:"address"`
}

// VPC returns the tenant's VPC.
func (c *Client) VPC(ctx context.Context) (*VPC, error) {
	var out VPC
	if err := c.call(ctx, request{method: http.MethodGet, path: APIPrefix + "/vpc", token: true}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Overlays lists the tenant's overlays.
func (c *Client) Overlays(ctx context.Context) ([]Overlay, error) {
	var out []Overlay
	if err := c.call(ctx, request{method: http.MethodGet, path: APIPrefix + "/overlays", token: true}, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Overlay returns one overlay by "<namespace>/<overlay>" or its Docker
// network's name.
func (c *Client) Overlay(ctx context.Context, name string) (*Overlay, error) {
	var out Overlay
	if err := c.call(ctx, request{method: http.MethodGet, path: APIPrefix + "/overlays/" + escapeSegments(name), token: true}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// escapeSegments escapes each "/"-separated part of name.
func escapeSegments(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return strings.Join(parts, "/")
}
