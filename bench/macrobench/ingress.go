package main

import (
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/macro-cloud/macro/ingress"
)

// backendMain serves a static page (the backend both proxies stand in
// front of) until SIGTERM.
func backendMain(args []string) error {
	fs := flag.NewFlagSet("backend", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address")
	size := fs.Int("size", 1024, "bytes of the page")
	fs.Parse(args)
	body := []byte(strings.Repeat("x", *size))
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	fmt.Println(l.Addr())
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	})}
	go srv.Serve(l)
	waitSignal()
	return srv.Close()
}

// ingressMain runs macro's ingress proxy alone (the code the server runs,
// without the store feed) with one route, Host -> backend, until SIGTERM.
func ingressMain(args []string) error {
	fs := flag.NewFlagSet("ingress", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address of the proxy (plain HTTP)")
	backend := fs.String("backend", "", "backend HOST:PORT")
	host := fs.String("host", "bench.test", "host name of the route")
	profile := fs.String("cpuprofile", "", "write a CPU profile of the proxy here")
	fs.Parse(args)
	if *profile != "" {
		f, err := os.Create(*profile)
		if err != nil {
			return err
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	ap, err := netip.ParseAddrPort(*backend)
	if err != nil {
		return fmt.Errorf("-backend: %w", err)
	}
	p := ingress.NewProxy(ingress.Options{}, nil, slog.New(slog.DiscardHandler))
	p.SetTable(ingress.Build(ingress.Config{Verified: map[string][]string{"bench": {*host}}}, []ingress.Backend{{
		Tenant: "bench", Pod: "backend", Created: time.Now(), Addr: ap.Addr(), Ready: true,
		Labels: map[string]string{"kr.ingress." + strconv.Itoa(int(ap.Port())): "http://" + *host},
	}}))
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	fmt.Println(l.Addr())
	srv := ingress.Server(p, nil, slog.New(slog.DiscardHandler))
	go srv.Serve(l)
	waitSignal()
	return srv.Close()
}

func waitSignal() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
