package api

// A volume's data, moved by the delta-sync engine (package delta) over its
// HTTP transport: kra exports a volume to an encrypted chunk store on a
// drive, and imports it back, sending and receiving only the chunks the
// other side lacks.
//
//	GET  /volumes/{name}/data/manifest   the volume's manifest
//	POST /volumes/{name}/data/manifest   the same, compact: the caller's groups of chunks by hash
//	POST /volumes/{name}/data/chunks     chunks of it, as frames
//	POST /volumes/{name}/data/known      import: the volume's groups of chunks, by hash
//	POST /volumes/{name}/data/want       import: which chunks of a manifest it lacks
//	POST /volumes/{name}/data/put        import: frames of chunks
//	POST /volumes/{name}/data/commit     import: the new tree, verified, in place
//
// The volume must be one of the caller's tenant (else 404). An import is
// refused (409) while a container that mounts the volume is running: it
// would keep the old files under it.

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"strings"

	"github.com/macro-cloud/macro/delta"
	"github.com/macro-cloud/macro/store"
)

// VolumeFiles reaches the files of a volume on the node that holds them
// (agent.(*Agent).VolumeRoot).
type VolumeFiles interface {
	VolumeRoot(ctx context.Context, tenant, name string) (string, error)
}

// SetVolumeFiles wires the volumes' files (the agent is made after the
// API server).
func (s *Server) SetVolumeFiles(v VolumeFiles) { s.volumeFiles = v }

func (s *Server) routeVolumeData(m *mux) {
	m.handle("GET /volumes/{name}/data/manifest", s.authed(s.volumeData("manifest")))
	for _, op := range []string{"manifest", "chunks", "known", "want", "put", "commit"} {
		m.handle("POST /volumes/{name}/data/"+op, s.authed(s.volumeData(op)))
	}
	s.routeVolumeCopy(m)
}

func (s *Server) volumeData(op string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		ctx := r.Context()
		tenant, name := caller(r).Tenant, r.PathValue("name")
		v, err := s.store.Volume(ctx, tenant, name)
		if errors.Is(err, store.ErrNotFound) {
			return errorf(http.StatusNotFound, "no such volume: %s", name)
		} else if err != nil {
			return err
		}
		importing := op != "manifest" && op != "chunks"
		if importing {
			if err := s.checkVolumeIdle(ctx, tenant, name); err != nil {
				return err
			}
		}
		if s.volumeNodes != nil {
			if rem := s.volumeNodes.RemoteVolume(v.Node, tenant, name); rem != nil {
				return proxyVolumeData(w, r, rem, op)
			}
		}
		if s.volumeFiles == nil {
			return errorf(http.StatusServiceUnavailable, "this server reaches no volume's files")
		}
		root, err := s.volumeFiles.VolumeRoot(ctx, tenant, name)
		if err != nil {
			return err
		}
		// The engine's state (index, staged chunks, the new tree) sits
		// beside the volume's files, on the same filesystem.
		state := filepath.Join(filepath.Dir(root), ".delta")
		src := delta.SharedSource(root, state)
		recv := delta.SharedReceiver(root, state, false, false)
		if importing {
			delta.Serve(w, r, op, nil, recv)
		} else {
			delta.Serve(w, r, op, src, nil)
		}
		if op == "commit" {
			s.log.Info("volume imported", "tenant", tenant, "volume", name)
		}
		return nil
	}
}

// checkVolumeIdle refuses an import into a volume that a running
// container of the tenant mounts.
func (s *Server) checkVolumeIdle(ctx context.Context, tenant, name string) error {
	pods, err := s.store.Pods(ctx, tenant)
	if err != nil {
		return err
	}
	statuses, err := s.store.Statuses(ctx, tenant)
	if err != nil {
		return err
	}
	var users []string
	for _, p := range pods {
		for _, m := range p.Spec.Mounts {
			if m.Type == "volume" && m.Source == name && statuses[p.ID].Phase.Active() {
				users = append(users, p.Name)
				break
			}
		}
	}
	if len(users) > 0 {
		return errorf(http.StatusConflict, "volume %s is in use by running containers [%s]: stop them first (docker stop), or use another volume", name, strings.Join(users, ", "))
	}
	return nil
}
