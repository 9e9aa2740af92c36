// Package ingress is the edge of the cloud: it takes HTTP, HTTPS and raw TCP
// traffic for the hosts tenants claim with labels on their pods
// (`kr.ingress.<port>=https://<host>[/path]`, Kraud's convention) and passes
// it to those pods.
//
// The ingress keeps no state of its own: a Table is computed from what the
// pods ask for (Build), swapped in whole when the pods change, and read by
// the Proxy on every request. Several ingress instances fed the same pods
// answer the same way.
package ingress

import (
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// LabelPrefix starts every ingress label.
const LabelPrefix = "kr.ingress."

// Rule is one route a pod asks for: traffic for Host (and paths under
// Path) goes to Port of the pod.
type Rule struct {
	Port int
	// HTTPS routes are served over TLS, and plain HTTP redirects to them;
	// HTTP routes are served over plain HTTP only.
	HTTPS bool
	Host  string // lower case, no port
	Path  string // "/" or a prefix without a trailing slash ("/api")
}

// TCPRule forwards a public TCP port of the ingress to Port of the pod.
type TCPRule struct {
	Port       int
	PublicPort int
}

// ParseLabels reads a pod's ingress labels. A `*` label in a host stands for
// the tenant's default domain: with tenant "alice" and domain
// "cloud.example", `app.*` is `app.alice.cloud.example` and `*` alone is
// `alice.cloud.example`. Labels that do not start with LabelPrefix are
// ignored; a malformed ingress label is an error naming it.
func ParseLabels(tenant, domain string, labels map[string]string) ([]Rule, []TCPRule, error) {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		if strings.HasPrefix(k, LabelPrefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var rules []Rule
	var tcp []TCPRule
	for _, k := range keys {
		rest := strings.TrimPrefix(k, LabelPrefix)
		if p, ok := strings.CutPrefix(rest, "tcp."); ok {
			r, err := parseTCP(p, labels[k])
			if err != nil {
				return nil, nil, fmt.Errorf("label %s: %w", k, err)
			}
			tcp = append(tcp, r)
			continue
		}
		port, err := parsePort(rest)
		if err != nil {
			return nil, nil, fmt.Errorf("label %s: %w", k, err)
		}
		for _, v := range strings.Split(labels[k], ",") {
			r, err := parseRoute(port, tenant, domain, strings.TrimSpace(v))
			if err != nil {
				return nil, nil, fmt.Errorf("label %s: %w", k, err)
			}
			rules = append(rules, r)
		}
	}
	return rules, tcp, nil
}

func parsePort(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != s {
		return 0, fmt.Errorf("%q is not a port number (1-65535)", s)
	}
	return n, nil
}

func parseTCP(port, public string) (TCPRule, error) {
	p, err := parsePort(port)
	if err != nil {
		return TCPRule{}, err
	}
	pub, err := parsePort(strings.TrimSpace(public))
	if err != nil {
		return TCPRule{}, fmt.Errorf("public port: %w", err)
	}
	return TCPRule{Port: p, PublicPort: pub}, nil
}

// parseRoute reads "https://host[/path]" (or http://).
func parseRoute(port int, tenant, domain, v string) (Rule, error) {
	if v == "" {
		return Rule{}, fmt.Errorf("empty route: want https://HOST[/PATH]")
	}
	scheme, rest, ok := strings.Cut(v, "://")
	if !ok {
		return Rule{}, fmt.Errorf("route %q: want https://HOST[/PATH]", v)
	}
	r := Rule{Port: port}
	switch strings.ToLower(scheme) {
	case "https":
		r.HTTPS = true
	case "http":
	default:
		return Rule{}, fmt.Errorf("route %q: scheme must be https or http", v)
	}
	host, path, _ := strings.Cut(rest, "/")
	host, err := expandHost(host, tenant, domain)
	if err != nil {
		return Rule{}, fmt.Errorf("route %q: %w", v, err)
	}
	r.Host = host
	r.Path, err = cleanPath("/" + path)
	if err != nil {
		return Rule{}, fmt.Errorf("route %q: %w", v, err)
	}
	return r, nil
}

// expandHost lower-cases and checks a host name, replacing a `*` label by
// the tenant's default domain.
func expandHost(host, tenant, domain string) (string, error) {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == "" {
		return "", fmt.Errorf("no host")
	}
	if strings.ContainsAny(host, ":@?#[]") {
		return "", fmt.Errorf("host %q: a route names a host only (no port, user or query)", host)
	}
	labels := strings.Split(host, ".")
	if labels[len(labels)-1] == "*" {
		if domain == "" {
			return "", fmt.Errorf("host %q: this cloud has no domain for `*` (macro server --domain)", host)
		}
		labels = append(labels[:len(labels)-1], tenant, domain)
		host = strings.Join(labels, ".")
	}
	if len(host) > 253 {
		return "", fmt.Errorf("host name longer than 253 characters")
	}
	for _, l := range strings.Split(host, ".") {
		if !validLabel(l) {
			return "", fmt.Errorf("host %q: %q is not a valid DNS label", host, l)
		}
	}
	return host, nil
}

func validLabel(l string) bool {
	if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for _, c := range l {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// cleanPath turns a route's path into the prefix it matches: "/" or
// "/a/b" (no trailing slash, no dot segments, no query).
func cleanPath(p string) (string, error) {
	if strings.ContainsAny(p, "?#") {
		return "", fmt.Errorf("path %q: no query or fragment in a route", p)
	}
	u, err := url.PathUnescape(p)
	if err != nil || u != p {
		return "", fmt.Errorf("path %q: escapes are not allowed in a route", p)
	}
	segs := strings.Split(strings.Trim(p, "/"), "/")
	for _, s := range segs {
		if s == "." || s == ".." {
			return "", fmt.Errorf("path %q: dot segments are not allowed", p)
		}
	}
	p = "/" + strings.Trim(p, "/")
	if strings.Contains(p, "//") {
		return "", fmt.Errorf("path %q: empty segment", p)
	}
	return p, nil
}

// matchPath is true when the request path reqPath falls under the route's
// prefix: "/api" matches "/api", "/api/" and "/api/x", not "/apix".
func matchPath(prefix, reqPath string) bool {
	if prefix == "/" {
		return true
	}
	if !strings.HasPrefix(reqPath, prefix) {
		return false
	}
	return len(reqPath) == len(prefix) || reqPath[len(prefix)] == '/'
}
