package main

import (
	"context"
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

	"github.com/macro-cloud/macro/agent"
	"github.com/macro-cloud/macro/api/docker"
	"github.com/macro-cloud/macro/control"
	"github.com/macro-cloud/macro/image"
	"github.com/macro-cloud/macro/runtime"
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
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "macro: bad --log-level %q\n", cfg.logLevel)
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
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

	st, err := store.Open(ctx, store.Config{DataDir: dataDir, Endpoints: splitList(cfg.etcdEndpoints), Log: log})
	if err != nil {
		return err
	}
	defer st.Close()

	images, err := image.Open(filepath.Join(dataDir, "images"), log)
	if err != nil {
		return fmt.Errorf("image store: %w", err)
	}

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
	if _, ok := runtimes[cfg.defaultRuntime]; !ok {
		return fmt.Errorf("default runtime %q is not available on this machine", cfg.defaultRuntime)
	}
	var names []string
	for n := range runtimes {
		names = append(names, n)
	}

	node := localNode(cfg.nodeName)
	node.Runtimes = names
	nodeAPI := control.NewNodeAPI(st)
	ag, err := agent.New(agent.Config{
		Node:           node,
		DataDir:        dataDir,
		Server:         nodeAPI,
		Images:         images,
		Runtimes:       runtimes,
		DefaultRuntime: cfg.defaultRuntime,
		InitPath:       findInit(),
		Log:            log,
	})
	if err != nil {
		return err
	}
	images.SetInUse(func(imageID string) []string { return podsUsing(st, imageID) })

	api := docker.New(docker.Config{
		Log:    log,
		Store:  st,
		Images: images,
		Nodes:  localNodes{name: node.Name, agent: ag},
		Info: docker.Info{
			Name: node.Name, Version: version, DataDir: dataDir,
			DefaultRuntime: cfg.defaultRuntime, Runtimes: names,
			KernelVersion: node.Kernel, OS: "linux", Arch: goruntime.GOARCH,
			CPUs: node.CPUs, MemoryBytes: node.MemoryBytes,
		},
	})

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{}, 3)
	go func() { control.New(st, log).Run(ctx); done <- struct{}{} }()
	go func() { ag.Run(ctx); done <- struct{}{} }()
	go func() { api.Run(ctx); done <- struct{}{} }()

	srv := &http.Server{Handler: api.Handler(), ReadHeaderTimeout: 30 * time.Second}
	for _, l := range listeners {
		go func() {
			if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("serve", "addr", l.Addr().String(), "err", err)
			}
		}()
	}
	fmt.Fprintf(os.Stderr, "macro %s is up on node %s\n\n  export DOCKER_HOST=unix://%s\n  docker run --rm busybox echo hello\n\n", version, node.Name, sock)
	for _, l := range listeners[1:] {
		fmt.Fprintf(os.Stderr, "  (also on tcp://%s)\n", l.Addr())
	}
	<-ctx.Done()
	log.Info("shutting down; containers keep running")
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	srv.Shutdown(sctx)
	for i := 0; i < 3; i++ {
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
	}
	return nil
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

// localNodes hands the API the in-process agent of the single-machine cloud.
type localNodes struct {
	name  string
	agent *agent.Agent
}

func (l localNodes) Node(name string) (docker.Node, error) {
	if name != l.name {
		return nil, fmt.Errorf("node %s is not reachable from this server", name)
	}
	return l.agent, nil
}

func podsUsing(st *store.Store, imageID string) []string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pods, err := st.Pods(ctx, "")
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
