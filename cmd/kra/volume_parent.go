package main

import "github.com/spf13/cobra"

// newVolumeCmd is `kra volume`. (Only export and import so far; the
// volume commands of the drivers join it here.)
func newVolumeCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "volume",
		Aliases: []string{"volumes", "vol"},
		Short:   "Manage your volumes",
		Args:    args(cobra.NoArgs),
	}
	cmd.AddCommand(volumeSyncCommands(a)...)
	return cmd
}
