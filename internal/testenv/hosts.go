package testenv

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// Hosts are test machines made on this one: each host is a network
// namespace with one interface, eth0, on a shared LAN (a bridge in a
// namespace of its own). The test process itself sits on the LAN too,
// through one veth in the machine's namespace, so that it reaches every
// host by address. Processes run on a host with nsenter: they share the
// machine's files, mounts and processes, only their network is the host's.
//
// A test's LAN has its own subnets, 10.X.Y.0/24 and fd77:X:Y::/64 with X.Y
// from the test process's pid, so that tests in parallel processes do not
// meet. Everything is removed when the test ends, and what a killed test
// process left behind is removed by the next NewHosts.
type Hosts struct {
	t      testing.TB
	prefix string // "th<pid>-": namespaces are <prefix>lan, <prefix>h1, ...
	link   string // the test process's veth on the LAN
	lan4   netip.Prefix
	lan6   netip.Prefix
	// Self is the test process's address on the LAN.
	Self, Self6 netip.Addr
	List        []*Host
}

// Host is one test machine.
type Host struct {
	Name string // h1, h2, ...
	// NS is the host's network namespace, a name of `ip netns`.
	NS          string
	Addr, Addr6 netip.Addr

	mu          sync.Mutex
	partitioned bool
}

const hostsNSPrefix = "th"

// NewHosts makes n hosts on a LAN. It needs root; it skips the test when
// not run as root.
func NewHosts(t testing.TB, n int) *Hosts {
	t.Helper()
	RequireRoot(t)
	if n < 1 || n > 200 {
		t.Fatalf("testenv: NewHosts(%d): 1 to 200 hosts", n)
	}
	sweepHostsOnce.Do(func() { sweepStaleHosts(t.Logf) })
	pid := os.Getpid()
	x, y := (pid>>8)&0xff, pid&0xff
	h := &Hosts{
		t:      t,
		prefix: fmt.Sprintf("%s%d-", hostsNSPrefix, pid),
		link:   fmt.Sprintf("%s%d", hostsNSPrefix, pid),
		lan4:   netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.0/24", x, y)),
		lan6:   netip.MustParsePrefix(fmt.Sprintf("fd77:%x:%x::/64", x, y)),
	}
	t.Cleanup(h.remove)
	lan := h.prefix + "lan"
	h.must("ip", "netns", "add", lan)
	h.must("ip", "-n", lan, "link", "set", "lo", "up")
	h.must("ip", "-n", lan, "link", "add", "br0", "type", "bridge")
	h.must("ip", "-n", lan, "link", "set", "br0", "up")
	// The test process's seat on the LAN.
	h.Self, h.Self6 = hostAddr(h.lan4, 254), hostAddr(h.lan6, 254)
	h.must("ip", "link", "add", h.link, "type", "veth", "peer", "name", "self", "netns", lan)
	h.must("ip", "-n", lan, "link", "set", "self", "master", "br0", "up")
	h.must("ip", "addr", "add", h.Self.String()+"/24", "dev", h.link)
	h.must("ip", "addr", "add", h.Self6.String()+"/64", "dev", h.link, "nodad")
	h.must("ip", "link", "set", h.link, "up")
	for i := 1; i <= n; i++ {
		host := &Host{Name: "h" + strconv.Itoa(i), NS: h.prefix + "h" + strconv.Itoa(i), Addr: hostAddr(h.lan4, i), Addr6: hostAddr(h.lan6, i)}
		h.must("ip", "netns", "add", host.NS)
		h.must("ip", "-n", host.NS, "link", "set", "lo", "up")
		h.must("ip", "link", "add", "eth0", "netns", host.NS, "type", "veth", "peer", "name", host.Name, "netns", lan)
		h.must("ip", "-n", lan, "link", "set", host.Name, "master", "br0", "up")
		h.must("ip", "-n", host.NS, "addr", "add", host.Addr.String()+"/24", "dev", "eth0")
		h.must("ip", "-n", host.NS, "addr", "add", host.Addr6.String()+"/64", "dev", "eth0", "nodad")
		h.must("ip", "-n", host.NS, "link", "set", "eth0", "up")
		h.List = append(h.List, host)
	}
	return h
}

