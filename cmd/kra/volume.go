package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/macro-cloud/macro/client"
)

// volumeSubcommands are further subcommands of kra volume that other
// files add in their init (export, import, copy...).
var volumeSubcommands []func(a *app) *cobra.Command

func newVolumeCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "volume",
		Aliases: []string{"volumes", "vol"},
		Short:   "Manage volumes and their snapshots",
		Long: `Volumes keep a container's data. Drivers:
  local  a plain directory, as Docker's local driver
  lv2    fast node-local storage with its own filesystem: -o size=10G (required)
  nfs    the default file volume, with snapshots (hourly, 24 kept, unless -o snapshot=off)
  gfs    a file volume many containers mount at once
Options: size=10G, zone=Z, snapshot=hourly|daily|weekly|off|30m, snapshots.keep=N.
Mount one with docker run -v NAME:/path or compose's top-level volumes.`,
		Args: args(cobra.NoArgs),
	}
	ls := &cobra.Command{Use: "ls", Aliases: []string{"list"}, Short: "List your volumes", Args: args(cobra.NoArgs)}
	ls.RunE = nativeRun(a, outputFlag(ls), func(ctx context.Context, c *client.Client, _ []string) ([]client.VolumeInfo, error) {
		return c.VolumeInfos(ctx)
	}, func(w io.Writer, list []client.VolumeInfo) error {
		rows := [][]string{}
		for _, v := range list {
			rows = append(rows, []string{v.Name, v.Driver, v.Options["size"], v.Node, strings.Join(v.UsedBy, ","), formatTime(v.Created)})
		}
		return printTable(w, []string{"NAME", "DRIVER", "SIZE", "NODE", "USED BY", "CREATED"}, rows)
	})

	create := &cobra.Command{
		Use:   "create <name>",
		Short: "Create a volume",
		Args:  args(cobra.ExactArgs(1)),
	}
	driver := create.Flags().StringP("driver", "d", "local", "volume driver: local, lv2, nfs, gfs")
	opts := create.Flags().StringArrayP("opt", "o", nil, "driver option KEY=VALUE (size, zone, snapshot, snapshots.keep)")
	create.RunE = func(cmd *cobra.Command, names []string) error {
		o := map[string]string{}
		for _, kv := range *opts {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return usageError{fmt.Errorf("invalid option %q: want KEY=VALUE", kv)}
			}
			o[k] = v
		}
		c, err := a.native()
		if err != nil {
			return err
		}
		v, err := c.NewVolume(cmd.Context(), client.VolumeInfo{Name: names[0], Driver: *driver, Options: o})
		if err != nil {
			return err
		}
		fmt.Fprintln(cmd.OutOrStdout(), v.Name)
		return nil
	}

	inspect := &cobra.Command{
		Use:   "inspect <name>...",
		Short: "Show volumes as JSON",
		Args:  args(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, names []string) error {
			c, err := a.native()
			if err != nil {
				return err
			}
			list := []client.VolumeInfo{}
			for _, n := range names {
				v, err := c.InspectVolume(cmd.Context(), n)
				if err != nil {
					return err
				}
				list = append(list, *v)
			}
			return printJSON(cmd.OutOrStdout(), list)
		},
	}

	rm := &cobra.Command{
		Use:     "rm <name>...",
		Aliases: []string{"remove"},
		Short:   "Remove volumes, their data and their snapshots",
		Args:    args(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, names []string) error {
			c, err := a.native()
			if err != nil {
				return err
			}
			for _, n := range names {
				if err := c.DeleteVolume(cmd.Context(), n); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), n)
			}
			return nil
		},
	}
	cmd.AddCommand(ls, create, inspect, rm, newSnapshotCmd(a))
	cmd.AddCommand(volumeSyncCommands(a)...)
	cmd.AddCommand(newVolumeKeyCmd(a))
	for _, sub := range volumeSubcommands {
		cmd.AddCommand(sub(a))
	}
	return cmd
}

func newSnapshotCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "snapshot",
		Aliases: []string{"snapshots", "snap"},
		Short:   "Take, list, roll back to and remove snapshots of nfs and gfs volumes",
		Long: `A snapshot is an instant, read-only copy of a volume (btrfs copy-on-write).
Rolling back keeps the state it replaces as a snapshot named rollback-<time>;
it is refused while running containers mount the volume (stop them first).
lv2 and local volumes have no snapshots.`,
		Args: args(cobra.NoArgs),
	}
	ls := &cobra.Command{Use: "ls <volume>", Aliases: []string{"list"}, Short: "List a volume's snapshots", Args: args(cobra.ExactArgs(1))}
	ls.RunE = nativeRun(a, outputFlag(ls), func(ctx context.Context, c *client.Client, names []string) ([]client.Snapshot, error) {
		return c.Snapshots(ctx, names[0])
	}, func(w io.Writer, list []client.Snapshot) error {
		rows := [][]string{}
		for _, s := range list {
			kind := "manual"
			if s.Auto {
				kind = "schedule"
			}
			rows = append(rows, []string{s.Name, kind, formatTime(s.Created), formatSize(s.Space)})
		}
		return printTable(w, []string{"SNAPSHOT", "TAKEN BY", "CREATED", "HOLDS"}, rows)
	})
	create := &cobra.Command{
		Use:   "create <volume> [snapshot]",
		Short: "Take a snapshot now (named from the time unless given a name)",
		Args:  args(cobra.RangeArgs(1, 2)),
		RunE: func(cmd *cobra.Command, names []string) error {
			c, err := a.native()
			if err != nil {
				return err
			}
			name := ""
			if len(names) == 2 {
				name = names[1]
			}
			s, err := c.CreateSnapshot(cmd.Context(), names[0], name)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), s.Name)
			return nil
		},
	}
	rollback := &cobra.Command{
		Use:   "rollback <volume> <snapshot>",
		Short: "Make the volume's files those of a snapshot",
		Args:  args(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, names []string) error {
			c, err := a.native()
			if err != nil {
				return err
			}
			if err := c.Rollback(cmd.Context(), names[0], names[1]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s is back to %s (the state before is kept as a rollback-* snapshot)\n", names[0], names[1])
			return nil
		},
	}
	rm := &cobra.Command{
		Use:     "rm <volume> <snapshot>...",
		Aliases: []string{"remove"},
		Short:   "Remove snapshots",
		Args:    args(cobra.MinimumNArgs(2)),
		RunE: func(cmd *cobra.Command, names []string) error {
			c, err := a.native()
			if err != nil {
				return err
			}
			for _, n := range names[1:] {
				if err := c.RemoveSnapshot(cmd.Context(), names[0], n); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), n)
			}
			return nil
		},
	}
	cmd.AddCommand(ls, create, rollback, rm)
	return cmd
}
