// Command fakemacro stands in for `macro server` in testenv's own tests. It
// follows the conventions StartServer relies on (a socket at
// DIR/docker.sock answering /_ping, --listen tcp://ADDR, SIGTERM stops it)
// and, on POST /leak, leaves behind what a careless server would: a detached
// "shim" process that names the data directory on its command line and
// nested tmpfs mounts under the data directory.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) >= 2 && os.Args[1] == "shim" {
		for { // until killed
			time.Sleep(time.Hour)
		}
	}
	if len(os.Args) < 2 || os.Args[1] != "server" {
		fmt.Fprintln(os.Stderr, "usage: fakemacro server --data-dir DIR [--listen tcp://ADDR]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet("server", flag.ExitOnError)
	dataDir := fs.String("data-dir", "", "")
	listen := fs.String("listen", "", "")
	fs.Parse(os.Args[2:])
	if err := run(*dataDir, *listen); err != nil {
		fmt.Fprintln(os.Stderr, "fakemacro:", err)
		os.Exit(1)
	}
}

func run(dir, listen string) error {
	// Count the starts, so tests can tell a restart happened on the same dir.
	countFile := filepath.Join(dir, "starts")
	b, _ := os.ReadFile(countFile)
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if err := os.WriteFile(countFile, []byte(strconv.Itoa(n+1)), 0o644); err != nil {
		return err
	}
	sock := filepath.Join(dir, "docker.sock")
	os.Remove(sock)
	var lns []net.Listener
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return err
	}
	lns = append(lns, ln)
	if addr, ok := strings.CutPrefix(listen, "tcp://"); ok {
		tl, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		lns = append(lns, tl)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/_ping", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "OK") })
	mux.HandleFunc("/starts", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, n+1) })
	mux.HandleFunc("POST /leak", func(w http.ResponseWriter, r *http.Request) {
		pid, err := leak(dir)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprint(w, pid)
	})
	srv := &http.Server{Handler: mux}
	for _, l := range lns {
		go srv.Serve(l)
	}
	fmt.Println("fakemacro: serving on", sock, listen)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	fmt.Println("fakemacro: stopping")
	return srv.Shutdown(context.Background())
}

func leak(dir string) (int, error) {
	// A shim: its own session, not waited for, survives the server.
	self, err := os.Executable()
	if err != nil {
		return 0, err
	}
	cmd := exec.Command(self, "shim", "--state", filepath.Join(dir, "shim"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	pid := cmd.Process.Pid
	cmd.Process.Release()
	outer := filepath.Join(dir, "mnt", "with space")
	inner := filepath.Join(outer, "inner")
	if err := os.MkdirAll(outer, 0o755); err != nil {
		return 0, err
	}
	if err := syscall.Mount("tmpfs", outer, "tmpfs", 0, "size=1m"); err != nil {
		return 0, err
	}
	if err := os.MkdirAll(inner, 0o755); err != nil {
		return 0, err
	}
	if err := syscall.Mount("tmpfs", inner, "tmpfs", 0, "size=1m"); err != nil {
		return 0, err
	}
	return pid, nil
}
