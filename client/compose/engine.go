package compose

import (
	"context"
	"io"

	"github.com/moby/moby/api/types/container"

	"github.com/macro-cloud/macro/client"
)

// Engine is the part of the Docker Engine API that up and down use.
// *client.Client implements it.
type Engine interface {
	ListContainers(ctx context.Context, all bool, f client.Filters) ([]container.Summary, error)
	Container(ctx context.Context, id string) (*container.InspectResponse, error)
	CreateContainer(ctx context.Context, name, platform string, body any) (string, error)
	StartContainer(ctx context.Context, id string) error
	StopContainer(ctx context.Context, id string, timeout *int) error
	KillContainer(ctx context.Context, id, signal string) error
	RemoveContainer(ctx context.Context, id string, force, volumes bool) error
	PutArchive(ctx context.Context, id, path string, tar io.Reader) error
	Logs(ctx context.Context, id string, o client.LogsOptions, stdout, stderr io.Writer) error

	ImageID(ctx context.Context, ref string) (string, error)
	PullImage(ctx context.Context, ref string) error

	ListNetworks(ctx context.Context, f client.Filters) ([]client.Network, error)
	CreateNetwork(ctx context.Context, body any) (string, error)
	RemoveNetwork(ctx context.Context, id string) error

	ListVolumes(ctx context.Context, f client.Filters) ([]client.Volume, error)
	CreateVolume(ctx context.Context, body any) (client.Volume, error)
	RemoveVolume(ctx context.Context, name string, force bool) error
}

var _ Engine = (*client.Client)(nil)
