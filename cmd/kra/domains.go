package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/macro-cloud/macro/client"
)

func newDomainsCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "domains",
		Aliases: []string{"domain"},
		Short:   "Manage custom domains for your ingress routes",
		Long: `A custom domain (outside the cloud's own domain) serves your ingress routes
once you prove you control its DNS: kra domains add prints a TXT record to
publish, kra domains verify checks it. No other tenant can claim a domain
you hold.`,
		Args: args(cobra.NoArgs),
	}
	ls := &cobra.Command{Use: "ls", Aliases: []string{"list"}, Short: "List your domains", Args: args(cobra.NoArgs)}
	ls.RunE = nativeRun(a, outputFlag(ls), func(ctx context.Context, c *client.Client, _ []string) ([]client.Domain, error) {
		return c.Domains(ctx)
	}, func(w io.Writer, list []client.Domain) error {
		rows := [][]string{}
		for _, d := range list {
			state := "pending: publish " + d.Record
			if d.Verified {
				state = "verified"
			}
			rows = append(rows, []string{d.Name, state, formatTime(d.Created)})
		}
		return printTable(w, []string{"DOMAIN", "STATE", "CREATED"}, rows)
	})
	add := &cobra.Command{
		Use:   "add <domain>",
		Short: "Claim a domain; prints the TXT record (or the HTTP answer) that proves it",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, names []string) error {
			c, err := a.native()
			if err != nil {
				return err
			}
			d, err := c.AddDomain(cmd.Context(), names[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s is yours once you publish this DNS record:\n\n  %s\n\nthen run: kra domains verify %s\n", d.Name, d.Record, d.Name)
			if d.CheckURL != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "\nOr, while the domain is still served elsewhere, make\n\n  %s\n\nanswer %s there (not through this cloud, which never serves that path).\n", d.CheckURL, d.Token)
			}
			return nil
		},
	}
	verify := &cobra.Command{
		Use:   "verify <domain>",
		Short: "Check the domain's TXT record, else its HTTP answer",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, names []string) error {
			c, err := a.native()
			if err != nil {
				return err
			}
			d, err := c.VerifyDomain(cmd.Context(), names[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s is verified: routes such as kr.ingress.80=https://www.%s now serve\n", d.Name, d.Name)
			return nil
		},
	}
	rm := &cobra.Command{
		Use:     "rm <domain>...",
		Aliases: []string{"remove"},
		Short:   "Give domains up; their routes stop serving",
		Args:    args(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, names []string) error {
			c, err := a.native()
			if err != nil {
				return err
			}
			for _, n := range names {
				if err := c.RemoveDomain(cmd.Context(), n); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), n)
			}
			return nil
		},
	}
	cmd.AddCommand(ls, add, verify, rm)
	return cmd
}
