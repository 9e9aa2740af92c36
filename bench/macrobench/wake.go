package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// wakeMain measures what auto-suspend adds to a request: the latency of
// requests through the ingress to a running pod, and of the first request
// to the same pod once it is suspended (which wakes it). The server must
// run its ingress on -ingress with --domain D; the pod is busybox httpd
// with kr.suspend=1s.
func wakeMain(args []string) error {
	fs := flag.NewFlagSet("wake", flag.ExitOnError)
	sock := fs.String("socket", "", "Docker API unix socket")
	ing := fs.String("ingress", "", "the server's HTTP ingress, HOST:PORT")
	domain := fs.String("domain", "", "the server's --domain")
	n := fs.Int("n", 30, "wakes measured (each waits for a suspension, 1-2 s)")
	img := fs.String("image", "busybox", "image")
	fs.Parse(args)
	if *ing == "" || *domain == "" {
		return fmt.Errorf("-ingress and -domain are required")
	}
	a := newAPI(*sock)
	var cr struct{ Id string }
	err := a.call("POST", "/containers/create", map[string]any{
		"Image": *img,
		"Cmd":   []string{"sh", "-c", "mkdir /w && echo awake > /w/index.html && exec httpd -f -p 8080 -h /w"},
		"Labels": map[string]string{
			"kr.ingress.8080": "http://wake.*",
			"kr.suspend":      "1s",
		},
	}, &cr)
	if err != nil {
		return err
	}
	defer a.remove(cr.Id)
	if err := a.start(cr.Id); err != nil {
		return err
	}
	host := "wake.default." + *domain
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, *ing)
		},
		DisableKeepAlives: true, // each request a new connection, as a first visitor's
	}, Timeout: 30 * time.Second}
	get := func() (time.Duration, error) {
		t0 := time.Now()
		resp, err := client.Get("http://" + host + "/")
		if err != nil {
			return 0, err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		d := time.Since(t0)
		if resp.StatusCode != 200 || strings.TrimSpace(string(b)) != "awake" {
			return 0, fmt.Errorf("status %d: %s", resp.StatusCode, b)
		}
		return d, nil
	}
	suspended := func() bool {
		var c struct {
			State struct{ Suspend *struct{ Suspended bool } }
		}
		return a.call("GET", "/containers/"+cr.Id+"/json", nil, &c) == nil && c.State.Suspend != nil && c.State.Suspend.Suspended
	}
	// Until the route serves.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := get(); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the route never served")
		}
		time.Sleep(100 * time.Millisecond)
	}
	var running, woken []time.Duration
	for i := 0; i < *n; i++ {
		// Running: a burst, so the pod stays awake.
		for j := 0; j < 5; j++ {
			d, err := get()
			if err != nil {
				return err
			}
			running = append(running, d)
		}
		deadline := time.Now().Add(30 * time.Second)
		for !suspended() {
			if time.Now().After(deadline) {
				return fmt.Errorf("the pod was never suspended")
			}
			time.Sleep(50 * time.Millisecond)
		}
		d, err := get()
		if err != nil {
			return fmt.Errorf("request to the suspended pod: %w", err)
		}
		woken = append(woken, d)
	}
	r, w := summarize(running), summarize(woken)
	fmt.Printf("\nwake through the ingress: new connection per request, %d wakes\n", *n)
	fmt.Printf("  %-34s %6s %8s %8s %8s\n", "request", "n", "p50 ms", "p99 ms", "max ms")
	fmt.Printf("  %-34s %6d %8s %8s %8s\n", "to a running pod", len(running), ms(r.p50), ms(r.p99), ms(r.max))
	fmt.Printf("  %-34s %6d %8s %8s %8s\n", "first to a suspended pod (wakes it)", len(woken), ms(w.p50), ms(w.p99), ms(w.max))
	fmt.Printf("  added by the wake: p50 %s ms, p99 %s ms\n", ms(w.p50-r.p50), ms(w.p99-r.p99))
	return nil
}
