package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/macro-cloud/macro/client"
)

func init() { volumeSubcommands = append(volumeSubcommands, newVolumeCopyCmd) }

// newVolumeCopyCmd is `kra volume copy SRC DST`.
func newVolumeCopyCmd(a *app) *cobra.Command {
	var req client.CopyVolumeRequest
	cmd := &cobra.Command{
		Use:   "copy SRC DST",
		Short: "Copy a volume's files into another volume (made if missing), sending only what differs",
		Long: `Copy makes volume DST hold the files of volume SRC, through the delta-sync
engine: only the chunks DST lacks cross, from SRC's node to DST's (through
the server when they differ), every chunk is hashed, and DST switches to the
new files at once, at the end. A copy that fails or is cut short leaves DST
as it was: run it again, and what arrived is not sent twice.

DST is made when it does not exist, with SRC's driver and options unless
--driver, --size or --zone say otherwise (--zone places it on a node of that
zone). An existing DST is updated in place; no running container may mount
it. DST keeps an index of its files: those it already holds are trusted by
it (inode, size, mtime, ctime) rather than read again; --verify reads and
hashes all of DST instead.`,
		Args: args(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			c, err := a.native()
			if err != nil {
				return err
			}
			req.To = argv[1]
			res, err := c.CopyVolume(cmd.Context(), argv[0], req)
			if err != nil {
				return err
			}
			verb := "updated"
			if res.Created {
				verb = "created"
			}
			where := ""
			if res.Node != "" {
				where = " on node " + res.Node
			}
			fmt.Fprintf(cmd.OutOrStdout(), "copied volume %s to %s (%s%s): %d files, %s; %d of %d chunks sent (%s) in %.1fs\n",
				res.From, res.To, verb, where, res.Files, formatSize(res.Bytes), res.SentChunks, res.Chunks, formatSize(res.SentBytes), res.Seconds)
			return nil
		},
	}
	cmd.Flags().StringVar(&req.Driver, "driver", "", "driver of a new DST (default: SRC's)")
	cmd.Flags().StringVar(&req.Size, "size", "", "size of a new DST, e.g. 10G (default: SRC's)")
	cmd.Flags().StringVar(&req.Zone, "zone", "", "zone of a new DST's node")
	cmd.Flags().BoolVar(&req.Verify, "verify", false, "read and hash every file of DST as it is built, those it kept included (slower)")
	return cmd
}