// hostAddr is the i-th address of p.
func hostAddr(p netip.Prefix, i int) netip.Addr {
	b := p.Addr().AsSlice()
	b[len(b)-1] = byte(i)
	a, _ := netip.AddrFromSlice(b)
	return a
}

func (h *Hosts) must(name string, args ...string) {
	h.t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		h.t.Fatalf("testenv: %s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func (h *Hosts) remove() {
	removeHostsNamed(h.prefix, h.link, h.t.Logf)
}

// removeHostsNamed deletes the namespaces named prefix* (their interfaces
// go with them) and the test process's veth.
func removeHostsNamed(prefix, link string, logf func(string, ...any)) {
	names, _ := filepath.Glob(filepath.Join("/run/netns", prefix+"*"))
	for _, p := range names {
		ns := filepath.Base(p)
		// Processes still in the namespace keep it alive; kill them first.
		if out, err := exec.Command("ip", "netns", "pids", ns).Output(); err == nil {
			for _, f := range strings.Fields(string(out)) {
				if pid, err := strconv.Atoi(f); err == nil {
					syscallKill(pid)
				}
			}
		}
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			logf("testenv: ip netns del %s: %v %s", ns, err, out)
		}
	}
	exec.Command("ip", "link", "del", link).Run()
}

var sweepHostsOnce sync.Once

// sweepStaleHosts removes the hosts of test processes that are gone.
func sweepStaleHosts(logf func(string, ...any)) {
	names, _ := filepath.Glob(filepath.Join("/run/netns", hostsNSPrefix+"*-*"))
	seen := map[int]bool{}
	for _, p := range names {
		rest := strings.TrimPrefix(filepath.Base(p), hostsNSPrefix)
		pidText, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || seen[pid] || pid == os.Getpid() {
			continue
		}
		seen[pid] = true
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			continue // its test process still runs (or the pid was reused: kept, harmless)
		}
		logf("testenv: removing the test hosts of pid %d, which is gone", pid)
		removeHostsNamed(fmt.Sprintf("%s%d-", hostsNSPrefix, pid), fmt.Sprintf("%s%d", hostsNSPrefix, pid), logf)
	}
}

// Command is a command that runs on the host (in its network namespace).
func (h *Host) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{"--net=/run/netns/" + h.NS, "--", name}, args...)...)
}

// Run runs a command on the host and returns its combined output.
func (h *Host) Run(name string, args ...string) (string, error) {
	out, err := h.Command(name, args...).CombinedOutput()
	return string(out), err
}

// Partition cuts the host off the LAN: every packet in or out of eth0 is
// dropped (nftables in the host's namespace), as when its cable is pulled;
// connections hang rather than fail at once. Heal undoes it.
func (h *Host) Partition(t testing.TB) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.partitioned {
		return
	}
	rules := "table inet partition {\n" +
		" chain in { type filter hook input priority -300; iifname \"eth0\" drop; }\n" +
		" chain out { type filter hook output priority -300; oifname \"eth0\" drop; }\n" +
		"}\n"
	cmd := h.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("testenv: partition %s: %v\n%s", h.Name, err, out)
	}
	h.partitioned = true
}

// Heal reconnects a partitioned host.
func (h *Host) Heal(t testing.TB) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.partitioned {
		return
	}
	if out, err := h.Run("nft", "delete", "table", "inet", "partition"); err != nil {
		t.Fatalf("testenv: heal %s: %v\n%s", h.Name, err, out)
	}
	h.partitioned = false
}

// OnHost starts the server on host h: `macro server` runs in the host's
// network namespace (its TCP ports are on h's addresses; its unix sockets
// are in its data directory as always).
func OnHost(h *Host) Option {
	return func(s *Server) { s.netns = h.NS }
}

func syscallKill(pid int) { syscall.Kill(pid, syscall.SIGKILL) }
