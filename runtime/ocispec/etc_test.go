package ocispec

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteEtcFiles(t *testing.T) {
	dir := t.TempDir()
	hostConf := filepath.Join(dir, "host-resolv.conf")
	writeFile(t, dir, "host-resolv.conf", "# from dhcp\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch corp.example\noptions edns0\n")
	files, err := WriteEtcFiles(filepath.Join(dir, "pod"), EtcConfig{
		Hostname:       "web",
		Domainname:     "example.org",
		Addrs:          []netip.Addr{netip.MustParseAddr("fd00::5")},
		HostResolvConf: hostConf,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		files.Hostname: "web\n",
		files.Hosts: "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n" +
			"ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\nfd00::5\tweb.example.org\tweb\n",
		files.ResolvConf: "# from dhcp\nnameserver 10.0.0.2\nsearch corp.example\noptions edns0\n",
	}
	for path, w := range want {
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != w {
			t.Errorf("%s:\n%s\nwant:\n%s", filepath.Base(path), got, w)
		}
	}
}

func TestContainerResolvConf(t *testing.T) {
	cases := []struct {
		name, host  string
		nameservers []string
		want        string
	}{
		{"only loopback", "nameserver 127.0.0.53\nnameserver ::1\noptions ndots:2\n", nil,
			"options ndots:2\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"},
		{"missing host file", "", nil, "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"},
		{"replaced", "nameserver 10.0.0.2\nsearch x\n", []string{"fd00::53"}, "search x\nnameserver fd00::53\n"},
		{"zone and mapped", "nameserver fe80::1%eth0\nnameserver ::ffff:127.0.0.1\n", nil, "nameserver fe80::1%eth0\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := string(containerResolvConf([]byte(tc.host), tc.nameservers))
			if got != tc.want {
				t.Fatalf("got:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

func TestWriteEtcFilesLoopbackHostname(t *testing.T) {
	dir := t.TempDir()
	files, err := WriteEtcFiles(dir, EtcConfig{Hostname: "abc", HostResolvConf: filepath.Join(dir, "none")})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(files.Hosts)
	want := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n" +
		"ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n127.0.0.1\tabc\n::1\tabc\n"
	if string(got) != want {
		t.Fatalf("hosts:\n%s", got)
	}
}
