package ingress

import (
	"crypto/tls"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/acme"
)

// Issuer signs a certificate for one host name: the cluster's internal CA
// by default, ACME when configured.
type Issuer func(host string) (tls.Certificate, error)

// Certs hands out a certificate for each host that has a route, issuing it
// on first use and again when it nears its end. Hosts without a route get
// none: the handshake fails, so the ingress never signs names it does not
// serve.
//
// A certificate past two thirds of its life is renewed in the background
// while it is still served; a host whose issuing failed is not tried again
// for a minute, so a CA that is down (or refuses a name) is not asked on
// every handshake.
type Certs struct {
	// ALPN, when set, answers handshakes for the acme-tls/1 protocol
	// (ACME's TLS-ALPN-01 challenge) with a challenge certificate.
	ALPN   func(host string) (*tls.Certificate, bool)
	proxy  *Proxy
	issue  Issuer
	now    func() time.Time
	mu     sync.Mutex
	cache  map[string]*tls.Certificate
	flight map[string]*sync.WaitGroup
	failed map[string]failure
}

type failure struct {
	at  time.Time
	err error
}

// retryAfter is how long a host whose issuing failed waits for the next try.
const retryAfter = time.Minute

// NewCerts issues with issue for the hosts of p's table.
func NewCerts(p *Proxy, issue Issuer) *Certs {
	return &Certs{proxy: p, issue: issue, now: time.Now, cache: map[string]*tls.Certificate{},
		flight: map[string]*sync.WaitGroup{}, failed: map[string]failure{}}
}

// TLSConfig is a server TLS configuration with HTTP/2 and HTTP/1.1 (and
// acme-tls/1 when c.ALPN is set).
func (c *Certs) TLSConfig() *tls.Config {
	protos := []string{"h2", "http/1.1"}
	if c.ALPN != nil {
		protos = append(protos, acme.ALPNProto)
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     protos,
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
	if c.ALPN != nil && len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == acme.ALPNProto {
		if cert, ok := c.ALPN(host); ok {
			return cert, nil
		}
		return nil, fmt.Errorf("ingress: no ACME challenge in progress for %s", host)
	}
	for {
		c.mu.Lock()
		cert := c.cache[host]
		if cert != nil && c.fresh(cert) {
			c.mu.Unlock()
			return cert, nil
		}
		wg := c.flight[host]
		f, failed := c.failed[host]
		retry := !failed || c.now().Sub(f.at) >= retryAfter
		if cert != nil && c.now().Before(cert.Leaf.NotAfter) {
			// Still valid: serve it, renewing behind it.
			if wg == nil && retry {
				c.startLocked(host)
				go c.run(host)
			}
			c.mu.Unlock()
			return cert, nil
		}
		if wg != nil {
			c.mu.Unlock()
			wg.Wait()
			continue
		}
		if !retry {
			c.mu.Unlock()
			return nil, f.err
		}
		wg = c.startLocked(host)
		c.mu.Unlock()
		c.run(host)
		wg.Wait()
	}
}

// startLocked marks host as being issued; c.mu is held.
func (c *Certs) startLocked(host string) *sync.WaitGroup {
	wg := new(sync.WaitGroup)
	wg.Add(1)
	c.flight[host] = wg
	return wg
}

// run issues the certificate of host and ends its flight.
func (c *Certs) run(host string) {
	cert, err := c.issue(host)
	c.mu.Lock()
	wg := c.flight[host]
	delete(c.flight, host)
	if err == nil {
		c.cache[host] = &cert
		delete(c.failed, host)
	} else {
		c.failed[host] = failure{at: c.now(), err: fmt.Errorf("ingress: certificate for %s: %w", host, err)}
	}
	c.mu.Unlock()
	wg.Done()
}

// fresh is true while more than a third of the certificate's life is left.
func (c *Certs) fresh(cert *tls.Certificate) bool {
	return freshFor(cert.Leaf, c.now())
}
