package sched

import (
	"fmt"
	"slices"
	"strings"

	"github.com/macro-cloud/macro/types"
)

// explain says why no member of cl has r free, counting every node once
// by the first check it fails: "no node in zone eu-1 has 4 GiB of memory
// free (3 nodes in zone eu-1: 2 lack memory, 1 is not ready)". The count
// in parentheses is left out when all nodes fail the same check.
func (cl *class) explain(c *cluster, p *types.Pod, r Request) string {
	k := cl.key
	if cl.scope == 0 {
		return fmt.Sprintf("no node is in zone %s (%s)", k.zone, zonesText(cl.zones, len(c.nodes)))
	}
	lackMem := cl.firstWith(c, r.MemoryBytes)
	lackCPU := len(cl.order) - lackMem // none fits: the others lack CPU

	// what the pod needs, named by what left nodes out
	node := "node"
	if cl.otherArch > 0 {
		node = k.arch + " node"
	}
	where := ""
	if k.zone != "" {
		where = " in zone " + k.zone
	}
	var head string
	if len(cl.order) > 0 {
		with := ""
		if cl.noRuntime > 0 {
			with = " with runtime " + k.runtime
		}
		var need []string
		if lackMem > 0 {
			need = append(need, humanBytes(r.MemoryBytes)+" of memory")
		}
		if lackCPU > 0 {
			need = append(need, humanCPUs(r.NanoCPUs))
		}
		head = fmt.Sprintf("no %s%s%s has %s free", node, where, with, strings.Join(need, " and "))
	} else {
		var is []string
		if cl.notReady > 0 {
			is = append(is, "is ready")
		}
		if cl.otherArch > 0 {
			is = append(is, "is "+k.arch)
		}
		if cl.noRuntime > 0 {
			is = append(is, "offers runtime "+k.runtime)
		}
		head = fmt.Sprintf("no node%s %s", where, strings.Join(is, " and "))
	}

	var parts []string
	part := func(n int, one, many string) {
		if n == 1 {
			parts = append(parts, "1 "+one)
		} else if n > 1 {
			parts = append(parts, fmt.Sprintf("%d %s", n, many))
		}
	}
	part(lackMem, "lacks memory", "lack memory")
	part(lackCPU, "lacks CPU", "lack CPU")
	part(cl.notReady, "is not ready", "are not ready")
	part(cl.otherArch, "is not "+k.arch, "are not "+k.arch)
	part(cl.noRuntime, "lacks runtime "+k.runtime, "lack runtime "+k.runtime)
	if len(parts) < 2 {
		return head
	}
	nodes := "1 node"
	if cl.scope > 1 {
		nodes = fmt.Sprintf("%d nodes", cl.scope)
	}
	return fmt.Sprintf("%s (%s%s: %s)", head, nodes, where, strings.Join(parts, ", "))
}

// zonesText names the zones the nodes are in, for a pod whose zone has
// none: "nodes are in zones eu-1 and eu-2".
func zonesText(zones []string, nodes int) string {
	var named []string
	unnamed := false
	for _, z := range zones {
		if z == "" {
			unnamed = true
		} else {
			named = append(named, z)
		}
	}
	if len(named) == 0 {
		if nodes == 1 {
			return "the node has no zone label"
		}
		return "no node has a zone label"
	}
	if nodes == 1 {
		return "the node is in zone " + named[0]
	}
	const most = 5
	more := len(named) > most
	if more {
		named = named[:most]
	}
	list := strings.Join(named, ", ")
	if more {
		list += " and more"
	} else if i := strings.LastIndex(list, ", "); i >= 0 {
		list = list[:i] + " and " + list[i+2:]
	}
	word := "zone"
	if len(named) > 1 {
		word = "zones"
	}
	text := fmt.Sprintf("nodes are in %s %s", word, list)
	if unnamed {
		text += ", or have no zone label"
	}
	return text
}

// misfit says why pod p with request r cannot go on node n, as the end of
// a sentence about the node ("which is not ready"); "" when it can.
func (c *cluster) misfit(p *types.Pod, r Request, n int32) string {
	node := &c.nodes[n]
	zone, nodeZone := p.Spec.Labels[ZoneLabel], node.Labels[NodeZoneLabel]
	switch {
	case !node.Ready:
		return "which is not ready"
	case zone != "" && nodeZone == "":
		return fmt.Sprintf("which has no zone, not zone %s", zone)
	case zone != "" && nodeZone != zone:
		return fmt.Sprintf("which is in zone %s, not %s", nodeZone, zone)
	case !archFits(p.Spec.Arch, node.Arch):
		return fmt.Sprintf("which is %s, not %s", node.Arch, p.Spec.Arch)
	case p.Spec.Runtime != "" && !slices.Contains(node.Runtimes, p.Spec.Runtime):
		return fmt.Sprintf("which does not offer runtime %s", p.Spec.Runtime)
	case c.freeMem[n] < r.MemoryBytes:
		return fmt.Sprintf("which has %s of memory free, not %s", humanBytes(max(c.freeMem[n], 0)), humanBytes(r.MemoryBytes))
	case !cpuFits(c.freeCPU[n], r.NanoCPUs):
		return fmt.Sprintf("which has %s free, not %s", humanCPUs(max(c.freeCPU[n], 0)), humanCPUs(r.NanoCPUs))
	}
	return ""
}

// pinnedReason explains a pinned pod that cannot go on its node: "volume
// db (lv2) pins it to node n3, which is not ready".
func pinnedReason(p *types.Pod, why string) string {
	if p.Spec.PinnedBy == "" {
		return fmt.Sprintf("pinned to node %s, %s", p.Spec.PinnedNode, why)
	}
	return fmt.Sprintf("%s pins it to node %s, %s", p.Spec.PinnedBy, p.Spec.PinnedNode, why)
}
