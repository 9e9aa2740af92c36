package docker

import (
	"errors"
	"net/http"
	"strings"

	"github.com/macro-cloud/macro/store"
)

// checkContainerRefs resolves, in the caller's tenant only, the containers
// a create request names in its HostConfig: --volumes-from,
// --network/--pid/--ipc container:<ref> and --link. A reference that does
// not resolve there is answered as dockerd answers one to a container that
// does not exist: 400 "No such container: <ref>" (400, not 404, as dockerd
// does: the docker CLI takes a 404 of create for a missing image and
// pulls). Another tenant's container is exactly such a reference: the
// answer does not tell that it exists. What resolves is left to the
// translation, which refuses what macro cannot share.
func (s *Server) checkContainerRefs(r *http.Request, req *createRequest) error {
	hc := req.HostConfig
	if hc == nil {
		return nil
	}
	tenant := tenantOf(r)
	resolve := func(ref string) (bool, error) {
		_, err := s.store.ResolvePod(r.Context(), tenant, ref)
		switch {
		case err == nil, errors.Is(err, store.ErrAmbiguous):
			return true, nil
		case errors.Is(err, store.ErrNotFound):
			return false, nil
		}
		return false, err
	}
	var shared []string // namespaces shared with a container: never supported
	for _, mode := range []struct{ flag, value string }{
		{"network", string(hc.NetworkMode)},
		{"pid", string(hc.PidMode)},
		{"ipc", string(hc.IpcMode)},
	} {
		ref, ok := strings.CutPrefix(mode.value, "container:")
		if !ok {
			continue
		}
		found, err := resolve(ref)
		if err != nil {
			return err
		}
		if !found {
			return badRequest("No such container: %s", ref)
		}
		shared = append(shared, mode.flag)
	}
	for _, v := range hc.VolumesFrom {
		ref, _, _ := strings.Cut(v, ":")
		found, err := resolve(ref)
		if err != nil {
			return err
		}
		if !found {
			return badRequest("No such container: %s", ref)
		}
	}
	for _, l := range hc.Links {
		ref, _, _ := strings.Cut(strings.TrimPrefix(l, "/"), ":")
		found, err := resolve(ref)
		if err != nil {
			return err
		}
		if !found {
			return badRequest("could not get container for %s: No such container: %s", ref, ref)
		}
	}
	if len(shared) > 0 {
		return badRequest("sharing host or container namespaces is not supported")
	}
	return nil
}
