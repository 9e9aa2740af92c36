package agent

import (
	"context"
	"path/filepath"

	"github.com/macro-cloud/macro/delta"
)

// VolumeData is a volume of this node as the delta-sync engine's two ends:
// its files as a Source (export, the source of a copy) and as a Receiver
// (import, the destination of a copy). The engine's state (index, staged
// chunks) sits beside the volume's files, in DATA/volumes/<tenant>/<name>/.delta.
func (a *Agent) VolumeData(ctx context.Context, tenant, name string) (*delta.TreeSource, *delta.TreeReceiver, error) {
	root, err := a.VolumeRoot(ctx, tenant, name)
	if err != nil {
		return nil, nil, err
	}
	state := VolumeDeltaState(root)
	return delta.SharedSource(root, state), delta.SharedReceiver(root, state, false, false), nil
}

// VolumeDeltaState is the state directory of the delta-sync engine for the
// volume whose files are at root.
func VolumeDeltaState(root string) string { return filepath.Join(filepath.Dir(root), ".delta") }
