package client

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// IngressList is the tenant's ingress: routes, raw TCP ports, and the
// labels of its pods that give no route, with why.
type IngressList struct {
	Routes   []Ingress        `json:"routes"`
	TCP      []TCPIngress     `json:"tcp"`
	Problems []IngressProblem `json:"problems"`
}

// Ingress is one route: a host and path passed to the pods behind it.
type Ingress struct {
	URL     string          `json:"url"`
	Host    string          `json:"host"`
	Path    string          `json:"path"`
	HTTPS   bool            `json:"https"`
	Targets []IngressTarget `json:"targets"`
}

// IngressTarget is one pod port behind a route.
type IngressTarget struct {
	Pod       string `json:"pod"`
	Namespace string `json:"namespace"`
	Port      int    `json:"port"`
	State     string `json:"state"`
	Node      string `json:"node,omitempty"`
}

// TCPIngress is a public TCP port of the tenant's.
type TCPIngress struct {
	PublicPort int             `json:"publicPort"`
	Targets    []IngressTarget `json:"targets"`
}

// IngressProblem says why a pod's ingress label gives no route.
type IngressProblem struct {
	Pod       string `json:"pod"`
	Namespace string `json:"namespace"`
	Problem   string `json:"problem"`
}

// Ingresses lists the tenant's ingress.
func (c *Client) Ingresses(ctx context.Context) (*IngressList, error) {
	var out IngressList
	if err := c.call(ctx, request{method: http.MethodGet, path: APIPrefix + "/ingresses", token: true}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Domain is a custom domain of the tenant's.
type Domain struct {
	Name     string    `json:"name"`
	Verified bool      `json:"verified"`
	Created  time.Time `json:"created"`
	Record   string    `json:"record"` // the TXT record that proves the claim
	// CheckURL is the other proof: Token served there by the domain's
	// current hosting.
	CheckURL string `json:"checkUrl,omitempty"`
	Token    string `json:"token,omitempty"`
}

// Domains lists the tenant's custom domains.
func (c *Client) Domains(ctx context.Context) ([]Domain, error) {
	var out []Domain
	err := c.call(ctx, request{method: http.MethodGet, path: APIPrefix + "/domains", token: true}, &out)
	return out, err
}

// AddDomain claims a custom domain.
func (c *Client) AddDomain(ctx context.Context, name string) (*Domain, error) {
	var out Domain
	if err := c.call(ctx, request{method: http.MethodPost, path: APIPrefix + "/domains", token: true, body: map[string]string{"name": name}}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// VerifyDomain asks the server to check the domain's TXT record.
func (c *Client) VerifyDomain(ctx context.Context, name string) (*Domain, error) {
	var out Domain
	if err := c.call(ctx, request{method: http.MethodPost, path: APIPrefix + "/domains/" + url.PathEscape(name) + "/verify", token: true}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RemoveDomain gives a custom domain up.
func (c *Client) RemoveDomain(ctx context.Context, name string) error {
	return c.call(ctx, request{method: http.MethodDelete, path: APIPrefix + "/domains/" + url.PathEscape(name), token: true}, nil)
}
