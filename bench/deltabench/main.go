// Command deltabench is the measuring half of bench/delta.sh: it makes the
// data, changes it, and runs the delta-sync engine over HTTP on loopback
// (a sender process and a receiver process, as rsync's daemon and client),
// counting the bytes on the wire at the TCP connection.
//
//	deltabench gen    -dir D -size 1073741824 -files 8 -seed 1
//	deltabench mutate -dir D -fraction 0.01 -places 1024 -seed 2
//	deltabench serve  -dir D [-state S] -listen 127.0.0.1:PORT
//	deltabench pull   -url http://127.0.0.1:PORT -dst D -state S [-nosync]
//	deltabench local  -src D [-srcstate S] -dst D -state S [-nosync]   both sides in one process
//
// pull and local print the bytes on the wire (TCP payload both ways), the
// wall time and, for local, the CPU time of both sides (getrusage).
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/macro-cloud/macro/delta"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: deltabench gen|mutate|serve|pull [flags]")
		os.Exit(2)
	}
	cmds := map[string]func([]string) error{"gen": gen, "mutate": mutate, "serve": serve, "pull": pull, "local": local}
	fn, ok := cmds[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "deltabench: unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
	if err := fn(os.Args[2:]); err != nil {
		fmt.Fprintf(os.Stderr, "deltabench %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func fill(r *rand.Rand, b []byte) {
	for i := 0; i < len(b); i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < len(b); j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
}

// gen writes files of random content that add up to size.
func gen(args []string) error {
	fs := flag.NewFlagSet("gen", flag.ExitOnError)
	dir := fs.String("dir", "", "directory")
	size := fs.Int64("size", 1<<30, "total bytes")
	files := fs.Int("files", 8, "files")
	seed := fs.Uint64("seed", 1, "seed")
	fs.Parse(args)
	r := rand.New(rand.NewPCG(*seed, 1))
	buf := make([]byte, 1<<20)
	for i := range *files {
		p := filepath.Join(*dir, fmt.Sprintf("d%d/file%02d.bin", i%3, i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		f, err := os.Create(p)
		if err != nil {
			return err
		}
		for left := *size / int64(*files); left > 0; {
			n := min(left, int64(len(buf)))
			fill(r, buf[:n])
			if _, err := f.Write(buf[:n]); err != nil {
				return err
			}
			left -= n
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	return nil
}

// mutate overwrites fraction of the tree's bytes with random bytes, in
// places runs of equal length at random offsets of random files.
func mutate(args []string) error {
	fs := flag.NewFlagSet("mutate", flag.ExitOnError)
	dir := fs.String("dir", "", "directory")
	fraction := fs.Float64("fraction", 0.01, "share of the bytes to change")
	places := fs.Int("places", 1024, "number of changed runs")
	seed := fs.Uint64("seed", 2, "seed")
	fs.Parse(args)
	var paths []string
	var sizes []int64
	var total int64
	filepath.Walk(*dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			paths, sizes = append(paths, p), append(sizes, info.Size())
			total += info.Size()
		}
		return nil
	})
	if total == 0 {
		return fmt.Errorf("no data in %s", *dir)
	}
	run := int64(float64(total) * *fraction / float64(*places))
	r := rand.New(rand.NewPCG(*seed, 2))
	buf := make([]byte, run)
	for range *places {
		i := r.IntN(len(paths))
		if sizes[i] <= run {
			continue
		}
		off := r.Int64N(sizes[i] - run)
		fill(r, buf)
		f, err := os.OpenFile(paths[i], os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		_, err = f.WriteAt(buf, off)
		f.Close()
		if err != nil {
			return err
		}
	}
	fmt.Printf("changed %d runs of %d bytes (%d bytes, %.2f%% of %d)\n", *places, run, run*int64(*places), 100*float64(run*int64(*places))/float64(total), total)
	return nil
}

// serve is the sender: the engine's HTTP source for dir.
func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	dir := fs.String("dir", "", "directory")
	listen := fs.String("listen", "127.0.0.1:0", "address")
	state := fs.String("state", "", "the source's state directory (its index)")
	fs.Parse(args)
	return http.ListenAndServe(*listen, sourceHandler(*dir, *state))
}

// sourceHandler serves dir as a volume's source is served: with a state
// directory (the source's index, as agent and api give it), when state is
// not empty.
func sourceHandler(dir, state string) http.Handler {
	src := &delta.TreeSource{Root: dir, State: state}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		delta.Serve(w, r, strings.TrimPrefix(r.URL.Path, "/"), src, nil)
	})
}

// local runs the sender on a loopback port of this process and pulls
// from it.
func local(args []string) error {
	fs := flag.NewFlagSet("local", flag.ExitOnError)
	src := fs.String("src", "", "the source directory")
	srcState := fs.String("srcstate", "", "the source's state directory (its index)")
	rest := fs.Args
	fs.String("dst", "", "directory")
	fs.String("state", "", "the receiver's state directory")
	fs.Bool("nosync", false, "skip syncfs")
	fs.String("cpuprofile", "", "write a CPU profile")
	fs.Parse(args)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go http.Serve(l, sourceHandler(*src, *srcState))
	var pargs []string
	fs.Visit(func(f *flag.Flag) {
		if f.Name != "src" && f.Name != "srcstate" {
			pargs = append(pargs, "-"+f.Name+"="+f.Value.String())
		}
	})
	_ = rest
	return pull(append(pargs, "-url=http://"+l.Addr().String()))
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// countConn counts the bytes a connection carries, both ways.
type countConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func (c countConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// pull is the receiver: a sync from the source at url into dst.
func pull(args []string) error {
	fs := flag.NewFlagSet("pull", flag.ExitOnError)
	url := fs.String("url", "", "the source")
	dst := fs.String("dst", "", "directory")
	state := fs.String("state", "", "the receiver's state directory")
	nosync := fs.Bool("nosync", false, "skip syncfs before the switch (as rsync does not sync)")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile")
	fs.Parse(args)
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	var wire atomic.Int64
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return countConn{c, &wire}, nil
	}}
	remote := &delta.Remote{URL: *url, Client: &http.Client{Transport: tr}}
	start, cpu0 := time.Now(), cpuSeconds()
	st, err := delta.Sync(context.Background(), remote, &delta.TreeReceiver{Root: *dst, State: *state, NoSync: *nosync})
	if err != nil {
		return err
	}
	sent, recv := remote.Bytes()
	fmt.Printf("wire_bytes=%d seconds=%.3f cpu_seconds=%.3f body_sent=%d body_received=%d files=%d chunks=%d sent_chunks=%d sent_chunk_bytes=%d\n",
		wire.Load(), time.Since(start).Seconds(), cpuSeconds()-cpu0, sent, recv, st.Files, st.Chunks, st.SentChunks, st.SentBytes)
	return nil
}
