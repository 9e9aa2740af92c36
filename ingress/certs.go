package ingress

import (
	"crypto/tls"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Issuer signs a certificate for one host name: the cluster's internal CA
// by default, ACME when configured.
type Issuer func(host string) (tls.Certificate, error)

// Certs hands out a certificate for each host that has a route, issuing it
// on first use and again when it nears its end. Hosts without a route get
// none: the handshake fails, so the ingress never signs names it does not
// serve.
type Certs struct {
	proxy  *Proxy
	issue  Issuer
	now    func() time.Time
	mu     sync.Mutex
	cache  map[string]*tls.Certificate
	flight map[string]*sync.WaitGroup
}

// NewCerts issues with issue for the hosts of p's table.
func NewCerts(p *Proxy, issue Issuer) *Certs {
	return &Certs{proxy: p, issue: issue, now: time.Now, cache: map[string]*tls.Certificate{}, flight: map[string]*sync.WaitGroup{}}
}

// TLSConfig is a server TLS configuration with HTTP/2 and HTTP/1.1.
func (c *Certs) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2", "http/1.1"},
		GetCertificate: c.GetCertificate,
	}
}

// GetCertificate is tls.Config.GetCertificate.
func (c *Certs) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	host := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	if host == "" {
		return nil, fmt.Errorf("ingress: no server name (SNI) in the TLS handshake")
	}
	if !c.proxy.Table().HasHost(host) {
		return nil, fmt.Errorf("ingress: no route for %s", host)
	}
	for {
		c.mu.Lock()
		if cert := c.cache[host]; cert != nil && c.fresh(cert) {
			c.mu.Unlock()
			return cert, nil
		}
		if wg := c.flight[host]; wg != nil {
			c.mu.Unlock()
			wg.Wait()
			continue
		}
		wg := new(sync.WaitGroup)
		wg.Add(1)
		c.flight[host] = wg
		c.mu.Unlock()

		cert, err := c.issue(host)
		c.mu.Lock()
		delete(c.flight, host)
		if err == nil {
			c.cache[host] = &cert
		}
		c.mu.Unlock()
		wg.Done()
		if err != nil {
			return nil, fmt.Errorf("ingress: certificate for %s: %w", host, err)
		}
		return &cert, nil
	}
}

// fresh is true while more than a third of the certificate's life is left.
func (c *Certs) fresh(cert *tls.Certificate) bool {
	if cert.Leaf == nil {
		return true
	}
	life := cert.Leaf.NotAfter.Sub(cert.Leaf.NotBefore)
	return c.now().Before(cert.Leaf.NotAfter.Add(-life / 3))
}
