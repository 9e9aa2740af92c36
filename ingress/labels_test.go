package ingress

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseLabels(t *testing.T) {
	cases := []struct {
		labels map[string]string
		rules  []Rule
		tcp    []TCPRule
		err    string
	}{
		{labels: map[string]string{"other": "x"}},
		{
			labels: map[string]string{"kr.ingress.80": "https://app.*"},
			rules:  []Rule{{Port: 80, HTTPS: true, Host: "app.alice.cloud.test", Path: "/"}},
		},
		{
			labels: map[string]string{"kr.ingress.8080": "https://*/api/"},
			rules:  []Rule{{Port: 8080, HTTPS: true, Host: "alice.cloud.test", Path: "/api"}},
		},
		{
			labels: map[string]string{"kr.ingress.80": "http://Shop.Example.COM/a/b, https://www.example.com"},
			rules: []Rule{
				{Port: 80, Host: "shop.example.com", Path: "/a/b"},
				{Port: 80, HTTPS: true, Host: "www.example.com", Path: "/"},
			},
		},
		{
			labels: map[string]string{"kr.ingress.tcp.5432": "15432"},
			tcp:    []TCPRule{{Port: 5432, PublicPort: 15432}},
		},
		{labels: map[string]string{"kr.ingress.http": "https://a.*"}, err: `"http" is not a port`},
		{labels: map[string]string{"kr.ingress.0": "https://a.*"}, err: "not a port"},
		{labels: map[string]string{"kr.ingress.080": "https://a.*"}, err: "not a port"},
		{labels: map[string]string{"kr.ingress.80": "a.example.com"}, err: "want https://HOST"},
		{labels: map[string]string{"kr.ingress.80": "ftp://a.example.com"}, err: "scheme must be"},
		{labels: map[string]string{"kr.ingress.80": "https://a.example.com:8443"}, err: "names a host only"},
		{labels: map[string]string{"kr.ingress.80": "https://user@a.example.com"}, err: "names a host only"},
		{labels: map[string]string{"kr.ingress.80": "https://a_b.example.com"}, err: "not a valid DNS label"},
		{labels: map[string]string{"kr.ingress.80": "https://a..example.com"}, err: "not a valid DNS label"},
		{labels: map[string]string{"kr.ingress.80": "https://a.example.com/../x"}, err: "dot segments"},
		{labels: map[string]string{"kr.ingress.80": "https://a.example.com/%2e%2e"}, err: "escapes"},
		{labels: map[string]string{"kr.ingress.80": "https://a.example.com/x?y=1"}, err: "no query"},
		{labels: map[string]string{"kr.ingress.80": ""}, err: "empty route"},
		{labels: map[string]string{"kr.ingress.tcp.22": "x"}, err: "public port"},
		{labels: map[string]string{"kr.ingress.80": "https://*.*"}, err: "not a valid DNS label"},
	}
	for _, c := range cases {
		rules, tcp, err := ParseLabels("alice", "cloud.test", c.labels)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%v: error %v, want %q", c.labels, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%v: %v", c.labels, err)
			continue
		}
		if !reflect.DeepEqual(rules, c.rules) || !reflect.DeepEqual(tcp, c.tcp) {
			t.Errorf("%v: got %+v %+v, want %+v %+v", c.labels, rules, tcp, c.rules, c.tcp)
		}
	}
}

func TestStarNeedsDomain(t *testing.T) {
	_, _, err := ParseLabels("alice", "", map[string]string{"kr.ingress.80": "https://app.*"})
	if err == nil || !strings.Contains(err.Error(), "--domain") {
		t.Fatalf("got %v", err)
	}
}

func TestMatchPath(t *testing.T) {
	cases := []struct {
		prefix, path string
		want         bool
	}{
		{"/", "/", true},
		{"/", "/x", true},
		{"/api", "/api", true},
		{"/api", "/api/", true},
		{"/api", "/api/v1", true},
		{"/api", "/apix", false},
		{"/api", "/", false},
	}
	for _, c := range cases {
		if got := matchPath(c.prefix, c.path); got != c.want {
			t.Errorf("matchPath(%q, %q) = %v", c.prefix, c.path, got)
		}
	}
}

// FuzzParseLabels: no label value panics the parser, and every route it
// accepts is a clean host and path.
func FuzzParseLabels(f *testing.F) {
	for _, s := range []string{"https://app.*", "http://a.b/c/d", "https://*", "https://x.example.com/a,http://y", "ftp://", "https://a/../b"} {
		f.Add("80", s)
	}
	f.Add("tcp.22", "2222")
	f.Fuzz(func(t *testing.T, key, value string) {
		rules, _, err := ParseLabels("alice", "cloud.test", map[string]string{LabelPrefix + key: value})
		if err != nil {
			return
		}
		for _, r := range rules {
			if r.Host == "" || strings.ContainsAny(r.Host, ":/@*") || r.Host != strings.ToLower(r.Host) {
				t.Fatalf("bad host %q from %q", r.Host, value)
			}
			if !strings.HasPrefix(r.Path, "/") || strings.Contains(r.Path+"/", "/../") || (r.Path != "/" && strings.HasSuffix(r.Path, "/")) {
				t.Fatalf("bad path %q from %q", r.Path, value)
			}
			if r.Port < 1 || r.Port > 65535 {
				t.Fatalf("bad port %d", r.Port)
			}
		}
	})
}
