// Command dnsload measures a DNS server's answers per second: C workers,
// each with its own UDP socket, send queries one after another (each waits
// for its answer) until N are answered, and it prints queries/s and
// latency percentiles. bench/net.sh runs it inside a pod's network
// namespace against the node's DNS server.
package main

import (
	"flag"
	"fmt"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"
)

func main() {
	server := flag.String("server", "[fd6d:6163:726f::53]:53", "DNS server HOST:PORT")
	name := flag.String("name", "web", "name to ask for")
	qtype := flag.String("type", "A", "query type: A or AAAA")
	n := flag.Int("n", 50000, "queries in all")
	c := flag.Int("c", 4, "concurrent workers")
	flag.Parse()
	t := mdns.TypeA
	if *qtype == "AAAA" {
		t = mdns.TypeAAAA
	}
	var next, fails atomic.Int64
	lat := make([][]time.Duration, *c)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range *c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := mdns.Dial("udp", *server)
			if err != nil {
				fmt.Fprintln(os.Stderr, "dnsload:", err)
				os.Exit(1)
			}
			defer conn.Close()
			m := new(mdns.Msg)
			m.SetQuestion(mdns.Fqdn(*name), t)
			for next.Add(1) <= int64(*n) {
				m.Id = mdns.Id()
				t0 := time.Now()
				conn.SetDeadline(t0.Add(2 * time.Second))
				if err := conn.WriteMsg(m); err != nil {
					fails.Add(1)
					continue
				}
				r, err := conn.ReadMsg()
				if err != nil || r.Id != m.Id || r.Rcode != mdns.RcodeSuccess || len(r.Answer) == 0 {
					fails.Add(1)
					continue
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	pct := func(p float64) time.Duration {
		if len(all) == 0 {
			return 0
		}
		return all[int(p*float64(len(all)-1))]
	}
	fmt.Printf("dnsload: %d answered, %d failed, %d workers, %.2fs: %.0f queries/s, latency p50 %v p99 %v\n",
		len(all), fails.Load(), *c, el.Seconds(), float64(len(all))/el.Seconds(), pct(0.5), pct(0.99))
	if fails.Load() > 0 {
		os.Exit(1)
	}
}
