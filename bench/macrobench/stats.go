package main

import (
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
	"time"
)

// summary is the distribution of a set of durations.
type summary struct {
	n                            int
	min, p50, p90, p99, max, avg time.Duration
}

// summarize uses the nearest-rank percentile: p99 of 200 samples is the
// 198th smallest.
func summarize(ds []time.Duration) summary {
	if len(ds) == 0 {
		return summary{}
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	rank := func(q float64) time.Duration {
		i := int(math.Ceil(q*float64(len(s)))) - 1
		return s[max(i, 0)]
	}
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return summary{len(s), s[0], rank(0.5), rank(0.9), rank(0.99), s[len(s)-1], sum / time.Duration(len(s))}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/1e6) }

// printTable prints one row per measured quantity, in milliseconds.
func printTable(title string, rows []row) {
	fmt.Printf("\n%s\n", title)
	w := 8
	for _, r := range rows {
		w = max(w, len(r.name))
	}
	fmt.Printf("  %-*s %5s %7s %7s %7s %7s %7s %7s\n", w, "(ms)", "n", "min", "p50", "p90", "p99", "max", "mean")
	for _, r := range rows {
		s := summarize(r.ds)
		fmt.Printf("  %-*s %5d %7s %7s %7s %7s %7s %7s\n", w, r.name, s.n, ms(s.min), ms(s.p50), ms(s.p90), ms(s.p99), ms(s.max), ms(s.avg))
	}
}

type row struct {
	name string
	ds   []time.Duration
}

func readComm(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(b)), err
}
