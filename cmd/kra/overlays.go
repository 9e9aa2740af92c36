package main

import (
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/macro-cloud/macro/client"
)

func newOverlaysCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "overlays",
		Aliases: []string{"overlay", "ov"},
		Short:   "Show the namespaces' IPv4 overlays",
		Long: `An overlay is an IPv4 network of a namespace, named <namespace>/<overlay>:
every namespace has its default one, and each Docker network (driver ipip,
compose networks) is one, with the subnet it was created with. Pods on an
overlay reach each other at their addresses there.`,
		Args: args(cobra.NoArgs),
	}
	ls := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List overlays",
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
		list, err := c.Overlays(cmd.Context())
		if err != nil {
			return err
		}
		if *out == "json" {
			if list == nil {
				list = []client.Overlay{}
			}
			return printJSON(cmd.OutOrStdout(), list)
		}
		rows := make([][]string, 0, len(list))
		for _, o := range list {
			rows = append(rows, []string{o.Name, o.Driver, o.Subnet, strconv.Itoa(len(o.Members))})
		}
		return printTable(cmd.OutOrStdout(), []string{"NAME", "DRIVER", "SUBNET", "MEMBERS"}, rows)
	}

	show := &cobra.Command{
		Use:     "show <name>",
		Aliases: []string{"inspect"},
		Short:   "Show an overlay and its members' addresses",
		Args:    args(cobra.ExactArgs(1)),
	}
	showOut := outputFlag(show)
	show.RunE = func(cmd *cobra.Command, names []string) error {
		if err := checkOutput(*showOut); err != nil {
			return err
		}
		c, err := a.native()
		if err != nil {
			return err
		}
		o, err := c.Overlay(cmd.Context(), names[0])
		if err != nil {
			return err
		}
		if *showOut == "json" {
			return printJSON(cmd.OutOrStdout(), o)
		}
		w := cmd.OutOrStdout()
		fmt.Fprintf(w, "Name:       %s\n", o.Name)
		fmt.Fprintf(w, "Namespace:  %s\n", o.Namespace)
		if o.Network != "" {
			fmt.Fprintf(w, "Network:    %s\n", o.Network)
		}
		fmt.Fprintf(w, "Driver:     %s\n", o.Driver)
		fmt.Fprintf(w, "Subnet:     %s\n\n", o.Subnet)
		rows := make([][]string, 0, len(o.Members))
		for _, m := range o.Members {
			addr := m.Address
			if addr == "" {
				addr = "-"
			}
			rows = append(rows, []string{m.Pod, addr})
		}
		return printTable(w, []string{"POD", "ADDRESS"}, rows)
	}
	cmd.AddCommand(ls, show)
	return cmd
}
