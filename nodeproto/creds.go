package nodeproto

import (
	"crypto/x509"
	"errors"
	"log/slog"
	"time"
)

// Credentials are what a node's helper process (a volume mount process,
// agent.VolumeShimMain) needs to speak the node protocol on its own: the
// servers, the node's token and the cluster CA (PEM). They are secret.
type Credentials struct {
	Servers []string `json:"servers"`
	Token   string   `json:"token"`
	CA      []byte   `json:"ca"`
}

// Credentials are the client's own, for a helper process; ok is false
// when the client was made without ClientConfig.CAPEM.
func (c *Client) Credentials() (Credentials, bool) {
	if len(c.cfg.CAPEM) == 0 {
		return Credentials{}, false
	}
	return Credentials{Servers: append([]string(nil), c.cfg.Servers...), Token: c.cfg.Token, CA: c.cfg.CAPEM}, true
}

// helperWait bounds how long a helper's request waits for its answer
// once sent: a server that stopped answering (frozen, its connection
// still up) fails the operation instead of hanging it. A volume write
// waits for the primary and its replicas: minutes are ample.
const helperWait = 5 * time.Minute

// NewClientFrom is a client with the credentials of another, for a helper
// process.
func NewClientFrom(cr Credentials, log *slog.Logger) (*Client, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(cr.CA) {
		return nil, errors.New("credentials: no CA certificate")
	}
	return NewClient(ClientConfig{Servers: cr.Servers, Token: cr.Token, RootCAs: pool, CAPEM: cr.CA, Log: log, ResponseHeaderTimeout: helperWait})
}
