package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/macro-cloud/macro/client"
)

func newNsCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "ns",
		Aliases: []string{"namespace", "namespaces"},
		Short:   "Manage namespaces",
		Long: `A namespace groups pods: a docker compose project is a namespace, and pods
of one namespace reach each other by name.`,
		Args: args(cobra.NoArgs),
	}

	ls := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List namespaces",
		Args:    args(cobra.NoArgs),
	}
	ls.RunE = nativeRun(a, outputFlag(ls), func(ctx context.Context, c *client.Client, _ []string) ([]client.Namespace, error) {
		list, err := c.Namespaces(ctx)
		if err != nil {
			return nil, err
		}
		sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
		return list, nil
	}, func(w io.Writer, list []client.Namespace) error {
		rows := make([][]string, 0, len(list))
		for _, n := range list {
			rows = append(rows, []string{n.Name, strconv.Itoa(n.Pods), formatTime(n.Created)})
		}
		return printTable(w, []string{"NAME", "PODS", "CREATED"}, rows)
	})

	create := &cobra.Command{
		Use:   "create <name>",
		Short: "Create a namespace",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, names []string) error {
			c, err := a.native()
			if err != nil {
				return err
			}
			n, err := c.CreateNamespace(cmd.Context(), names[0])
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), n.Name)
			return nil
		},
	}

	inspect := &cobra.Command{
		Use:   "inspect <name>...",
		Short: "Show namespaces in detail, as JSON",
		Args:  args(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, names []string) error {
			c, err := a.native()
			if err != nil {
				return err
			}
			list := []*client.Namespace{}
			for _, name := range names {
				n, err := c.Namespace(cmd.Context(), name)
				if err != nil {
					return err
				}
				list = append(list, n)
			}
			return printJSON(cmd.OutOrStdout(), list)
		},
	}

	del := &cobra.Command{
		Use:     "delete <name>...",
		Aliases: []string{"rm"},
		Short:   "Delete namespaces",
		Args:    args(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, names []string) error {
			c, err := a.native()
			if err != nil {
				return err
			}
			for _, name := range names {
				if err := c.DeleteNamespace(cmd.Context(), name); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), name)
			}
			return nil
		},
	}
	cmd.AddCommand(ls, create, inspect, del)
	return cmd
}
