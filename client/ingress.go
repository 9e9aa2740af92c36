package client

import (
	"context"
	"net/http"
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
