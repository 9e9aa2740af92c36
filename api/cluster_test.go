package api

import (
	"net/url"
	"strconv"
	"testing"
)

func TestValidPeerURL(t *testing.T) {
	for _, c := range []struct {
		in string
		ok bool
	}{
		{"https://10.0.0.2:2380", true},
		{"https://[fd00::2]:2380", true},
		{"https://etcd2.example:2380", true},
		{"http://10.0.0.2:2380", false},
		{"https://10.0.0.2", false},
		{"https://10.0.0.2:0", false},
		{"https://10.0.0.2:99999", false},
		{"https://127.0.0.1:2380", false},
		{"https://0.0.0.0:2380", false},
		{"https://u:p@10.0.0.2:2380", false},
		{"https://10.0.0.2:2380/x", false},
		{"https://10.0.0.2:2380?a=b", false},
		{"", false},
	} {
		if err := validPeerURL(c.in); (err == nil) != c.ok {
			t.Errorf("validPeerURL(%q) = %v", c.in, err)
		}
	}
}

func FuzzValidPeerURL(f *testing.F) {
	for _, s := range []string{"https://10.0.0.2:2380", "https://[::1]:1", "http://x:1", "https://x:65535/", "https://%zz:1", "https://a b:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if validPeerURL(s) != nil {
			return
		}
		u, err := url.Parse(s)
		if err != nil || u.Scheme != "https" || u.Hostname() == "" {
			t.Fatalf("accepted %q", s)
		}
		if p, err := strconv.Atoi(u.Port()); err != nil || p < 1 || p > 65535 {
			t.Fatalf("accepted %q: port", s)
		}
	})
}
