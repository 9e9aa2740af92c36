package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/macro-cloud/macro/agent"
	"github.com/macro-cloud/macro/api/docker"
	"github.com/macro-cloud/macro/auth"
	"github.com/macro-cloud/macro/image"
	"github.com/macro-cloud/macro/nodeproto"
	"github.com/macro-cloud/macro/runtime"
	"github.com/macro-cloud/macro/runtime/sandbox"
	"github.com/macro-cloud/macro/store"
)

// openRuntimes opens the runtimes this machine has, under DATA-DIR/runtime;
// the default one must be among them.
func openRuntimes(dataDir, defaultRuntime string, log *slog.Logger) (map[string]runtime.Runtime, []string, error) {
	runtimes := map[string]runtime.Runtime{}
	for _, rc := range []sandbox.Config{
		{Name: "sandbox", Binary: "runc"},
		{Name: "gvisor", Binary: "runsc"},
	} {
		rc.Root = filepath.Join(dataDir, "runtime", rc.Name, "root")
		rt, err := sandbox.New(rc)
		if err != nil {
			log.Warn("runtime unavailable", "runtime", rc.Name, "err", err)
			continue
		}
		runtimes[rc.Name] = rt
	}
	if _, ok := runtimes[defaultRuntime]; !ok {
		return nil, nil, fmt.Errorf("default runtime %q is not available on this machine", defaultRuntime)
	}
	var names []string
	for n := range runtimes {
		names = append(names, n)
	}
	return runtimes, names, nil
}

// clusterNodes hands the API the node that runs a pod: the agent in this
// process, or another node through its tunnel to this server.
type clusterNodes struct {
	local   string
	agent   *agent.Agent // nil: this server runs no agent
	tunnels *nodeproto.Tunnels
}

// A node on another machine offers the API what the local agent does.
var (
	_ docker.Node        = (*nodeproto.Remote)(nil)
	_ docker.StorageNode = (*nodeproto.Remote)(nil)
	_ nodeproto.Ops      = (*agent.Agent)(nil)
)

func (c clusterNodes) Node(name string) (docker.Node, error) {
	if c.agent != nil && name == c.local {
		return c.agent, nil
	}
	return c.tunnels.Remote(name), nil
}

// nodeHandler serves the node protocol on the API port: agents admitted by
// a node join token.
func nodeHandler(st *store.Store, nodeAPI nodeproto.Backend, images *image.Store, peers *peerImages, tunnels *nodeproto.Tunnels, cluster string, ttl time.Duration, local string, localOps nodeproto.Ops, log *slog.Logger) http.Handler {
	return nodeproto.NewHandler(nodeproto.HandlerConfig{
		Backend: nodeAPI,
		Images:  imageSaver{images, peers},
		Check:   func(ctx context.Context, token string) (string, error) { return checkNodeToken(ctx, st, token) },
		Credential: func(ctx context.Context, node string) (string, error) {
			return issueNodeCredential(ctx, st, node)
		},
		Credentialed: func(ctx context.Context, node string) (bool, error) { return nodeCredentialed(ctx, st, node) },
		ImageAdmit:   imageAdmit(st),
		Tunnels:      tunnels,
		Cluster:      cluster,
		NodeTTL:      ttl,
		Log:          log,

		// Remote volume mounts (volfs.go).
		Volumes:   &volumeDirectory{st: st, tunnels: tunnels, local: local, agent: localAgentOf(localOps), log: log},
		LocalNode: local,
		LocalOps:  localOps,
	})
}

// imageSaver sends a tenant's image to a node as a docker-archive. An
// agent's request for an image this server lacks is answered with a copy
// fetched from the other servers (an agent may know this server alone);
// another server's is answered from this store alone.
type imageSaver struct {
	images *image.Store
	peers  *peerImages
}

func (s imageSaver) SaveImage(ctx context.Context, tenant, id string, w io.Writer) error {
	v := s.images.Tenant(tenant)
	if _, err := v.Lookup(ctx, id); errors.Is(err, image.ErrNotFound) && s.peers != nil && !nodeproto.FromPeer(ctx) {
		if ferr := s.peers.Fetch(ctx, tenant, id); ferr != nil {
			return err
		}
	}
	return v.Save(ctx, []string{id}, w)
}

