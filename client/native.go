package client

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// Identity is who the caller is (GET /whoami).
type Identity struct {
	Tenant  string `json:"tenant"`
	Cluster string `json:"cluster,omitempty"`
	Auth    string `json:"auth,omitempty"` // "token" or "certificate"
}

// WhoAmI asks the server whose token the client holds; a refused token
// gives an error that matches ErrUnauthorized.
func (c *Client) WhoAmI(ctx context.Context) (*Identity, error) {
	var out Identity
	if err := c.call(ctx, request{method: http.MethodGet, path: APIPrefix + "/whoami", token: true}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// CA returns the PEM bundle of the CA that signs the server's certificates
// (GET /ca, no token needed).
func (c *Client) CA(ctx context.Context) ([]byte, error) {
	resp, cancel, err := c.do(ctx, request{method: http.MethodGet, path: APIPrefix + "/ca"})
	if err != nil {
		return nil, err
	}
	defer cancel()
	defer resp.Body.Close()
	return readAllLimit(resp, 1<<20)
}

// Certs is a client certificate for the Docker API, in PEM, with the CA
// that signs the server's certificate.
type Certs struct {
	CA      string    `json:"ca"`
	Cert    string    `json:"cert"`
	Key     string    `json:"key"`
	Cluster string    `json:"cluster,omitempty"`
	Tenant  string    `json:"tenant"`
	Expires time.Time `json:"expires"`
}

// CreateCerts asks the server for a new client certificate of the token's
// tenant (POST /certs).
func (c *Client) CreateCerts(ctx context.Context) (*Certs, error) {
	var out Certs
	if err := c.call(ctx, request{method: http.MethodPost, path: APIPrefix + "/certs", token: true, body: struct{}{}}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Namespace is a tenant's namespace: a compose project. The server lists
// those created explicitly, those its pods name, and "default".
type Namespace struct {
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
	Pods    int       `json:"pods"`
}

// Namespaces lists the tenant's namespaces.
func (c *Client) Namespaces(ctx context.Context) ([]Namespace, error) {
	var out []Namespace
	if err := c.call(ctx, request{method: http.MethodGet, path: APIPrefix + "/namespaces", token: true}, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Namespace returns one namespace.
func (c *Client) Namespace(ctx context.Context, name string) (*Namespace, error) {
	var out Namespace
	if err := c.call(ctx, request{method: http.MethodGet, path: APIPrefix + "/namespaces/" + url.PathEscape(name), token: true}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// CreateNamespace creates a namespace.
func (c *Client) CreateNamespace(ctx context.Context, name string) (*Namespace, error) {
	var out Namespace
	if err := c.call(ctx, request{method: http.MethodPost, path: APIPrefix + "/namespaces", token: true, body: Namespace{Name: name}}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteNamespace deletes a namespace.
func (c *Client) DeleteNamespace(ctx context.Context, name string) error {
	return c.call(ctx, request{method: http.MethodDelete, path: APIPrefix + "/namespaces/" + url.PathEscape(name), token: true}, nil)
}
