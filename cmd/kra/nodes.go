package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/macro-cloud/macro/client"
)

func newNodesCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "nodes",
		Aliases: []string{"node"},
		Short:   "Show the machines that run pods",
		Long: `Nodes are the machines of the cloud that run pods. A pod asks for a zone
with the label kr.zone=<zone>; the scheduler places it on a ready node of
that zone with room for its memory and CPUs. The PODS column counts your
own pods on each node.`,
		Args: args(cobra.NoArgs),
	}
	ls := &cobra.Command{Use: "ls", Aliases: []string{"list"}, Short: "List the nodes", Args: args(cobra.NoArgs)}
	ls.RunE = nativeRun(a, outputFlag(ls), func(ctx context.Context, c *client.Client, _ []string) ([]client.Node, error) {
		list, err := c.Nodes(ctx)
		if err != nil {
			return nil, err
		}
		sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
		return list, nil
	}, func(w io.Writer, list []client.Node) error {
		rows := make([][]string, 0, len(list))
		for _, n := range list {
			status := "down"
			if n.Ready {
				status = "ready"
			}
			rows = append(rows, []string{n.Name, status, orDash(n.Zone), n.Arch, strconv.Itoa(n.CPUs),
				formatMemory(n.MemoryBytes), strconv.Itoa(n.Pods), orDash(otherLabels(n.Labels))})
		}
		return printTable(w, []string{"NAME", "STATUS", "ZONE", "ARCH", "CPUS", "MEMORY", "PODS", "LABELS"}, rows)
	})
	cmd.AddCommand(ls)
	return cmd
}

// formatMemory prints bytes in binary units as docker info does its
// total memory (4 significant digits at most): 16GiB, 3.848GiB, 512MiB.
func formatMemory(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}
	f := float64(n)
	i := 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	return fmt.Sprintf("%.4g%s", f, units[i])
}

// otherLabels shows a node's labels but its zone, sorted: k=v,k=v.
func otherLabels(labels map[string]string) string {
	var kv []string
	for k, v := range labels {
		if k != "zone" {
			kv = append(kv, k+"="+v)
		}
	}
	sort.Strings(kv)
	return strings.Join(kv, ",")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
