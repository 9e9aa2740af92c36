package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/macro-cloud/macro/client"
	"github.com/macro-cloud/macro/client/compose"
)

// composeFlags are the flags kra up and kra down share.
type composeFlags struct {
	files     []string
	namespace string
	env       []string
	envFiles  []string
}

func (f *composeFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringArrayVarP(&f.files, "file", "f", nil, "compose file (repeat to merge; default compose.yaml, docker-compose.yml, ... or COMPOSE_FILE)")
	cmd.Flags().StringVarP(&f.namespace, "namespace", "n", "", "namespace, which is the project's name (default: the file's name:, COMPOSE_PROJECT_NAME, or the directory's name)")
	cmd.Flags().StringArrayVarP(&f.env, "env", "e", nil, "variable for interpolation in the file, K=V (over the environment and .env)")
	cmd.Flags().StringArrayVar(&f.envFiles, "env-file", nil, "file of variables for interpolation, instead of .env")
}

// load reads the compose file; check refuses what kra up cannot honour.
func (f *composeFlags) load(ctx context.Context, check bool) (*composeProject, error) {
	p, err := compose.Load(ctx, compose.LoadOptions{Files: f.files, Name: f.namespace, Env: f.env, EnvFiles: f.envFiles, NoCheck: !check})
	if err != nil {
		return nil, err
	}
	return &composeProject{p}, nil
}

func newUpCmd(a *app) *cobra.Command {
	var f composeFlags
	var detach bool
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Deploy a compose file into a namespace",
		Long: `Deploy a docker compose file without the docker CLI: kra loads it as docker
compose does (interpolation, .env, env_file, profiles, extends) and creates
the namespace's networks, volumes and containers through the Docker API,
with the labels docker compose sets, so that docker compose ps and down see
the project too. The namespace is the project's name.

Services start in the order of depends_on, waiting for service_healthy and
service_completed_successfully. Running kra up again leaves unchanged
containers alone and recreates those whose configuration or image changed.

Bind mounts of local files and directories (./config:/etc/app) are
uploaded into volumes (<namespace>_kra-files-<hash>), so the same file
works on a remote cloud; unchanged files are not uploaded again.

Without -d, kra up then shows the containers' output, prefixed with their
names, until they stop; Ctrl-C stops them (twice: kills them).

What kra cannot honour (build:, privileged:, secrets:, ...) is an error
that names it: nothing in the file is ignored silently.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			p, err := f.load(ctx, true)
			if err != nil {
				return err
			}
			progress := cmd.ErrOrStderr()
			return a.withDocker(ctx, func(c *client.Client) error {
				d := &compose.Deployer{Engine: c, Out: progress}
				fmt.Fprintf(progress, "Deploying %s into namespace %s\n", p.files(), p.Name)
				if err := d.Up(ctx, p.Project); err != nil {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					return fmt.Errorf("%w\n(kra down -n %s removes what was created)", err, p.Name)
				}
				if detach {
					return nil
				}
				return attach(ctx, d, p, cmd)
			})
		},
	}
	f.add(cmd)
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "return once the services are up, without showing their output")
	return cmd
}

// attach shows the containers' output until they all stop. The first
// SIGINT or SIGTERM stops them, a second one kills them, as an attached
// docker compose up does.
func attach(ctx context.Context, d *compose.Deployer, p *composeProject, cmd *cobra.Command) error {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	// The root context ends with the first signal: the logs and the stops
	// go on without it.
	logCtx, stopLogs := context.WithCancel(context.WithoutCancel(ctx))
	defer stopLogs()
	done := make(chan error, 1)
	go func() { done <- d.Attach(logCtx, p.Project, cmd.OutOrStdout()) }()
	select {
	case err := <-done:
		return err
	case <-sigs:
	}
	fmt.Fprintln(cmd.ErrOrStderr(), "Gracefully stopping... (press Ctrl+C again to force)")
	stopCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- d.Stop(stopCtx, p.Project, nil) }()
	var err error
	select {
	case err = <-stopped:
	case <-sigs:
		err = d.Kill(context.WithoutCancel(ctx), p.Project)
		cancel()
		<-stopped
	}
	stopLogs()
	<-done
	if err != nil {
		return err
	}
	return context.Canceled
}
