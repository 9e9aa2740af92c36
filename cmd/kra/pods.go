package main

import (
	"sort"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/spf13/cobra"

	"github.com/macro-cloud/macro/client"
)

func newPsCmd(a *app) *cobra.Command {
	cmd := newPodsLsCmd(a)
	cmd.Use = "ps"
	cmd.Short = "List pods (as kra pods ls)"
	cmd.Aliases = nil
	return cmd
}

func newPodsCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "pods",
		Aliases: []string{"pod"},
		Short:   "List, inspect and read the logs of pods",
		Long: `A pod is one container in its own sandbox: what docker run starts. kra reads
pods through the Docker API of macro with a client certificate it gets with
your token, so no docker context is needed.`,
		Args: args(cobra.NoArgs),
	}
	cmd.AddCommand(newPodsLsCmd(a), newPodsInspectCmd(a), newPodsLogsCmd(a))
	return cmd
}

func newPodsLsCmd(a *app) *cobra.Command {
	var all bool
	var ns string
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List pods",
		Long:    "List your running pods, or all of them with -a.",
		Args:    args(cobra.NoArgs),
	}
	out := outputFlag(cmd)
	cmd.Flags().BoolVarP(&all, "all", "a", false, "show all pods, not only running ones")
	cmd.Flags().StringVarP(&ns, "namespace", "n", "", "only pods of this namespace")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := checkOutput(*out); err != nil {
			return err
		}
		var list []container.Summary
		err := a.withDocker(cmd.Context(), func(c *client.Client) error {
			var err error
			list, err = c.Containers(cmd.Context(), all)
			return err
		})
		if err != nil {
			return err
		}
		if ns != "" {
			kept := list[:0]
			for _, s := range list {
				if podNamespace(s.Labels) == ns {
					kept = append(kept, s)
				}
			}
			list = kept
		}
		sort.SliceStable(list, func(i, j int) bool { return list[i].Created > list[j].Created })
		if *out == "json" {
			return printJSON(cmd.OutOrStdout(), list)
		}
		rows := make([][]string, 0, len(list))
		for _, s := range list {
			rows = append(rows, []string{
				podNamespace(s.Labels), podName(s.Names), shortID(s.ID), s.Image, s.Status,
				formatTime(time.Unix(s.Created, 0)),
			})
		}
		return printTable(cmd.OutOrStdout(), []string{"NAMESPACE", "NAME", "ID", "IMAGE", "STATUS", "CREATED"}, rows)
	}
	return cmd
}

func podNamespace(labels map[string]string) string {
	if ns := labels[client.NamespaceLabel]; ns != "" {
		return ns
	}
	return "default"
}

func podName(names []string) string {
	if len(names) == 0 {
		return ""
	}
	return strings.TrimPrefix(names[0], "/")
}

func newPodsInspectCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "inspect <pod>...",
		Short: "Show pods in detail, as JSON",
		Long:  "Show pods in detail, as docker inspect does: a JSON array, one object per pod, by name or ID.",
		Args:  args(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, names []string) error {
			var list []*container.InspectResponse
			err := a.withDocker(cmd.Context(), func(c *client.Client) error {
				list = list[:0]
				for _, n := range names {
					r, err := c.Container(cmd.Context(), n)
					if err != nil {
						return err
					}
					list = append(list, r)
				}
				return nil
			})
			if err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), list)
		},
	}
}

func newPodsLogsCmd(a *app) *cobra.Command {
	var o client.LogsOptions
	cmd := &cobra.Command{
		Use:   "logs <pod>",
		Short: "Print the output of a pod",
		Long:  "Print what a pod wrote to its standard output and error; with -f, go on until the pod stops or ^C.",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, names []string) error {
			return a.withDocker(cmd.Context(), func(c *client.Client) error {
				return c.Logs(cmd.Context(), names[0], o, cmd.OutOrStdout(), cmd.ErrOrStderr())
			})
		},
	}
	cmd.Flags().BoolVarP(&o.Follow, "follow", "f", false, "follow the output")
	cmd.Flags().BoolVarP(&o.Timestamps, "timestamps", "t", false, "show timestamps")
	cmd.Flags().StringVarP(&o.Tail, "tail", "n", "all", "number of lines to show from the end")
	cmd.Flags().StringVar(&o.Since, "since", "", "show logs since a time (RFC 3339 or Unix seconds)")
	return cmd
}
