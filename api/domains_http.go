package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/macro-cloud/macro/ingress"
	"github.com/macro-cloud/macro/types"
)

// The HTTP check of a custom domain claim: the claim's token served at
// http://<domain>/.well-known/macro-domain/<token> by whatever serves the
// domain today (its current hosting: the check suits moving a site whose
// DNS still points elsewhere). It proves control of what the name serves
// on the Internet, not of its DNS, so:
//
//   - This cloud's ingress never answers that path, for any host (it is
//     reserved, never proxied to a pod): when the name already points at
//     this cloud, no tenant can pass the check through it, neither by a
//     pod nor by an app of another tenant that echoes what it is sent.
//     Such a name is proven by its TXT record only.
//   - A name covered by another tenant's verified domain, or covering
//     one, is refused: web content under a domain is no proof against its
//     holder.
//   - The server fetches from addresses that are not its own loopback,
//     link-local or multicast ones, only on the claimed host (redirects
//     to the same host only, three at most), reading at most 1 KiB.

// httpCheck is how the HTTP check reaches a domain; zero values for
// production.
type httpCheck struct {
	port       int // for http://: 0 means 80
	lookup     func(ctx context.Context, host string) ([]netip.Addr, error)
	allowLocal bool // loopback allowed (tests)
}

// domainCheckURL is where the token of d is fetched.
func domainCheckURL(d types.Domain) string {
	return "http://" + d.Name + ingress.DomainCheckPath + d.Token
}

func (s *Server) verifyHTTP(ctx context.Context, d types.Domain) error {
	verified, err := s.store.VerifiedDomains(ctx)
	if err != nil {
		return err
	}
	for tenant, names := range verified {
		if tenant == d.Tenant {
			continue
		}
		for _, v := range names {
			if v == d.Name || strings.HasSuffix(d.Name, "."+v) || strings.HasSuffix(v, "."+d.Name) {
				return fmt.Errorf("the HTTP check cannot prove %s: another tenant holds %s; only the TXT record proves it", d.Name, v)
			}
		}
	}
	lookup := s.httpCheck.lookup
	if lookup == nil {
		lookup = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return s.resolver.LookupNetIP(ctx, "ip", host)
		}
	}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		if host != d.Name {
			return nil, fmt.Errorf("not %s", d.Name)
		}
		if port == "80" && s.httpCheck.port != 0 {
			port = strconv.Itoa(s.httpCheck.port)
		}
		addrs, err := lookup(ctx, host)
		if err != nil {
			return nil, err
		}
		var errs []error
		for _, a := range addrs {
			a = a.Unmap()
			if !s.httpCheck.allowLocal && (a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || a.IsMulticast() || a.IsUnspecified()) {
				errs = append(errs, fmt.Errorf("%s is not an address on the Internet", a))
				continue
			}
			var d net.Dialer
			c, err := d.DialContext(ctx, network, net.JoinHostPort(a.String(), port))
			if err == nil {
				return c, nil
			}
			errs = append(errs, err)
		}
		if len(errs) == 0 {
			return nil, fmt.Errorf("%s has no address", host)
		}
		return nil, errors.Join(errs...)
	}
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true, Proxy: nil},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > 3 || req.URL.Hostname() != d.Name {
				return fmt.Errorf("a redirect away from %s", d.Name)
			}
			return nil
		},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, domainCheckURL(d), nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %v", domainCheckURL(d), err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", domainCheckURL(d), resp.Status)
	}
	if strings.TrimSpace(string(body)) != d.Token {
		return fmt.Errorf("GET %s: the answer is not the token", domainCheckURL(d))
	}
	return nil
}
