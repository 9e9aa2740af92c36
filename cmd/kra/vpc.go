package main

import (
	"context"
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/macro-cloud/macro/client"
)

func newVPCCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "vpc",
		Short: "Show the tenant's VPC",
		Long: `The tenant's VPC is an IPv6 /48; every namespace has a /64 of it and an IPv4
/24, its default overlay. Pods of the tenant reach each other over it.`,
		Args: args(cobra.NoArgs),
	}
	ls := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "Show the VPC's prefix and each namespace's subnets",
		Args:    args(cobra.NoArgs),
	}
	ls.RunE = nativeRun(a, outputFlag(ls), func(ctx context.Context, c *client.Client, _ []string) (*client.VPC, error) {
		return c.VPC(ctx)
	}, func(w io.Writer, v *client.VPC) error {
		fmt.Fprintf(w, "VPC %s\n\n", v.Prefix)
		rows := make([][]string, 0, len(v.Namespaces))
		for _, n := range v.Namespaces {
			rows = append(rows, []string{n.Name, n.Subnet6, n.Subnet4, strconv.Itoa(n.Pods)})
		}
		return printTable(w, []string{"NAMESPACE", "IPV6", "IPV4", "PODS"}, rows)
	})
	cmd.AddCommand(ls)
	return cmd
}
