package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/macro-cloud/macro/client"
)

// newVolumeAccessCmd is `kra volume` with only its key subcommand: the
// volume commands themselves (ls, create, rm, inspect) join it from
// volume.go.
// newVolumeKeyCmd is `kra volume key create|ls|rm`.
func newVolumeKeyCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "key",
		Aliases: []string{"keys"},
		Short:   "Manage access keys of volumes (WebDAV and S3 without a pod)",
		Long: `An access key reaches one volume (or, with --all, every volume of yours)
without a pod: over WebDAV at https://HOST/dav/VOLUME/ (basic auth: the key ID
as user name, the secret as password) and over S3, where a bucket is a volume
(access key ID and secret access key; the server's S3 endpoint is the address
of macro server --s3-addr). A read-only key can list and read, nothing else.
The secret is shown once, when the key is made.`,
		Args: args(cobra.NoArgs),
	}
	create := &cobra.Command{
		Use:   "create VOLUME | --all",
		Short: "Make an access key; prints its secret, once",
		Args:  args(cobra.MaximumNArgs(1)),
	}
	readOnly := create.Flags().Bool("read-only", false, "the key can list and read, not write or delete")
	all := create.Flags().Bool("all", false, "the key reaches all your volumes (and can list them as buckets)")
	desc := create.Flags().String("description", "", "a note to tell the key by")
	create.RunE = func(cmd *cobra.Command, names []string) error {
		o := client.VolumeKeyOptions{All: *all, ReadOnly: *readOnly, Description: *desc}
		switch {
		case *all && len(names) > 0:
			return usageError{fmt.Errorf("name a volume or give --all, not both")}
		case !*all && len(names) == 0:
			return usageError{fmt.Errorf("name the volume the key is for, or give --all")}
		case len(names) > 0:
			o.Volume = names[0]
		}
		c, err := a.native()
		if err != nil {
			return err
		}
		k, err := c.CreateVolumeKey(cmd.Context(), o)
		if err != nil {
			return err
		}
		host, _ := a.host("")
		what, dav := "all your volumes", strings.TrimSuffix(host, "/")+"/dav/VOLUME/"
		if k.Volume != "" {
			what, dav = "volume "+k.Volume, strings.TrimSuffix(host, "/")+"/dav/"+k.Volume+"/"
		}
		mode := "read-write"
		if k.ReadOnly {
			mode = "read-only"
		}
		out := cmd.OutOrStdout()
		fmt.Fprintf(out, "access key %s (%s) of %s\n\n  key ID:  %s\n  secret:  %s\n\nThe secret is shown this once.\n", k.ID, mode, what, k.ID, k.Secret)
		fmt.Fprintf(out, "WebDAV:  %s  (user %s, password the secret)\nS3:      bucket = volume; access key ID %s, secret access key the secret\n", dav, k.ID, k.ID)
		return nil
	}
	ls := &cobra.Command{Use: "ls [VOLUME]", Aliases: []string{"list"}, Short: "List your volume access keys (of one volume, or all)", Args: args(cobra.MaximumNArgs(1))}
	ls.RunE = nativeRun(a, outputFlag(ls), func(ctx context.Context, c *client.Client, names []string) ([]client.VolumeKey, error) {
		volume := ""
		if len(names) > 0 {
			volume = names[0]
		}
		return c.VolumeKeys(ctx, volume)
	}, func(w io.Writer, list []client.VolumeKey) error {
		rows := [][]string{}
		for _, k := range list {
			v, mode := k.Volume, "read-write"
			if v == "" {
				v = "(all)"
			}
			if k.ReadOnly {
				mode = "read-only"
			}
			rows = append(rows, []string{k.ID, v, mode, formatTime(k.Created), k.Description})
		}
		return printTable(w, []string{"KEY ID", "VOLUME", "ACCESS", "CREATED", "DESCRIPTION"}, rows)
	})
	rm := &cobra.Command{
		Use:     "rm KEY-ID...",
		Aliases: []string{"remove", "revoke"},
		Short:   "Revoke access keys",
		Args:    args(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, ids []string) error {
			c, err := a.native()
			if err != nil {
				return err
			}
			for _, id := range ids {
				if err := c.RemoveVolumeKey(cmd.Context(), id); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), id)
			}
			return nil
		},
	}
	cmd.AddCommand(create, ls, rm)
	return cmd
}
