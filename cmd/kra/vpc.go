package main

import (
	"fmt"
	"strconv"

	"github.com/spf13/cobra"
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
	out := outputFlag(ls)
	ls.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := checkOutput(*out); err != nil {
			return err
		}
		c, err := a.native()
		if err != nil {
			return err
		}
		v, err := c.VPC(cmd.Context())
		if err != nil {
			return err
		}
		if *out == "json" {
			return printJSON(cmd.OutOrStdout(), v)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "VPC %s\n\n", v.Prefix)
		rows := make([][]string, 0, len(v.Namespaces))
		for _, n := range v.Namespaces {
			rows = append(rows, []string{n.Name, n.Subnet6, n.Subnet4, strconv.Itoa(n.Pods)})
		}
		return printTable(cmd.OutOrStdout(), []string{"NAMESPACE", "IPV6", "IPV4", "PODS"}, rows)
	}
	cmd.AddCommand(ls)
	return cmd
}
