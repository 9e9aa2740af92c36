// Package sched is pure placement: given pods waiting for a node and the
// nodes with what already runs on them, it returns a plan. It does no I/O and
// imports no store, so it can be tested and benchmarked with millions of
// simulated pods; package control runs it and commits its plans.
package sched

import (
	"fmt"
	"sort"

	"github.com/macro-cloud/macro/types"
)

// ZoneLabel is the pod label (Kraud's convention) and node label naming a zone.
const ZoneLabel = "kr.zone"

// Plan is the outcome of one placement round.
type Plan struct {
	// Assign maps pod id to the chosen node.
	Assign map[string]string
	// Unschedulable maps pod id to the reason no node fits.
	Unschedulable map[string]string
}

// Place assigns each pending pod to a node. placed are pods already bound to
// nodes (they use capacity). Pods are placed in order, each on the fitting
// node with the least free memory left (best fit), so that large pods still
// find room later. Ties break by node name, so the result is deterministic.
func Place(pending []types.Pod, nodes []types.Node, placed []types.Pod) Plan {
	plan := Plan{Assign: map[string]string{}, Unschedulable: map[string]string{}}
	free := make(map[string]*capacity, len(nodes))
	for _, n := range nodes {
		free[n.Name] = &capacity{mem: n.MemoryBytes, cpu: int64(n.CPUs) * 1e9}
	}
	for _, p := range placed {
		if c := free[p.Node]; c != nil {
			c.mem -= p.Spec.Resources.MemoryBytes
			c.cpu -= p.Spec.Resources.NanoCPUs
		}
	}
	order := append([]types.Node(nil), nodes...)
	sort.Slice(order, func(i, j int) bool { return order[i].Name < order[j].Name })
	for _, p := range pending {
		best, reason := "", ""
		var bestFree int64
		for _, n := range order {
			c := free[n.Name]
			if why := fits(p, n, c); why != "" {
				if reason == "" {
					reason = why
				}
				continue
			}
			if left := c.mem - p.Spec.Resources.MemoryBytes; best == "" || left < bestFree {
				best, bestFree = n.Name, left
			}
		}
		if best == "" {
			if len(order) == 0 {
				reason = "no nodes are registered"
			}
			plan.Unschedulable[p.ID] = reason
			continue
		}
		plan.Assign[p.ID] = best
		free[best].mem -= p.Spec.Resources.MemoryBytes
		free[best].cpu -= p.Spec.Resources.NanoCPUs
	}
	return plan
}

type capacity struct{ mem, cpu int64 }

// fits says why p cannot go on n, or "" when it can.
func fits(p types.Pod, n types.Node, c *capacity) string {
	if !n.Ready {
		return fmt.Sprintf("node %s is not ready", n.Name)
	}
	if zone := p.Spec.Labels[ZoneLabel]; zone != "" && n.Labels["zone"] != zone {
		return fmt.Sprintf("no node in zone %s", zone)
	}
	if p.Spec.Runtime != "" && !contains(n.Runtimes, p.Spec.Runtime) {
		return fmt.Sprintf("no node offers runtime %s", p.Spec.Runtime)
	}
	if m := p.Spec.Resources.MemoryBytes; m > 0 && m > c.mem {
		return fmt.Sprintf("no node has %s of memory free", humanBytes(m))
	}
	if cpu := p.Spec.Resources.NanoCPUs; cpu > 0 && cpu > c.cpu {
		return fmt.Sprintf("no node has %.2f CPUs free", float64(cpu)/1e9)
	}
	return ""
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func humanBytes(b int64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	div, exp := int64(unit), 0
	for n := b / unit; n >= unit; n /= unit {
		div *= unit
		exp++
	}
	v := float64(b) / float64(div)
	if v == float64(int64(v)) {
		return fmt.Sprintf("%d %ciB", int64(v), "KMGTPE"[exp])
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTPE"[exp])
}
