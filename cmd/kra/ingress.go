package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/macro-cloud/macro/client"
)

// newIngressCmd is `kra ingress ls`, also spelled as Kraud's kra does,
// `kra in ig ls`.
func newIngressCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "ingress",
		Aliases: []string{"in", "ig", "ingresses"},
		Short:   "Show the ingress: the hosts your pods serve",
		Long: `Pods ask for ingress with labels:

  kr.ingress.<port>=https://<host>[/path]   HTTP(S) to the pod's port; a * in
                                            the host is your default domain
  kr.ingress.tcp.<port>=<public port>       raw TCP
  kr.suspend=10m                            freeze the pod after 10 minutes
                                            without traffic; a request wakes it
                                            (kr.suspend=off: never, whatever
                                            your tenant's default rule says)

Every server of the cloud serves every route, round robin over the ready
replicas on all nodes.`,
		Args: args(cobra.NoArgs),
	}
	ls := newIngressLsCmd(a)
	// `kra in ig ls`: the second word is accepted too.
	ig := &cobra.Command{Use: "ig", Aliases: []string{"ingress"}, Short: "Same as kra ingress", Hidden: true, Args: args(cobra.NoArgs)}
	ig.AddCommand(newIngressLsCmd(a))
	cmd.AddCommand(ls, ig)
	return cmd
}

func newIngressLsCmd(a *app) *cobra.Command {
	ls := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List routes, raw TCP ports and labels that give no route",
		Args:    args(cobra.NoArgs),
	}
	ls.RunE = nativeRun(a, outputFlag(ls), func(ctx context.Context, c *client.Client, _ []string) (*client.IngressList, error) {
		return c.Ingresses(ctx)
	}, func(w io.Writer, list *client.IngressList) error {
		return printIngress(w, list)
	})
	return ls
}

func printIngress(w io.Writer, list *client.IngressList) error {
	rows := [][]string{}
	for _, r := range list.Routes {
		rows = append(rows, []string{r.URL, targetsText(r.Targets)})
	}
	for _, r := range list.TCP {
		rows = append(rows, []string{"tcp :" + strconv.Itoa(r.PublicPort), targetsText(r.Targets)})
	}
	if err := printTable(w, []string{"ROUTE", "PODS"}, rows); err != nil {
		return err
	}
	if len(list.Problems) > 0 {
		fmt.Fprintln(w)
		prows := [][]string{}
		for _, p := range list.Problems {
			prows = append(prows, []string{p.Namespace + "/" + p.Pod, p.Problem})
		}
		return printTable(w, []string{"POD", "PROBLEM"}, prows)
	}
	return nil
}

// targetsText is "default/web:80 (ready on n1), default/web-2:80
// (suspended on n2)".
func targetsText(ts []client.IngressTarget) string {
	parts := make([]string, 0, len(ts))
	for _, t := range ts {
		state := t.State
		if t.Node != "" {
			state += " on " + t.Node
		}
		parts = append(parts, fmt.Sprintf("%s/%s:%d (%s)", t.Namespace, t.Pod, t.Port, state))
	}
	return strings.Join(parts, ", ")
}
