// Package testacme runs Let's Encrypt's ACME test server, pebble, for
// tests of ACME clients, with a DNS server that sends every name to
// 127.0.0.1: pebble's validation authority then really fetches HTTP-01
// challenges from the client's HTTP port on this machine.
//
// pebble is built once from its module (go install, through the module
// proxy) into the test cache (MACRO_TEST_CACHE) and reused.
package testacme

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/macro-cloud/macro/internal/testimages"
	"golang.org/x/net/dns/dnsmessage"
)

// Module is the pebble release tests run.
const Module = "github.com/letsencrypt/pebble/v2"

// Version of Module.
const Version = "v2.10.1"

// Pebble is a running pebble.
type Pebble struct {
	// Directory is the ACME directory URL.
	Directory string
	// Client trusts pebble's own HTTPS certificate (test/certs/pebble.minica.pem).
	Client *http.Client
	// CAFile is that certificate's PEM file, for --acme-ca-bundle.
	CAFile     string
	management string
	log        *syncBuffer
}

// built is pebble's binary and its module's source directory.
type built struct{ bin, src string }

var build = sync.OnceValues(func() (built, error) {
	cache, err := testimages.CacheDir()
	if err != nil {
		return built{}, err
	}
	dir := filepath.Join(cache, "bin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return built{}, err
	}
	env := append(os.Environ(), "GOFLAGS=", "CGO_ENABLED=0")
	bin, err := testimages.Cached(dir, "pebble-"+Version, func(tmp string) error {
		gobin, err := os.MkdirTemp(dir, ".gobin-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(gobin)
		cmd := exec.Command(goTool(), "install", Module+"/cmd/pebble@"+Version)
		cmd.Env = append(env, "GOBIN="+gobin)
		cmd.Dir = gobin
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go install pebble: %v\n%s", err, out)
		}
		return os.Rename(filepath.Join(gobin, "pebble"), tmp)
	})
	if err != nil {
		return built{}, err
	}
	// Its test certificates come with the module's source.
	cmd := exec.Command(goTool(), "mod", "download", "-json", Module+"@"+Version)
	cmd.Env = env
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return built{}, fmt.Errorf("go mod download pebble: %v", err)
	}
	var m struct{ Dir string }
	if err := json.Unmarshal(out, &m); err != nil || m.Dir == "" {
		return built{}, fmt.Errorf("go mod download pebble: no directory in %s", out)
	}
	return built{bin, m.Dir}, nil
})

func goTool() string {
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); fileExists(p) {
		return p
	}
	return "go"
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Start runs pebble until the test ends. Its validation authority fetches
// HTTP-01 challenges at httpPort, and makes TLS-ALPN-01 handshakes at
// tlsPort (0: a port where nothing listens), of the address dnsAddr
// resolves the name to (StartDNS). Nonce rejection and validation delays
// are off, so a test does not depend on chance or time.
func Start(t testing.TB, httpPort, tlsPort int, dnsAddr string) *Pebble {
	t.Helper()
	b, err := build()
	bin, src := b.bin, b.src
	if err != nil {
		t.Fatalf("testacme: %v", err)
	}
	dir := t.TempDir()
	certs := filepath.Join(src, "test", "certs")
	api, mgmt := freePort(t), freePort(t)
	if tlsPort == 0 {
		tlsPort = freePort(t)
	}
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":                  fmt.Sprintf("127.0.0.1:%d", api),
		"managementListenAddress":        fmt.Sprintf("127.0.0.1:%d", mgmt),
		"certificate":                    filepath.Join(certs, "localhost", "cert.pem"),
		"privateKey":                     filepath.Join(certs, "localhost", "key.pem"),
		"httpPort":                       httpPort,
		"tlsPort":                        tlsPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
		"keyAlgorithm":                   "ecdsa",
		"profiles":                       map[string]any{"default": map[string]any{"description": "test", "validityPeriod": 7776000}},
	}}
	js, _ := json.Marshal(cfg)
	cfgFile := filepath.Join(dir, "pebble.json")
	if err := os.WriteFile(cfgFile, js, 0o644); err != nil {
		t.Fatal(err)
	}
	p := &Pebble{
		Directory:  fmt.Sprintf("https://127.0.0.1:%d/dir", api),
		CAFile:     filepath.Join(certs, "pebble.minica.pem"),
		management: fmt.Sprintf("https://127.0.0.1:%d", mgmt),
		log:        &syncBuffer{},
	}
	pem, err := os.ReadFile(p.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	p.Client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: time.Minute}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "-config", cfgFile, "-dnsserver", dnsAddr)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0")
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		p.Client.CloseIdleConnections()
		if t.Failed() {
			t.Logf("pebble log:\n%s", p.log.String())
		}
	})
	for i := 0; ; i++ {
		resp, err := p.Client.Get(p.Directory)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		select {
		case <-done:
			t.Fatalf("pebble exited:\n%s", p.log.String())
		case <-time.After(50 * time.Millisecond):
		}
		if i > 600 {
			t.Fatalf("pebble not up: %v\n%s", err, p.log.String())
		}
	}
	return p
}

// Root is the PEM of the root that signs the certificates pebble issues
// (new for every run of pebble).
func (p *Pebble) Root(t testing.TB) *x509.CertPool {
	t.Helper()
	resp, err := p.Client.Get(p.management + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatalf("pebble root: %s", b)
	}
	return pool
}

// Log is what pebble printed so far.
func (p *Pebble) Log() string { return p.log.String() }

// StartDNS runs a DNS server on 127.0.0.1, UDP and TCP on one port (pebble
// asks over TCP), that answers every A question with 127.0.0.1 and every
// other question with no records. It returns its address.
func StartDNS(t testing.TB) string {
	t.Helper()
	var pc net.PacketConn
	var tl net.Listener
	for i := 0; ; i++ {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if tl, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
		if i > 20 {
			t.Fatalf("no port free for both UDP and TCP: %v", err)
		}
	}
	t.Cleanup(func() { pc.Close(); tl.Close() })
	go func() {
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				for {
					var n [2]byte
					if _, err := io.ReadFull(c, n[:]); err != nil {
						return
					}
					q := make([]byte, int(n[0])<<8|int(n[1]))
					if _, err := io.ReadFull(c, q); err != nil {
						return
					}
					out, err := answer(q)
					if err != nil {
						return
					}
					c.Write(append([]byte{byte(len(out) >> 8), byte(len(out))}, out...))
				}
			}()
		}
	}()
	go func() {
		buf := make([]byte, 1500)
		for {
			n, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if out, err := answer(buf[:n]); err == nil {
				pc.WriteTo(out, addr)
			}
		}
	}()
	return pc.LocalAddr().String()
}

func answer(q []byte) ([]byte, error) {
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil {
		return nil, err
	}
	qs, err := p.AllQuestions()
	if err != nil || len(qs) != 1 {
		return nil, fmt.Errorf("want one question")
	}
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired})
	b.EnableCompression()
	b.StartQuestions()
	b.Question(qs[0])
	b.StartAnswers()
	if qs[0].Type == dnsmessage.TypeA {
		b.AResource(dnsmessage.ResourceHeader{Name: qs[0].Name, Class: dnsmessage.ClassINET, TTL: 1}, dnsmessage.AResource{A: [4]byte{127, 0, 0, 1}})
	}
	return b.Finish()
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
