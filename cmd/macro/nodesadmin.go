package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/macro-cloud/macro/api"
)

// runNodesAdmin runs the nodes commands of macro admin: ls and rm.
func runNodesAdmin(ctx context.Context, c *adminClient, words []string, stdout io.Writer) error {
	switch {
	case len(words) == 2 && (words[1] == "ls" || words[1] == "list"):
		var nodes []api.AdminNode
		if err := c.call(ctx, http.MethodGet, "/nodes", nil, &nodes); err != nil {
			return err
		}
		return printAdminNodes(stdout, nodes)
	case len(words) == 3 && (words[1] == "rm" || words[1] == "remove"):
		var rm api.RemovedNode
		if err := c.call(ctx, http.MethodDelete, "/nodes/"+url.PathEscape(words[2]), nil, &rm); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "node %s removed\n", rm.Name)
		if rm.Pinned > 0 {
			fmt.Fprintf(stdout, "%s stay placed on it: their data lived only there (a node-local volume); they run again if a node named %s joins\n", plural(rm.Pinned, "pinned pod"), rm.Name)
		}
		return nil
	case len(words) == 3 && words[1] == "rotate-key":
		var rk api.RotatedKey
		if err := c.call(ctx, http.MethodPost, "/nodes/"+url.PathEscape(words[2])+"/rotate-key", nil, &rk); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "node %s makes a new mesh key (generation %d); the other nodes follow within seconds\n", rk.Name, rk.Generation)
		return nil
	}
	return usageError(fmt.Sprintf("unknown command %q", strings.Join(words, " ")))
}

// printAdminNodes writes the table of macro admin nodes ls: CPUS and
// MEMORY are what the pods placed on the node request / what it has.
func printAdminNodes(w io.Writer, nodes []api.AdminNode) error {
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATUS\tZONE\tARCH\tCPUS\tMEMORY\tPODS\tRUNTIMES\tLABELS")
	for _, n := range nodes {
		status := "down"
		if n.Ready {
			status = "ready"
		}
		rts := append([]string(nil), n.Runtimes...)
		sort.Strings(rts)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s/%d\t%s/%s\t%d\t%s\t%s\n", n.Name, status, dash(n.Zone), n.Arch,
			cpusText(n.RequestedNanoCPUs), n.CPUs, bytesText(n.RequestedMemoryBytes), bytesText(n.MemoryBytes),
			n.Pods, dash(strings.Join(rts, ",")), dash(labelsText(n.Labels)))
	}
	return tw.Flush()
}

// cpusText shows nano-CPUs as CPUs, to two decimals at most: 1.5, 0.25, 0.
func cpusText(nano int64) string {
	s := strconv.FormatFloat(float64(nano)/1e9, 'f', 2, 64)
	return strings.TrimSuffix(strings.TrimRight(s, "0"), ".")
}

// labelsText shows a node's labels but its zone, sorted: k=v,k=v.
func labelsText(labels map[string]string) string {
	var kv []string
	for k, v := range labels {
		if k != "zone" {
			kv = append(kv, k+"="+v)
		}
	}
	sort.Strings(kv)
	return strings.Join(kv, ",")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
