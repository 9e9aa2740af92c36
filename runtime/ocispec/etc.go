package ocispec

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
)

// EtcConfig says what goes into a container's /etc/hosts, /etc/hostname
// and /etc/resolv.conf.
type EtcConfig struct {
	Hostname   string
	Domainname string
	// Addrs are the container's addresses; the hostname resolves to them,
	// or to the loopback addresses when there are none.
	Addrs []netip.Addr
	// Nameservers replace the host's when set (a node's own DNS server).
	Nameservers []netip.Addr
	// HostResolvConf defaults to /etc/resolv.conf.
	HostResolvConf string
}

// fallbackNameservers are Docker's when the host has none a container can
// reach.
var fallbackNameservers = []string{"8.8.8.8", "8.8.4.4"}

// WriteEtcFiles writes hosts, hostname and resolv.conf into dir (created
// 0755 if missing) and returns their paths for Input.EtcFiles.
//
// hosts is Docker's: localhost on both loopback addresses, the IPv6
// multicast names, then the hostname (with its domain) on each of
// c.Addrs. resolv.conf is the host's without its loopback nameservers
// (unreachable from a container's network namespace), with c.Nameservers
// in their place when given, and Docker's public fallback when none is
// left.
func WriteEtcFiles(dir string, c EtcConfig) (EtcFiles, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return EtcFiles{}, err
	}
	names := c.Hostname
	if c.Domainname != "" {
		names = c.Hostname + "." + c.Domainname + "\t" + c.Hostname
	}
	var hosts strings.Builder
	hosts.WriteString("127.0.0.1\tlocalhost\n" +
		"::1\tlocalhost ip6-localhost ip6-loopback\n" +
		"fe00::0\tip6-localnet\n" +
		"ff00::0\tip6-mcastprefix\n" +
		"ff02::1\tip6-allnodes\n" +
		"ff02::2\tip6-allrouters\n")
	addrs := c.Addrs
	if len(addrs) == 0 {
		addrs = []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()}
	}
	if c.Hostname != "" {
		for _, a := range addrs {
			fmt.Fprintf(&hosts, "%s\t%s\n", a, names)
		}
	}

	src := c.HostResolvConf
	if src == "" {
		src = "/etc/resolv.conf"
	}
	hostConf, err := os.ReadFile(src)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return EtcFiles{}, err
	}
	var ns []string
	for _, a := range c.Nameservers {
		ns = append(ns, a.String())
	}
	resolv := containerResolvConf(hostConf, ns)

	files := EtcFiles{
		Hosts:      filepath.Join(dir, "hosts"),
		Hostname:   filepath.Join(dir, "hostname"),
		ResolvConf: filepath.Join(dir, "resolv.conf"),
	}
	for path, data := range map[string][]byte{
		files.Hosts:      []byte(hosts.String()),
		files.Hostname:   []byte(c.Hostname + "\n"),
		files.ResolvConf: resolv,
	} {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return EtcFiles{}, err
		}
	}
	return files, nil
}

// containerResolvConf filters a host's resolv.conf for a container: the
// loopback nameservers go (and, when nameservers is not empty, all of
// them, replaced by nameservers); search, options and comments stay.
func containerResolvConf(host []byte, nameservers []string) []byte {
	var out bytes.Buffer
	kept := 0
	s := bufio.NewScanner(bytes.NewReader(host))
	for s.Scan() {
		line := s.Text()
		f := strings.Fields(line)
		if len(f) >= 1 && f[0] == "nameserver" {
			if len(nameservers) > 0 || len(f) < 2 || isLoopback(f[1]) {
				continue
			}
			kept++
		}
		out.WriteString(line + "\n")
	}
	if kept == 0 {
		if len(nameservers) == 0 {
			nameservers = fallbackNameservers
		}
		for _, n := range nameservers {
			fmt.Fprintf(&out, "nameserver %s\n", n)
		}
	}
	return out.Bytes()
}

func isLoopback(s string) bool {
	s, _, _ = strings.Cut(s, "%") // zone
	a, err := netip.ParseAddr(s)
	return err == nil && a.Unmap().IsLoopback()
}
