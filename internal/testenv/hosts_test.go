package testenv

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestHosts(t *testing.T) {
	var prefix string
	t.Run("make, reach, partition, heal", func(t *testing.T) {
		h := NewHosts(t, 3)
		prefix = h.prefix
		h1, h2, h3 := h.List[0], h.List[1], h.List[2]
		ping := func(from *Host, to string) bool {
			_, err := from.Run("busybox", "ping", "-c", "1", "-W", "1", to)
			return err == nil
		}
		for _, to := range []string{h2.Addr.String(), h3.Addr6.String(), h.Self.String()} {
			if !ping(h1, to) {
				t.Fatalf("h1 cannot reach %s", to)
			}
		}
		// The test process reaches the hosts: a TCP listener on h2.
		l := h2.Command("sh", "-c", "echo hello-from-h2 | busybox nc -l -p 9999")
		if err := l.Start(); err != nil {
			t.Fatal(err)
		}
		defer l.Process.Kill()
		var got string
		for i := 0; i < 50 && got == ""; i++ {
			if c, err := net.DialTimeout("tcp", net.JoinHostPort(h2.Addr.String(), "9999"), time.Second); err == nil {
				buf := make([]byte, 64)
				n, _ := c.Read(buf)
				got = strings.TrimSpace(string(buf[:n]))
				c.Close()
			} else {
				time.Sleep(100 * time.Millisecond)
			}
		}
		if got != "hello-from-h2" {
			t.Fatalf("from h2: %q", got)
		}
		h3.Partition(t)
		if ping(h1, h3.Addr.String()) || ping(h3, h1.Addr.String()) {
			t.Fatal("a partitioned host is reachable")
		}
		if !ping(h1, h2.Addr.String()) {
			t.Fatal("the partition cut the others off too")
		}
		h3.Heal(t)
		if !ping(h1, h3.Addr.String()) {
			t.Fatal("a healed host is unreachable")
		}
	})
	// Gone after the test, with the test process's veth.
	if names, _ := filepath.Glob(filepath.Join("/run/netns", prefix+"*")); len(names) > 0 {
		t.Fatalf("left behind: %v", names)
	}
	if _, err := net.InterfaceByName(hostsNSPrefix + strconv.Itoa(os.Getpid())); err == nil {
		t.Fatal("the test process's veth was left behind")
	}
}

func TestServerOnHost(t *testing.T) {
	h := NewHosts(t, 1)
	port := FreePort(t)
	addr := net.JoinHostPort(h.List[0].Addr.String(), strconv.Itoa(port))
	srv := StartServer(t, OnHost(h.List[0]), WithArgs("--api-addr", addr, "--ingress-http", "off", "--ingress-https", "off"))
	// Its TCP port is on the host's address, reached over the LAN.
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("the API port on the host: %v\n%s", err, srv.Log())
	}
	c.Close()
	// And its unix socket works as always.
	if r := Docker(t, srv.Host(), "version", "--format", "{{.Server.Version}}"); r.ExitCode != 0 {
		t.Fatalf("docker version: %s", r.Combined())
	}
}
