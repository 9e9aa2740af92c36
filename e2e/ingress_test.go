package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/macro-cloud/macro/internal/testenv"
)

// TestIngress drives the ingress with real pods: busybox httpd behind an
// HTTPS route (plain HTTP redirects), two replicas balanced, a raw TCP
// port, and a suspended pod woken by the request that needs it.
func TestIngress(t *testing.T) {
	httpPort, httpsPort, tcpPort := testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)
	c := newCloud(t, testenv.WithArgs(
		"--ingress-http", "127.0.0.1:"+strconv.Itoa(httpPort),
		"--ingress-https", "127.0.0.1:"+strconv.Itoa(httpsPort),
		"--domain", "cloud.test"))
	pem, err := os.ReadFile(filepath.Join(c.srv.DataDir, "ca", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	client := &http.Client{
		Transport: &http.Transport{
			// Every name is the ingress, as DNS would have it.
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				_, port, _ := net.SplitHostPort(addr)
				var d net.Dialer
				return d.DialContext(ctx, network, "127.0.0.1:"+port)
			},
			TLSClientConfig:   &tls.Config{RootCAs: pool},
			ForceAttemptHTTP2: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       30 * time.Second,
	}
	get := func(url string) (int, string) {
		t.Helper()
		resp, err := client.Get(url)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode/100 == 3 {
			return resp.StatusCode, resp.Header.Get("Location")
		}
		return resp.StatusCode, string(b)
	}
	web := func(name string, labels ...string) {
		args := []string{"run", "-d", "--name", name}
		for _, l := range labels {
			args = append(args, "-l", l)
		}
		args = append(args, "busybox", "sh", "-c", "mkdir /www && echo hello from "+name+" > /www/index.html && exec httpd -f -p 8080 -h /www")
		c.must(args...)
		t.Cleanup(func() { c.docker("rm", "-f", name) })
	}
	web("web1", "kr.ingress.8080=https://web.*")
	web("web2", "kr.ingress.8080=https://web.*")
	https := fmt.Sprintf("https://web.default.cloud.test:%d/", httpsPort)

	seen := map[string]bool{}
	eventually(t, "both replicas answer through the ingress", func() bool {
		code, body := get(https)
		if code == 200 {
			seen[strings.TrimSpace(body)] = true
		}
		return seen["hello from web1"] && seen["hello from web2"]
	})
	if code, loc := get(fmt.Sprintf("http://web.default.cloud.test:%d/x?y=1", httpPort)); code != http.StatusPermanentRedirect || loc != fmt.Sprintf("https://web.default.cloud.test:%d/x?y=1", httpsPort) {
		t.Errorf("plain HTTP: %d %s", code, loc)
	}
	if code, body := get(fmt.Sprintf("http://nothing.cloud.test:%d/", httpPort)); code != 404 || !strings.Contains(body, "No app is served") {
		t.Errorf("unknown host: %d %s", code, body)
	}
	c.must("stop", "-t", "1", "web1", "web2")
	if code, body := get(https); code != http.StatusBadGateway {
		t.Errorf("backends stopped: %d %s", code, body)
	}

	t.Run("raw TCP", func(t *testing.T) {
		c.must("run", "-d", "--name", "echo", "-l", fmt.Sprintf("kr.ingress.tcp.5000=%d", tcpPort), "busybox",
			"sh", "-c", "while true; do nc -l -p 5000 -e sh -c 'read l; echo echo:$l'; done")
		defer c.docker("rm", "-f", "echo")
		eventually(t, "the TCP port echoes", func() bool {
			conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", tcpPort), time.Second)
			if err != nil {
				return false
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintln(conn, "ping")
			b, _ := io.ReadAll(conn)
			return strings.TrimSpace(string(b)) == "echo:ping"
		})
	})

	t.Run("a request wakes a suspended pod", func(t *testing.T) {
		web("sleepy", "kr.ingress.8080=https://sleepy.*", "kr.suspend=1s")
		url := fmt.Sprintf("https://sleepy.default.cloud.test:%d/", httpsPort)
		eventually(t, "sleepy serves", func() bool { code, _ := get(url); return code == 200 })
		eventually(t, "sleepy is suspended", func() bool {
			return strings.HasSuffix(c.must("ps", "--filter", "name=sleepy", "--format", "{{.Status}}"), "(suspended)")
		})
		code, body := get(url)
		if code != 200 || strings.TrimSpace(body) != "hello from sleepy" {
			t.Fatalf("the request to a suspended pod: %d %s", code, body)
		}
		sp, _ := c.state("sleepy")["Suspend"].(map[string]any)
		if sp["Wakes"].(float64) < 1 {
			t.Fatalf("no wake recorded: %v", sp)
		}
	})
}
