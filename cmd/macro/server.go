package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/macro-cloud/macro/access"
	"github.com/macro-cloud/macro/agent"
	"github.com/macro-cloud/macro/api"
	"github.com/macro-cloud/macro/api/docker"
	"github.com/macro-cloud/macro/auth"
	"github.com/macro-cloud/macro/control"
	"github.com/macro-cloud/macro/image"
	"github.com/macro-cloud/macro/nodeproto"
	"github.com/macro-cloud/macro/registry"
	"github.com/macro-cloud/macro/runtime/sandbox"
	"github.com/macro-cloud/macro/store"
	"github.com/macro-cloud/macro/types"
)

type serverConfig struct {
	dataDir        string
	listen         []string
	etcdEndpoints  string
	defaultRuntime string
	nodeName       string
	logLevel       string
	apiAddr        string
	apiAddrSet     bool // --api-addr was given: failing to listen is fatal
	apiSANs        []string
	clusterName    string
	ingress        ingressConfig
	domainDNS      string
	net            netConfig
	nodeTTL        time.Duration
	runAgent       bool
	mesh           meshConfig
	cluster        clusterConfig
	s3Addr         string
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func serverMain(args []string) int {
	var cfg serverConfig
	fs := flag.NewFlagSet("macro server", flag.ContinueOnError)
	fs.StringVar(&cfg.dataDir, "data-dir", "/var/lib/macro", "directory that keeps all state; the Docker API socket is DATA-DIR/docker.sock")
	fs.Var((*listFlag)(&cfg.listen), "listen", "extra Docker API listener, tcp://127.0.0.1:PORT (loopback only until TLS lands); repeatable")
	fs.StringVar(&cfg.etcdEndpoints, "etcd-endpoints", "", "comma-separated external etcd endpoints (default: embedded single member)")
	fs.StringVar(&cfg.defaultRuntime, "default-runtime", "sandbox", "runtime of containers that name none: sandbox (runc) or gvisor (runsc)")
	fs.StringVar(&cfg.nodeName, "node-name", "", "name of this machine's node (default: hostname)")
	fs.StringVar(&cfg.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&cfg.apiAddr, "api-addr", ":7443", "the tenant-facing TLS port, HOST:PORT: the Docker API (client certificates), the native API and the registry; \"off\" disables it")
	fs.Var((*listFlag)(&cfg.apiSANs), "api-san", "extra DNS name or IP address of the API port's certificate; repeatable, comma-separated")
	fs.StringVar(&cfg.clusterName, "cluster-name", "", "name of the cluster, shown to tenants (kra names docker contexts <cluster>.<tenant>) (default: the node name of the cluster's first server)")
	fs.StringVar(&cfg.ingress.httpAddr, "ingress-http", ":80", "HTTP ingress address (routes from kr.ingress labels; HTTPS routes redirect); \"off\" disables it")
	fs.StringVar(&cfg.ingress.httpsAddr, "ingress-https", ":443", "HTTPS ingress address; \"off\" disables it")
	fs.StringVar(&cfg.domainDNS, "domain-resolver", "", "DNS server, HOST:PORT, that checks the TXT records proving custom domains (default: the system's resolver)")
	fs.StringVar(&cfg.ingress.domain, "domain", "", "the cluster's domain: a `*` in an ingress host is the tenant's default domain, <tenant>.<domain>")
	cfg.ingress.addFlags(fs)
	cfg.cluster.addFlags(fs)
	fs.StringVar(&cfg.s3Addr, "s3-addr", "", "S3 endpoint over the tenants' volumes, HOST:PORT (TLS, path-style: https://HOST:PORT/<volume>/<key>); off when empty")
	fs.BoolVar(&cfg.net.vpc, "vpc", true, "wire pods into their tenants' VPCs (addresses, routes, DNS); false gives them loopback only")
	fs.BoolVar(&cfg.net.egress, "egress", true, "let pods reach addresses outside their VPC through this node (masqueraded)")
	fs.Var((*listFlag)(&cfg.net.dnsUpstream), "dns-upstream", "resolver HOST:PORT for names outside the VPC; repeatable (default: the host's /etc/resolv.conf)")
	fs.DurationVar(&cfg.nodeTTL, "node-ttl", control.DefaultNodeTTL, "a node whose heartbeats stop for this long is down: its pods are placed elsewhere")
	fs.BoolVar(&cfg.runAgent, "agent", true, "also run a node agent on this machine (false: a server that runs no pods)")
	fs.BoolVar(&cfg.mesh.on, "mesh", true, "join this machine's node to the other nodes' VPCs over WireGuard (needs --vpc)")
	fs.IntVar(&cfg.mesh.port, "mesh-port", 51820, "UDP port of the mesh (0, or taken: any free port)")
	fs.StringVar(&cfg.net.meshImpl, "mesh-impl", "auto", "the mesh's WireGuard device: kernel (the kernel's module), userspace (wireguard-go, in a process that outlives agent restarts) or auto (kernel where it can make one)")
	fs.StringVar(&cfg.mesh.endpoint, "mesh-endpoint", "", "IP[:PORT] other nodes reach this node's mesh on (default: the host of --api-addr, else this machine's default route's address)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	fs.Visit(func(f *flag.Flag) {
		cfg.apiAddrSet = cfg.apiAddrSet || f.Name == "api-addr"
		cfg.ingress.httpSet = cfg.ingress.httpSet || f.Name == "ingress-http"
		cfg.ingress.httpsSet = cfg.ingress.httpsSet || f.Name == "ingress-https"
	})
	if cfg.apiAddr == "off" {
		cfg.apiAddr = ""
	}
	log, err := newLogger(cfg.logLevel)
	if err != nil {
		fmt.Fprintf(os.Stderr, "macro: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := runServer(ctx, cfg, log); err != nil {
		log.Error("server failed", "err", err)
		return 1
	}
	return 0
}

func runServer(ctx context.Context, cfg serverConfig, log *slog.Logger) error {
	if os.Geteuid() != 0 {
		return errors.New("macro server must run as root: it creates namespaces, cgroups and mounts")
	}
	dataDir, err := filepath.Abs(cfg.dataDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dataDir, 0o711); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	var listeners []net.Listener
	sock := filepath.Join(dataDir, "docker.sock")
	os.Remove(sock)
	ul, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("listen %s: %w", sock, err)
	}
	os.Chmod(sock, 0o660)
	listeners = append(listeners, ul)
	for _, l := range cfg.listen {
		addr, ok := strings.CutPrefix(l, "tcp://")
		if !ok {
			return fmt.Errorf("--listen %s: only tcp://HOST:PORT is supported", l)
		}
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return fmt.Errorf("--listen %s: %w", l, err)
		}
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return fmt.Errorf("--listen %s: plain TCP is allowed on loopback only (TLS and tenants come later)", l)
		}
		tl, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("listen %s: %w", l, err)
		}
		listeners = append(listeners, tl)
	}
	adminSock := filepath.Join(dataDir, adminSocketName)
	os.Remove(adminSock)
	adminL, err := net.Listen("unix", adminSock)
	if err != nil {
		return fmt.Errorf("listen %s: %w", adminSock, err)
	}
	defer adminL.Close()
	if err := os.Chmod(adminSock, 0o600); err != nil {
		return fmt.Errorf("admin socket: %w", err)
	}
	var apiL net.Listener
	if cfg.apiAddr != "" {
		apiL, err = net.Listen("tcp", cfg.apiAddr)
		switch {
		case err != nil && cfg.apiAddrSet:
			return fmt.Errorf("--api-addr %s: %w", cfg.apiAddr, err)
		case err != nil:
			log.Warn("the API port is off: cannot listen on the default address (choose one with --api-addr HOST:PORT)", "addr", cfg.apiAddr, "err", err)
		default:
			defer apiL.Close()
		}
	}

	st, cluster, err := openStore(ctx, cfg, dataDir, log)
	if err != nil {
		return err
	}
	defer st.Close()

	ca, caCreated, err := auth.LoadOrCreateCA(filepath.Join(dataDir, "ca"), cluster)
	if err != nil {
		return fmt.Errorf("cluster CA: %w", err)
	}
	if caCreated {
		log.Info("cluster CA created", "dir", filepath.Join(dataDir, "ca"))
	}
	// Client certificates are checked against the revocation list from
	// the first request on; a watch keeps it current.
	revocations := auth.NewRevocations(st, log)
	revRev, err := revocations.Load(ctx)
	if err != nil {
		return fmt.Errorf("revocation list: %w", err)
	}
	authn := auth.New(auth.Config{Store: st, Log: log, Revocations: revocations})

	images, err := image.Open(filepath.Join(dataDir, "images"), log)
	if err != nil {
		return fmt.Errorf("image store: %w", err)
	}
	// The image quota hook also keeps images from landing for a tenant
	// that is gone or being removed (an ingest that was under way when
	// its removal began).
	images.SetQuota(func(ctx context.Context, tenant string) (int64, error) {
		t, err := st.Tenant(ctx, tenant)
		switch {
		case errors.Is(err, store.ErrNotFound) && tenant == types.DefaultTenant:
			return 0, nil // the machine's own socket, before any tenant
		case errors.Is(err, store.ErrNotFound), err == nil && t.Deleting:
			return 0, fmt.Errorf("tenant %s does not exist or is being removed", tenant)
		}
		return t.Quota.ImageBytes, err
	})

	node := localNode(cfg.nodeName)
	peers := &peerImages{st: st, images: images}
	clusterImgs := newClusterImages(st, images, peers, node.Name, cfg.cluster.imageCopies, log)
	if err := clusterImgs.start(ctx); err != nil {
		return err
	}

	volumeKeys, err := access.LoadOrCreateKeys(filepath.Join(dataDir, access.KeyFile))
	if err != nil {
		return err
	}
	native := api.New(api.Config{Store: st, Auth: authn, CA: ca, Images: clusterImgs, Cluster: cluster, Domain: cfg.ingress.domain, Resolver: resolverAt(cfg.domainDNS), VolumeKeys: volumeKeys, Log: log})
	firstToken, err := firstStart(ctx, st, native, dataDir)
	if err != nil {
		return err
	}

	runtimes, names, err := openRuntimes(dataDir, cfg.defaultRuntime, log)
	if err != nil {
		return err
	}

	node.Runtimes = names
	netw, err := openNetwork(ctx, cfg.net, st.FollowTenantNets(ctx), dataDir, cluster, log)
	if err != nil {
		return err
	}
	var agentNet agent.Network
	if netw != nil {
		defer netw.Close()
		agentNet = netw
		cfg.ingress.dial = netw.DialContext
		native.SetVPC(true)
	}
	state := control.NewState(st, log)
	nodeAPI := control.NewNodeAPI(st, cfg.nodeTTL).WithState(state)
	tunnels := nodeproto.NewTunnels()
	defer tunnels.Close()
	var agentServer agent.Server = nodeAPI
	var nm *nodeMesh
	if netw != nil && cfg.mesh.on && cfg.runAgent {
		if nm = serverNodeMesh(ctx, cfg, netw, dataDir, cluster, node.Name, log); nm != nil {
			agentServer = meshServer{Server: nodeAPI, m: nm}
		}
	}
	volTransport := &volumeTransport{}
	ag, err := agent.New(agent.Config{
		Node:           node,
		DataDir:        dataDir,
		Server:         agentServer,
		Images:         images,
		Runtimes:       runtimes,
		DefaultRuntime: cfg.defaultRuntime,
		InitPath:       findInit(),
		Network:        agentNet,
		FetchImage:     peers.fetchForNode(log),
		Log:            log,

		VolumeTransport: volTransport.get, // remote volume mounts (volfs.go)
		VolumeShim:      volTransport.shim,
	})
	if err != nil {
		return err
	}
	images.SetInUseByTenant(func(tenant, imageID string) []string { return podsUsing(st, tenant, imageID) })
	native.SetVolumeFiles(ag)
	native.SetVolumeNodes(volumeNodes{local: node.Name, hasAgent: localAgent(ag, cfg.runAgent) != nil, tunnels: tunnels})
	defer ag.CloseAccess()
	volAccess := access.New(access.Config{Volumes: accessVolumes{st: st, ag: ag}, Store: st, Tokens: authn, Keys: volumeKeys, UploadDir: filepath.Join(dataDir, "s3-uploads"), Log: log})

	dockerAPI := docker.New(docker.Config{
		FetchImage: peers.Fetch,
		Cluster:    clusterImgs,
		Log:        log,
		Store:      st,
		Images:     images,
		Nodes:      clusterNodes{local: node.Name, agent: localAgent(ag, cfg.runAgent), tunnels: tunnels},
		Info: docker.Info{
			Name: node.Name, Version: version, DataDir: dataDir,
			DefaultRuntime: cfg.defaultRuntime, Runtimes: names,
			KernelVersion: node.Kernel, OS: "linux", Arch: goruntime.GOARCH,
			CPUs: node.CPUs, MemoryBytes: node.MemoryBytes,
		},
		TenantFromContext: true,
		LocalLogin: func(ctx context.Context, tenant, password string) (bool, error) {
			t, err := authn.VerifyToken(ctx, password)
			if errors.Is(err, auth.ErrBadToken) {
				return false, nil
			}
			return err == nil && t.Tenant == tenant, err
		},
	})
	native.SetVolumes(dockerAPI)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{}, 3)
	go state.Run(ctx)
	go func() {
		// Only the leader places pods and evicts those of down nodes; a
		// new term starts a new controller (with its grace for leases).
		leader := control.LeaderConfig{ID: node.Name, TTL: cfg.cluster.leaderTTL, Log: log}
		control.RunAsLeader(ctx, st, leader, func(ctx context.Context) {
			control.New(st, log).WithNodeTTL(cfg.nodeTTL).WithState(state).
				WithVolumes(replicaNodes{local: node.Name, agent: localAgent(ag, cfg.runAgent), tunnels: tunnels}).Run(ctx)
		})
		done <- struct{}{}
	}()
	if nm != nil {
		go nm.run(ctx, pollMesh(ctx, nodeAPI, node.Name), func(ctx context.Context) error {
			return agentServer.RegisterNode(ctx, ag.Node())
		})
	}
	if cfg.runAgent {
		go func() { ag.Run(ctx); done <- struct{}{} }()
	} else {
		done <- struct{}{}
	}
	go func() { dockerAPI.Run(ctx); done <- struct{}{} }()
	go revocations.Run(ctx, revRev)

	// The machine's own sockets: no credentials, tenant default.
	dockerH := dockerAPI.Handler()
	srv := &http.Server{Handler: auth.Local(types.DefaultTenant, dockerH), ReadHeaderTimeout: 30 * time.Second}
	serve := func(srv *http.Server, l net.Listener) {
		go func() {
			if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("serve", "addr", l.Addr().String(), "err", err)
			}
		}()
	}
	for _, l := range listeners {
		serve(srv, l)
	}
	servers := []*http.Server{srv}
	adminSrv := &http.Server{Handler: native.AdminHandler(), ReadHeaderTimeout: 30 * time.Second}
	serve(adminSrv, adminL)
	servers = append(servers, adminSrv)
	if apiL != nil {
		tlsCfg, err := apiTLSConfig(ca, serverHosts(cfg.apiAddr, node.Name, cfg.apiSANs))
		if err != nil {
			return err
		}
		reg, err := registry.New(registry.Config{Store: images, Fetch: peers.Fetch, Authenticate: authn.RegistryAuth, TenantActive: authn.TenantActive, KeyFile: filepath.Join(dataDir, "registry", "token.key"), Log: log})
		if err != nil {
			return err
		}
		go reg.Run(ctx)
		port := &apiPort{native: native.Handler(), registry: reg, dav: volAccess.WebDAV(), docker: authn.RequireCert(dockerH),
			nodes: nodeHandler(st, nodeAPI, images, peers, tunnels, cluster, cfg.nodeTTL, node.Name, localVolumeOps(localAgent(ag, cfg.runAgent)), log)}
		apiSrv := &http.Server{Handler: port, ReadHeaderTimeout: 30 * time.Second, TLSConfig: tlsCfg,
			ErrorLog: slog.NewLogLogger(log.With("subsystem", "api-port").Handler(), slog.LevelDebug)}
		serve(apiSrv, tls.NewListener(apiL, tlsCfg))
		servers = append(servers, apiSrv)
		if self := serverAPIURL(apiL, cfg.apiAddr, dataDir); self != "" {
			cli, err := linkServer(ctx, st, ca, dataDir, node.Name, self, log)
			if err != nil {
				return err
			}
			peers.set(cli, node.Name)
			volTransport.set(cli)
			if cfg.runAgent {
				go keepPeerTunnels(ctx, st, cli, node.Name, ag)
			}
		}
	}
	if cfg.s3Addr != "" {
		s3Srv, err := serveS3(cfg.s3Addr, ca, serverHosts(cfg.s3Addr, node.Name, cfg.apiSANs), volAccess, log)
		if err != nil {
			return err
		}
		servers = append(servers, s3Srv)
	}
	cfg.ingress.dataDir = dataDir
	if cfg.runAgent {
		cfg.ingress.node = node.Name
	}
	ingressServers, err := runIngress(ctx, cfg.ingress, st, ca, ag, tunnels, log)
	if err != nil {
		return err
	}
	servers = append(servers, ingressServers...)
	fmt.Fprintf(os.Stderr, "macro %s is up on node %s\n\n  export DOCKER_HOST=unix://%s\n  docker run --rm busybox echo hello\n\n", version, node.Name, sock)
	for _, l := range listeners[1:] {
		fmt.Fprintf(os.Stderr, "  (also on tcp://%s)\n", l.Addr())
	}
	if apiL != nil {
		fmt.Fprintf(os.Stderr, "  API port for tenants (Docker API over mutual TLS, native API): https://%s\n", apiL.Addr())
	}
	fmt.Fprintf(os.Stderr, "  admin: macro admin --data-dir %s tenant ls\n\n", dataDir)
	printFirstTenant(ctx, os.Stderr, authn, dataDir, cfg.apiAddr, firstToken)
	<-ctx.Done()
	log.Info("shutting down; containers keep running")
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	for _, srv := range servers {
		srv.Shutdown(sctx)
	}
	for i := 0; i < 3; i++ {
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
	}
	return nil
}

// newLogger is the process's logger, at --log-level level.
func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("bad --log-level %q", level)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// localNode describes this machine.
func localNode(name string) types.Node {
	if name == "" {
		name, _ = os.Hostname()
	}
	n := types.Node{Name: name, Arch: goruntime.GOARCH, OS: "linux", CPUs: goruntime.NumCPU(), Labels: map[string]string{"zone": "default"}}
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) == nil {
		n.MemoryBytes = int64(si.Totalram) * int64(si.Unit)
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		n.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	return n
}

// podsUsing lists the tenant's containers made from an image.
func podsUsing(st *store.Store, tenant, imageID string) []string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pods, err := st.Pods(ctx, tenant)
	if err != nil {
		return nil
	}
	var ids []string
	for _, p := range pods {
		if p.Spec.ImageID == imageID {
			ids = append(ids, p.ID)
		}
	}
	return ids
}

// findInit looks for a static tini (Debian's tini package) to run as
// PID 1 of pods started with --init, as Docker runs docker-init.
func findInit() string {
	for _, p := range []string{"/usr/bin/tini-static", "/usr/bin/docker-init"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p
		}
	}
	return ""
}

func shimMain(args []string) int { return sandbox.ShimMain(args) }
