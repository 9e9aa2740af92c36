package main

import (
	"context"
	"fmt"
	"io"
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
	ls.RunE = nativeRun(a, outputFlag(ls), func(ctx context.Context, c *client.Client, _ []string) ([]client.Overlay, error) {
		return c.Overlays(ctx)
	}, func(w io.Writer, list []client.Overlay) error {
		rows := make([][]string, 0, len(list))
		for _, o := range list {
			rows = append(rows, []string{o.Name, o.Driver, o.Subnet, strconv.Itoa(len(o.Members))})
		}
		return printTable(w, []string{"NAME", "DRIVER", "SUBNET", "MEMBERS"}, rows)
	})

	show := &cobra.Command{
		Use:     "show <name>",
		Aliases: []string{"inspect"},
		Short:   "Show an overlay and its members' addresses",
		Args:    args(cobra.ExactArgs(1)),
	}
	show.RunE = nativeRun(a, outputFlag(show), func(ctx context.Context, c *client.Client, names []string) (*client.Overlay, error) {
		return c.Overlay(ctx, names[0])
	}, func(w io.Writer, o *client.Overlay) error {
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
	})
	cmd.AddCommand(ls, show)
	return cmd
}
