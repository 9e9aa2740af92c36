package main

import (
	"github.com/spf13/cobra"

	"github.com/macro-cloud/macro/client"
	"github.com/macro-cloud/macro/client/compose"
)

func newDownCmd(a *app) *cobra.Command {
	var f composeFlags
	var volumes bool
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Remove a namespace's compose project",
		Long: `Remove the containers and networks of a compose project, whether kra up or
docker compose created them (or a kra up that failed half-way), and the
volumes of its uploaded local files; with -v its named volumes too.

The namespace is -n, else the project name of the compose file, which is
read only for its name and for the order of the stops.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			ns := f.namespace
			var p *composeProject
			if ns == "" || len(f.files) > 0 {
				var err error
				if p, err = f.load(ctx, false); err != nil {
					return err
				}
				ns = p.Name
			}
			if err := compose.ValidNamespace(ns); err != nil {
				return usageError{err}
			}
			progress := cmd.ErrOrStderr()
			return a.withDocker(ctx, func(c *client.Client) error {
				d := &compose.Deployer{Engine: c, Out: progress}
				o := compose.DownOptions{Volumes: volumes}
				if p != nil {
					o.Project = p.Project
				}
				return d.Down(ctx, ns, o)
			})
		},
	}
	f.add(cmd)
	cmd.Flags().BoolVarP(&volumes, "volumes", "v", false, "remove the named volumes too")
	return cmd
}
