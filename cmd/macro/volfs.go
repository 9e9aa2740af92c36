package main

import (
	"context"
	"fmt"
	"net/http"
	"sync"

	"github.com/macro-cloud/macro/agent"
	"github.com/macro-cloud/macro/nodeproto"
	"github.com/macro-cloud/macro/store"
)

// volumeLocator finds the node of an nfs or gfs volume that another node
// mounts: the volume's record in the store. Other drivers are node-local
// (their pods are pinned) and refused.
func volumeLocator(st *store.Store) nodeproto.VolumeLocator {
	return func(ctx context.Context, tenant, name string) (string, error) {
		v, err := st.Volume(ctx, tenant, name)
		if err != nil {
			return "", fmt.Errorf("volume %s: %w", name, err)
		}
		if v.Driver != "nfs" && v.Driver != "gfs" {
			return "", fmt.Errorf("volume %s is a %s volume: only nfs and gfs volumes are mounted from other nodes", name, v.Driver)
		}
		if v.Node == "" {
			return "", fmt.Errorf("volume %s has no node", name)
		}
		return v.Node, nil
	}
}

// localVolumeOps is this server's own agent as the node protocol's volume
// server, nil when it runs none.
func localVolumeOps(ag *agent.Agent) nodeproto.Ops {
	if ag == nil {
		return nil
	}
	return ag
}

// volumeTransport carries the in-process agent's remote volume mounts
// through this server's own node client, once linkServer made it.
type volumeTransport struct {
	mu sync.Mutex
	tr http.RoundTripper
}

func (v *volumeTransport) set(cli *nodeproto.Client) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.tr = cli.VolumeTransport()
}

func (v *volumeTransport) get() http.RoundTripper {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.tr
}