// agentConfig are the flags of `macro agent`.
type agentConfig struct {
	dataDir        string
	servers        []string
	token          string
	caFile         string
	caHash         string
	nodeName       string
	labels         []string
	defaultRuntime string
	logLevel       string
	net            netConfig
	mesh           meshConfig
}

func agentMain(args []string) int {
	var cfg agentConfig
	fs := flag.NewFlagSet("macro agent", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: macro agent --server https://HOST:7443 --token NODE_TOKEN [flags]

Makes this machine a node of a cluster: it registers its capacity and labels,
keeps its lease alive, runs the pods the scheduler places on it, and serves
their logs, exec, attach, files and stats to the servers through a tunnel it
opens itself (so a node behind NAT works). A node token comes from
'macro admin join-token node' on a server.

`)
		fs.PrintDefaults()
	}
	fs.StringVar(&cfg.dataDir, "data-dir", "/var/lib/macro-agent", "directory that keeps the node's pods, images and network")
	fs.Var((*listFlag)(&cfg.servers), "server", "a server's API port, https://HOST:PORT; repeatable or comma-separated (the agent keeps a tunnel to each)")
	fs.StringVar(&cfg.token, "token", os.Getenv("MACRO_JOIN_TOKEN"), "node join token (or $MACRO_JOIN_TOKEN)")
	fs.StringVar(&cfg.caFile, "ca", "", "the cluster CA (DATA-DIR/ca/ca.pem of a server); without it the CA is fetched and pinned")
	fs.StringVar(&cfg.caHash, "ca-hash", "", "sha256:HEX of the cluster CA (macro admin join-token prints it): the fetched CA must match")
	fs.StringVar(&cfg.nodeName, "node-name", "", "name of this node (default: hostname)")
	fs.Var((*listFlag)(&cfg.labels), "label", "node label KEY=VALUE, e.g. zone=eu-1; repeatable")
	fs.StringVar(&cfg.defaultRuntime, "default-runtime", "sandbox", "runtime of containers that name none: sandbox (runc) or gvisor (runsc)")
	fs.StringVar(&cfg.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.BoolVar(&cfg.net.vpc, "vpc", true, "wire pods into their tenants' VPCs; false gives them loopback only")
	fs.BoolVar(&cfg.net.egress, "egress", true, "let pods reach addresses outside their VPC through this node")
	fs.Var((*listFlag)(&cfg.net.dnsUpstream), "dns-upstream", "resolver HOST:PORT for names outside the VPC; repeatable")
	fs.BoolVar(&cfg.mesh.on, "mesh", true, "join the other nodes' VPCs over WireGuard (needs --vpc)")
	fs.IntVar(&cfg.mesh.port, "mesh-port", 51820, "UDP port of the mesh (0: any free port)")
	fs.StringVar(&cfg.net.meshImpl, "mesh-impl", "auto", "the mesh's WireGuard device: kernel (the kernel's module), userspace (wireguard-go, in a process that outlives agent restarts) or auto (kernel where it can make one)")
	fs.StringVar(&cfg.mesh.endpoint, "mesh-endpoint", "", "IP[:PORT] other nodes reach this node's mesh on (default: this machine's address toward the servers, --mesh-port)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	log, err := newLogger(cfg.logLevel)
	if err != nil {
		fmt.Fprintf(os.Stderr, "macro agent: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := runAgent(ctx, cfg, log); err != nil {
		fmt.Fprintf(os.Stderr, "macro agent: %v\n", err)
		return 1
	}
	return 0
}

func runAgent(ctx context.Context, cfg agentConfig, log *slog.Logger) error {
	if os.Geteuid() != 0 {
		return errors.New("macro agent must run as root: it creates namespaces, cgroups and mounts")
	}
	var servers []string
	for _, s := range cfg.servers {
		servers = append(servers, splitList(s)...)
	}
	if len(servers) == 0 {
		return errors.New("--server https://HOST:PORT is required")
	}
	dataDir, err := filepath.Abs(cfg.dataDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dataDir, 0o711); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	node := localNode(cfg.nodeName)
	for _, l := range cfg.labels {
		for _, kv := range splitList(l) {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return fmt.Errorf("--label %q: want KEY=VALUE", kv)
			}
			node.Labels[k] = v
		}
	}
	roots, err := clusterCA(ctx, servers, cfg, dataDir)
	if err != nil {
		return err
	}
	caPEM, _ := os.ReadFile(filepath.Join(dataDir, "cluster-ca.pem")) // pinned by clusterCA
	token := cfg.token
	if b, err := os.ReadFile(filepath.Join(dataDir, nodeCredentialFile)); err == nil {
		token = strings.TrimSpace(string(b)) // nodecreds.go
	}
	cli, err := nodeproto.NewClient(nodeproto.ClientConfig{Servers: servers, Token: token, RootCAs: roots, CAPEM: caPEM, Log: log})
	if err != nil {
		return err
	}
	var info nodeproto.ClusterInfo
	for {
		if info, err = cli.Cluster(ctx); err == nil {
			break
		}
		if strings.Contains(err.Error(), "refused") && strings.Contains(err.Error(), "token") {
			if token != cfg.token {
				return fmt.Errorf("%w (the node credential in %s: remove that file to join again with --token)", err, filepath.Join(dataDir, nodeCredentialFile))
			}
			return err
		}
		log.Warn("cannot reach the servers yet", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(2 * time.Second):
		}
	}
	if token == cfg.token {
		if token, err = agentToken(ctx, cli, dataDir, node.Name, log); err != nil {
			return err
		}
		if cli, err = nodeproto.NewClient(nodeproto.ClientConfig{Servers: servers, Token: token, RootCAs: roots, CAPEM: caPEM, Log: log}); err != nil {
			return err
		}
	}

	runtimes, names, err := openRuntimes(dataDir, cfg.defaultRuntime, log)
	if err != nil {
		return err
	}
	node.Runtimes = names
	images, err := image.Open(filepath.Join(dataDir, "images"), log)
	if err != nil {
		return fmt.Errorf("image store: %w", err)
	}
	var fetches singleflight.Group
	fetch := func(ctx context.Context, tenant, id string) error {
		_, err, _ := fetches.Do(tenant+"/"+id, func() (any, error) {
			rc, err := cli.FetchImage(ctx, tenant, id)
			if err != nil {
				return nil, fmt.Errorf("fetch image from the servers: %w", err)
			}
			defer rc.Close()
			_, err = images.Tenant(tenant).Load(ctx, rc, nil)
			return nil, err
		})
		return err
	}
	netw, err := openNetwork(ctx, cfg.net, cli.FollowTenantNets(ctx), dataDir, info.Cluster, log)
	if err != nil {
		return err
	}
	var agentNet agent.Network
	var server agent.Server = cli
	var nm *nodeMesh
	if netw != nil {
		defer netw.Close()
		agentNet = netw
		if cfg.mesh.on {
			if nm, err = startNodeMesh(ctx, cfg.mesh, netw, dataDir, info.Cluster, node.Name, "", servers, log); err != nil {
				return err
			}
			server = meshServer{Server: cli, m: nm}
		}
	}
	ag, err := agent.New(agent.Config{
		Node:           node,
		DataDir:        dataDir,
		Server:         server,
		Images:         images,
		Runtimes:       runtimes,
		DefaultRuntime: cfg.defaultRuntime,
		InitPath:       findInit(),
		Network:        agentNet,
		FetchImage:     fetch,
		Heartbeat:      time.Duration(info.HeartbeatMillis) * time.Millisecond,
		Log:            log,

		VolumeTransport: cli.VolumeTransport, // remote volume mounts (volfs.go)
		VolumeShim:      func() ([]string, []byte, bool) { return volumeShim(cli) },
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "macro agent %s: node %s joins cluster %s through %s\n", version, node.Name, info.Cluster, strings.Join(servers, ", "))
	go cli.RunTunnels(ctx, node.Name, ag)
	if nm != nil {
		go nm.run(ctx, cli.WatchMesh(ctx, node.Name), func(ctx context.Context) error {
			return server.RegisterNode(ctx, ag.Node())
		})
	}
	err = ag.Run(ctx)
	log.Info("agent stopped; containers keep running")
	return err
}

// clusterCA is the CA the agent verifies the servers with: --ca, else the
// one pinned on a previous start, else the server's, fetched and checked
// against --ca-hash (or trusted on first use, with its hash printed).
func clusterCA(ctx context.Context, servers []string, cfg agentConfig, dataDir string) (*x509.CertPool, error) {
	server := servers[0]
	pinned := filepath.Join(dataDir, "cluster-ca.pem")
	var bundle []byte
	var err error
	switch {
	case cfg.caFile != "":
		if bundle, err = os.ReadFile(cfg.caFile); err != nil {
			return nil, fmt.Errorf("--ca: %w", err)
		}
	default:
		// The CA pinned on an earlier start, unless --ca-hash names
		// another; else fetched from the servers.
		if bundle, err = os.ReadFile(pinned); err == nil && (cfg.caHash == "" || bundleHas(bundle, cfg.caHash)) {
			break
		}
		if bundle, err = fetchCABundle(ctx, servers); err != nil {
			return nil, err
		}
	}
	certs, err := parsePEMCerts(bundle)
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	if cfg.caHash != "" {
		if !bundleHas(bundle, cfg.caHash) {
			return nil, fmt.Errorf("the CA of %s is %s, not the --ca-hash given: refusing to join", server, auth.CAHash(certs[0]))
		}
	} else if cfg.caFile == "" {
		if _, err := os.Stat(pinned); err != nil {
			fmt.Fprintf(os.Stderr, "macro agent: trusting the CA of %s on first use: %s\n  (pass --ca-hash to check it)\n", server, auth.CAHash(certs[0]))
		}
	}
	if err := os.WriteFile(pinned, bundle, 0o644); err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// fetchCABundle fetches the CA of the first server that answers, without
// verifying it (the caller pins it), waiting while none is up.
func fetchCABundle(ctx context.Context, servers []string) ([]byte, error) {
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	for {
		for _, server := range servers {
			c, err := fetchCA(ctx, hc, strings.TrimSuffix(server, "/")+"/apis/macro/v1/ca")
			if err == nil {
				return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}), nil
			}
			var nerr net.Error
			if !errors.As(err, &nerr) {
				return nil, fmt.Errorf("fetching the CA of %s: %w", server, err)
			}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

// bundleHas tells whether a PEM bundle holds the CA of hash.
func bundleHas(bundle []byte, hash string) bool {
	certs, err := parsePEMCerts(bundle)
	if err != nil {
		return false
	}
	for _, c := range certs {
		if strings.EqualFold(auth.CAHash(c), hash) {
			return true
		}
	}
	return false
}

func parsePEMCerts(b []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no certificate in the bundle")
	}
	return certs, nil
}

// localAgent is the agent this server runs, nil when it runs none.
func localAgent(ag *agent.Agent, runs bool) *agent.Agent {
	if !runs {
		return nil
	}
	return ag
}

// serverAPIURL is how the other servers reach this server's API port: its
// --api-addr host when that names one, else the host of its etcd peer URL;
// "" for a server that no other reaches (a cluster of one).
func serverAPIURL(apiL net.Listener, apiAddr, dataDir string) string {
	if apiL == nil {
		return ""
	}
	_, port, err := net.SplitHostPort(apiL.Addr().String())
	if err != nil {
		return ""
	}
	host, _, _ := net.SplitHostPort(apiAddr)
	if ip := net.ParseIP(host); host == "" || ip != nil && (ip.IsUnspecified() || ip.IsLoopback()) {
		b, err := os.ReadFile(filepath.Join(dataDir, peerDirName, peerURLFile))
		if err != nil {
			return ""
		}
		u, err := url.Parse(strings.TrimSpace(string(b)))
		if err != nil || u.Hostname() == "" {
			return ""
		}
		host = u.Hostname()
	}
	return "https://" + net.JoinHostPort(host, port)
}

// linkServer joins this server to the others of its cluster: it says where
// its API port is (on a lease), and makes its node a credential (kept
// across restarts) and a client of the node protocol with it, with
// which it asks the others for images it lacks (peerImages) and its own
// node keeps tunnels to them (keepPeerTunnels), as a remote agent does.
func linkServer(ctx context.Context, st *store.Store, ca *auth.CA, dataDir, name, self string, log *slog.Logger) (*nodeproto.Client, error) {
	go st.AdvertiseServer(ctx, name, self, 10)
	// The one-time node token of earlier versions goes; the node's
	// credential stays across restarts (nodecreds.go).
	idFile := filepath.Join(dataDir, "server-node-token")
	if old, err := os.ReadFile(idFile); err == nil {
		if err := st.DeleteJoinToken(ctx, strings.TrimSpace(string(old))); err != nil && !errors.Is(err, store.ErrNotFound) {
			log.Warn("remove the node token of a previous start", "err", err)
		}
		os.Remove(idFile)
	}
	raw, err := serverNodeToken(ctx, st, dataDir, name)
	if err != nil {
		return nil, fmt.Errorf("this server's node credential: %w", err)
	}
	return nodeproto.NewClient(nodeproto.ClientConfig{Servers: []string{self}, Token: raw, RootCAs: ca.Pool(), CAPEM: ca.CertPEM, Log: log, Peer: true})
}

// keepPeerTunnels keeps a tunnel from this server's own node to every
// other server, so that they reach its pods as they reach a remote agent's.
func keepPeerTunnels(ctx context.Context, st *store.Store, cli *nodeproto.Client, name string, ag *agent.Agent) {
	linked := map[string]bool{}
	for {
		servers, err := st.Servers(ctx)
		if err == nil {
			for peer, u := range servers {
				if peer == name || linked[u] {
					continue
				}
				linked[u] = true
				go cli.KeepTunnel(ctx, u, ag.Node().Name, ag)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// peerImages brings an image that this server lacks from the others of its
// cluster, each of which keeps the images it was given: a docker-archive
// over the node protocol, loaded into this server's store (quota checked
// as for any load). It works once linkServerNode gave it a client.
type peerImages struct {
	st     *store.Store
	images *image.Store

	mu   sync.Mutex
	cli  *nodeproto.Client
	self string
	// fetches share one transfer per tenant and image.
	fetches singleflight.Group
}

func (p *peerImages) set(cli *nodeproto.Client, self string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cli, p.self = cli, self
}

// Fetch is docker.Config.FetchImage.
func (p *peerImages) Fetch(ctx context.Context, tenant, ref string) error {
	p.mu.Lock()
	cli, self := p.cli, p.self
	p.mu.Unlock()
	if cli == nil {
		return errors.New("this server has no other servers to ask")
	}
	_, err, _ := p.fetches.Do(tenant+"\x00"+ref, func() (any, error) {
		servers, err := p.st.Servers(ctx)
		if err != nil {
			return nil, err
		}
		last := fmt.Errorf("no other server has %s", ref)
		for name, u := range servers {
			if name == self {
				continue
			}
			rc, err := cli.FetchImageFrom(ctx, u, tenant, ref)
			if err != nil {
				last = err
				continue
			}
			// A copy of what the cluster has: its quota was counted
			// where it landed first.
			_, err = p.images.Tenant(tenant).Load(image.WithReplica(ctx), rc, nil)
			rc.Close()
			return nil, err
		}
		return nil, last
	})
	return err
}

// fetchForNode is agent.Config.FetchImage of the server's own node: an
// image of a pod placed here that this server lacks comes from another
// server; when none has it, the agent reports the store's own "No such
// image", as a single server does.
func (p *peerImages) fetchForNode(log *slog.Logger) func(ctx context.Context, tenant, id string) error {
	return func(ctx context.Context, tenant, id string) error {
		err := p.Fetch(ctx, tenant, id)
		if err == nil {
			return nil
		}
		log.Debug("image of a pod from the other servers", "image", id, "err", err)
		_, lerr := p.images.LookupID(ctx, id)
		if lerr == nil {
			return nil
		}
		return lerr
	}
}
