package e2e

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/macro-cloud/macro/internal/testenv"
)

// TestEgressAndOpen: pods reach a stand-in internet over IPv6 through
// their node (NAT66) as over IPv4; the internet reaches the IPv6 address of
// a pod with kr.network.policy=open, and of no other pod; a tenant's
// egress switched off (macro admin tenant set-egress) cuts its pods off
// the internet, both families, and leaves other tenants alone.
func TestEgressAndOpen(t *testing.T) {
	c, _, inet := startNetCloud(t)
	alice, bob := c.as(c.alice), c.as(c.bob)
	httpd := func(text string) []string {
		return []string{"sh", "-c", "mkdir -p /www && echo " + text + " > /www/index.html && exec httpd -f -p 80 -h /www"}
	}
	mustOK(t, alice(append([]string{"run", "-d", "--name", "shop", "-l", "kr.network.policy=open", "busybox"}, httpd("open-shop")...)...), "run shop")
	mustOK(t, alice(append([]string{"run", "-d", "--name", "db", "busybox"}, httpd("closed-db")...)...), "run db")
	mustOK(t, bob(append([]string{"run", "-d", "--name", "eve", "busybox"}, httpd("closed-eve")...)...), "run eve")
	addr6 := func(as func(...string) testenv.Result, name string) string {
		return mustOK(t, as("inspect", "-f", "{{.NetworkSettings.GlobalIPv6Address}}", name), "inspect "+name)
	}
	shop, db, eve := addr6(alice, "shop"), addr6(alice, "db"), addr6(bob, "eve")
	for _, name := range []string{"shop", "db"} {
		eventually(t, name+"'s httpd", func() bool {
			return alice("exec", name, "wget", "-q", "-O", "-", "http://127.0.0.1/").ExitCode == 0
		})
	}
	outside6 := "http://[" + inet.addr6.String() + "]:8080/"
	outside4 := "http://" + inet.addr.String() + ":8080/"
	// fromInternet fetches / of addr:80 from the internet's namespace.
	fromInternet := func(addr string) string {
		cmd := exec.Command("nsenter", "--net="+inet.netns, "busybox", "sh", "-c",
			"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 3 "+addr+" 80")
		out, _ := cmd.CombinedOutput()
		return string(out)
	}
	pingFromInternet := func(addr string) bool {
		return exec.Command("nsenter", "--net="+inet.netns, "busybox", "ping", "-6", "-c", "1", "-W", "2", addr).Run() == nil
	}

	t.Run("IPv6 egress", func(t *testing.T) {
		for _, as := range []struct {
			run  func(...string) testenv.Result
			name string
		}{{alice, "db"}, {bob, "eve"}} {
			r := as.run("exec", as.name, "wget", "-q", "-O", "-", outside6)
			if r.ExitCode != 0 || !strings.Contains(r.Stdout, "hello from outside") {
				t.Errorf("%s over IPv6: exit %d\n%s", as.name, r.ExitCode, r.Combined())
			}
		}
	})

	t.Run("policy=open", func(t *testing.T) {
		if out := fromInternet(shop); !strings.Contains(out, "open-shop") {
			t.Errorf("the internet does not reach the open pod at %s:\n%s", shop, out)
		}
		if !pingFromInternet(shop) {
			t.Errorf("the internet does not ping the open pod")
		}
		for _, a := range []string{db, eve} {
			if out := fromInternet(a); strings.Contains(out, "closed") {
				t.Errorf("the internet reaches %s without policy=open:\n%s", a, out)
			}
			if pingFromInternet(a) {
				t.Errorf("the internet pings %s without policy=open", a)
			}
		}
		// The open pod's own way out works as before.
		if r := alice("exec", "shop", "wget", "-q", "-O", "-", outside6); r.ExitCode != 0 {
			t.Errorf("open pod's egress: %s", r.Combined())
		}
	})

	t.Run("egress off per tenant", func(t *testing.T) {
		c.mustAdmin("tenant", "set-egress", "bob", "off")
		t.Cleanup(func() { c.mustAdmin("tenant", "set-egress", "bob", "on") })
		eventually(t, "bob's egress off", func() bool {
			return bob("exec", "eve", "wget", "-q", "-O", "-", outside4).ExitCode != 0
		})
		if r := bob("exec", "eve", "wget", "-q", "-O", "-", outside6); r.ExitCode == 0 {
			t.Errorf("bob reaches the internet over IPv6 with egress off")
		}
		for _, u := range []string{outside4, outside6} {
			if r := alice("exec", "db", "wget", "-q", "-O", "-", u); r.ExitCode != 0 {
				t.Errorf("alice's egress to %s with bob's off: %s", u, r.Combined())
			}
		}
		if out := c.mustAdmin("tenant", "ls"); !strings.Contains(out, "bob (no egress)") || strings.Contains(out, "alice (no egress)") {
			t.Errorf("tenant ls:\n%s", out)
		}
		c.mustAdmin("tenant", "set-egress", "bob", "on")
		eventually(t, "bob's egress on again", func() bool {
			return bob("exec", "eve", "wget", "-q", "-O", "-", outside6).ExitCode == 0
		})
	})
}
