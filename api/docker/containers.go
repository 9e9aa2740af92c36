package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"

	"github.com/macro-cloud/macro/image"
	"github.com/macro-cloud/macro/runtime"
	"github.com/macro-cloud/macro/runtime/ocispec"
	"github.com/macro-cloud/macro/store"
	"github.com/macro-cloud/macro/types"
)

func (s *Server) routeContainers(mux *http.ServeMux) {
	s.handle(mux, "POST /containers/create", s.createContainer)
	s.handle(mux, "GET /containers/json", s.listContainers)
	s.handle(mux, "GET /containers/{id}/json", s.inspectContainer)
	s.handle(mux, "POST /containers/{id}/start", s.startContainer)
	s.handle(mux, "POST /containers/{id}/stop", s.stopContainer)
	s.handle(mux, "POST /containers/{id}/restart", s.restartContainer)
	s.handle(mux, "POST /containers/{id}/kill", s.killContainer)
	s.handle(mux, "POST /containers/{id}/pause", s.pauseContainer)
	s.handle(mux, "POST /containers/{id}/unpause", s.unpauseContainer)
	s.handle(mux, "POST /containers/{id}/rename", s.renameContainer)
	s.handle(mux, "POST /containers/{id}/wait", s.waitContainer)
	s.handle(mux, "POST /containers/{id}/update", s.updateContainer)
	s.handle(mux, "DELETE /containers/{id}", s.removeContainer)
	s.handle(mux, "POST /containers/prune", s.pruneContainers)
	s.handle(mux, "GET /containers/{id}/logs", s.logsContainer)
	s.handle(mux, "POST /containers/{id}/attach", s.attachContainer)
	s.handle(mux, "POST /containers/{id}/resize", s.resizeContainer)
	s.handle(mux, "GET /containers/{id}/top", s.topContainer)
	s.handle(mux, "GET /containers/{id}/stats", s.statsContainer)
	s.handle(mux, "GET /containers/{id}/changes", s.changesContainer)
	s.handle(mux, "GET /containers/{id}/export", s.exportContainer)
	s.handle(mux, "HEAD /containers/{id}/archive", s.statArchive)
	s.handle(mux, "GET /containers/{id}/archive", s.getArchive)
	s.handle(mux, "PUT /containers/{id}/archive", s.putArchive)
}

// tenantOf is the tenant a request acts for: from its client certificate
// on the API port, the default tenant on the machine's own sockets.
func tenantOf(r *http.Request) string { return requestTenant(r) }

// pod resolves the {id} of the path to a pod of the caller's tenant.
func (s *Server) pod(r *http.Request) (types.Pod, error) {
	ref := r.PathValue("id")
	p, err := s.store.ResolvePod(r.Context(), tenantOf(r), ref)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return p, notFound("No such container: %s", ref)
	case errors.Is(err, store.ErrAmbiguous):
		return p, badRequest("multiple IDs found with provided prefix: %s", ref)
	}
	return p, err
}

// podStatus resolves the {id} of the path and reads the pod's status.
func (s *Server) podStatus(r *http.Request) (types.Pod, types.PodStatus, error) {
	p, err := s.pod(r)
	if err != nil {
		return p, types.PodStatus{}, err
	}
	st, err := s.store.Status(r.Context(), p.Tenant, p.ID)
	return p, st, err
}

func (s *Server) createContainer(w http.ResponseWriter, r *http.Request) error {
	var req createRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	name := strings.TrimPrefix(r.URL.Query().Get("name"), "/")
	if name != "" && !validName.MatchString(name) {
		return badRequest("Invalid container name (%s), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", name)
	}
	if req.Image == "" {
		return badRequest("config cannot be empty in order to create a container")
	}
	if p := r.URL.Query().Get("platform"); p != "" && p != "linux/"+s.info.Arch && p != "linux" {
		return badRequest("image platform %s is not supported on this cloud (linux/%s)", p, s.info.Arch)
	}
	img, err := s.findImage(r, req.Image)
	if errors.Is(err, image.ErrNotFound) {
		return imageError(err) // "No such image: busybox:latest", the normalised reference
	} else if err != nil {
		return err
	}
	if err := s.checkContainerRefs(r, &req); err != nil {
		return err
	}
	spec, err := podFromCreate(&req, img, name, s.info.DefaultRuntime)
	if err != nil {
		return err
	}
	if err := checkMacroLabels(spec.Labels); err != nil {
		return err
	}
	if !contains(s.info.Runtimes, spec.Runtime) {
		return badRequest("unknown or invalid runtime name: %s", spec.Runtime)
	}
	id := newID()
	nets, err := s.prepareCreate(r, &spec, id)
	if err != nil {
		return err
	}
	p := types.Pod{
		ID:        id,
		Name:      name,
		Tenant:    tenantOf(r),
		Namespace: types.DefaultNamespace,
		Created:   time.Now().UTC(),
		Spec:      spec,
		Desired:   types.DesiredState{State: types.PhaseCreated},
	}
	if ns := spec.Labels["com.docker.compose.project"]; ns != "" {
		p.Namespace = ns
	}
	for attempt := 0; ; attempt++ {
		if name == "" {
			p.Name = randomName()
		}
		err = s.createPod(r.Context(), &p, nets) // within the tenant's quota
		var inUse *store.NameInUseError
		if errors.As(err, &inUse) {
			if name == "" && attempt < 20 {
				continue
			}
			return conflict("Conflict. The container name \"/%s\" is already in use by container \"%s\". You have to remove (or rename) that container to be able to reuse that name.", p.Name, inUse.ID)
		}
		if err != nil {
			return err
		}
		break
	}
	writeJSON(w, http.StatusCreated, container.CreateResponse{ID: p.ID, Warnings: []string{}})
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// setDesired changes a pod's desired state and waits until its node answers
// (status.Run reaches the new Run, or the phase matches), so that the
// command returns once it took effect, as with dockerd.
func (s *Server) setDesired(ctx context.Context, tenant, id string, fn func(p *types.Pod) error, done func(p types.Pod, st types.PodStatus) bool, timeout time.Duration) (types.Pod, types.PodStatus, error) {
	p, err := s.updateDesired(ctx, tenant, id, fn) // within the tenant's quota
	if err != nil {
		return p, types.PodStatus{}, err
	}
	// From the update on: a pod that fails to start and is removed (--rm)
	// before the first read still shows the status it ended with.
	st, err := s.waitSince(ctx, tenant, id, p.Revision, timeout, func(cur types.Pod, st types.PodStatus, gone bool) bool {
		return gone || done(cur, st)
	})
	return p, st, err
}

// waitFor blocks until cond holds for the pod (gone: it was deleted), ctx
// ends or timeout passes.
func (s *Server) waitFor(ctx context.Context, tenant, id string, timeout time.Duration, cond func(p types.Pod, st types.PodStatus, gone bool) bool) (types.PodStatus, error) {
	return s.waitSince(ctx, tenant, id, 0, timeout, cond)
}

// waitSince is waitFor that also sees the changes after store revision
// from (0: none) when the pod is gone by the time it is first read.
func (s *Server) waitSince(ctx context.Context, tenant, id string, from int64, timeout time.Duration, cond func(p types.Pod, st types.PodStatus, gone bool) bool) (types.PodStatus, error) {
	st, _, err := s.waitSinceRev(ctx, tenant, id, from, timeout, cond)
	return st, err
}

// waitSinceRev is waitSince that also returns the store revision at which
// cond held (0 when it held at the first read).
func (s *Server) waitSinceRev(ctx context.Context, tenant, id string, from int64, timeout time.Duration, cond func(p types.Pod, st types.PodStatus, gone bool) bool) (types.PodStatus, int64, error) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p, st, rev, err := s.store.PodState(ctx, tenant, id)
	if errors.Is(err, store.ErrNotFound) && from > 0 && from < rev {
		// Replay what happened between the change and its removal.
		rev, st = from, types.PodStatus{ID: id, Phase: types.PhaseCreated}
	} else if errors.Is(err, store.ErrNotFound) {
		cond(p, st, true)
		return st, 0, nil
	} else if err != nil {
		return st, 0, err
	} else if cond(p, st, false) {
		return st, 0, nil
	}
	for ch := range s.store.WatchPod(wctx, tenant, id, rev+1) {
		if ch.Deleted && ch.Kind == "pods" {
			cond(p, st, true)
			return st, ch.Revision, nil
		}
		if ch.Pod != nil {
			p = *ch.Pod
		}
		if ch.Status != nil {
			st = *ch.Status
		}
		if cond(p, st, false) {
			return st, ch.Revision, nil
		}
	}
	if ctx.Err() != nil {
		return st, 0, ctx.Err()
	}
	return st, 0, errors.New("watch ended")
}

func (s *Server) startContainer(w http.ResponseWriter, r *http.Request) error {
	p, st, err := s.podStatus(r)
	if err != nil {
		return err
	}
	if st.Phase.Up() {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	if _, err := s.nodeOf(r.Context(), p); err != nil {
		return err
	}
	var run int
	_, st, err = s.setDesired(r.Context(), p.Tenant, p.ID, func(p *types.Pod) error {
		p.Desired = types.DesiredState{State: types.PhaseRunning, Run: p.Desired.Run + 1}
		run = p.Desired.Run
		return nil
	}, func(p types.Pod, st types.PodStatus) bool {
		return st.Run >= run && st.Phase != types.PhaseCreated
	}, 2*time.Minute)
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	if st.Error != "" && st.Run == run && st.Phase == types.PhaseExited {
		return errorf(startErrorStatus(st.ExitCode), "%s", startErrorText(st.Error))
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// startErrorText is a failed start as dockerd words it: the OCI runtime's
// own failures come through containerd's shim ("failed to create shim
// task: OCI runtime create failed: runc create failed: ...: unknown"),
// failures found before the runtime runs (an unknown user) are bare.
func startErrorText(msg string) string {
	for _, rt := range []string{"runc", "runsc", "crun"} {
		if strings.HasPrefix(msg, rt+" create failed: ") {
			return "failed to create shim task: OCI runtime create failed: " + msg + ": unknown"
		}
	}
	return msg
}

// startErrorStatus: dockerd answers a missing command with 400 (the CLI
// then exits 127 or 126), other start failures with 500.
func startErrorStatus(code int) int {
	if code == 126 || code == 127 {
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

func queryTimeout(r *http.Request) (*int, error) {
	q := r.URL.Query().Get("t")
	if q == "" {
		q = r.URL.Query().Get("timeout")
	}
	if q == "" {
		return nil, nil
	}
	t, err := strconv.Atoi(q)
	if err != nil {
		return nil, badRequest("invalid value for timeout: %s", q)
	}
	return &t, nil
}

func (s *Server) stopContainer(w http.ResponseWriter, r *http.Request) error {
	p, err := s.pod(r)
	if err != nil {
		return err
	}
	timeout, err := queryTimeout(r)
	if err != nil {
		return err
	}
	sig := r.URL.Query().Get("signal")
	if sig != "" {
		if _, err := ocispec.ParseSignal(sig); err != nil {
			return badRequest("%v", err)
		}
	}
	st, err := s.store.Status(r.Context(), p.Tenant, p.ID)
	if err != nil {
		return err
	}
	if !st.Phase.Active() {
		if p.Desired.State == types.PhaseRunning {
			s.store.UpdatePod(r.Context(), p.Tenant, p.ID, func(p *types.Pod) error {
				p.Desired.State = types.PhaseExited
				return nil
			})
		}
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	if err := s.stop(r.Context(), p, timeout, sig); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// stop sets the pod's desired state to exited and waits until it is;
// signal, when set, replaces the pod's stop signal for this stop.
func (s *Server) stop(ctx context.Context, p types.Pod, timeout *int, signal string) error {
	_, _, err := s.setDesired(ctx, p.Tenant, p.ID, func(p *types.Pod) error {
		p.Desired = types.DesiredState{State: types.PhaseExited, Run: p.Desired.Run, StopTimeout: timeout, StopSignal: signal}
		return nil
	}, func(p types.Pod, st types.PodStatus) bool {
		return st.Phase == types.PhaseExited || st.Phase == types.PhaseCreated
	}, 0)
	if err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	return nil
}

func (s *Server) restartContainer(w http.ResponseWriter, r *http.Request) error {
	p, err := s.pod(r)
	if err != nil {
		return err
	}
	timeout, err := queryTimeout(r)
	if err != nil {
		return err
	}
	var run int
	_, st, err := s.setDesired(r.Context(), p.Tenant, p.ID, func(p *types.Pod) error {
		p.Desired = types.DesiredState{State: types.PhaseRunning, Run: p.Desired.Run + 1, StopTimeout: timeout}
		run = p.Desired.Run
		return nil
	}, func(p types.Pod, st types.PodStatus) bool {
		return st.Run >= run && st.Phase != types.PhaseCreated
	}, 0)
	if err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	if st.Error != "" && st.Phase == types.PhaseExited {
		return errorf(startErrorStatus(st.ExitCode), "Cannot restart container %s: %s", r.PathValue("id"), st.Error)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) killContainer(w http.ResponseWriter, r *http.Request) error {
	p, err := s.pod(r)
	if err != nil {
		return err
	}
	sig := syscall.SIGKILL
	if q := r.URL.Query().Get("signal"); q != "" {
		if sig, err = ocispec.ParseSignal(q); err != nil {
			return badRequest("%v", err)
		}
	}
	st, err := s.store.Status(r.Context(), p.Tenant, p.ID)
	if err != nil {
		return err
	}
	if !st.Phase.Up() {
		return conflict("Cannot kill container: %s: Container %s is not running", r.PathValue("id"), p.ID)
	}
	node, err := s.nodeOf(r.Context(), p)
	if err != nil {
		return err
	}
	s.containerEvent(r.Context(), p, "kill", map[string]string{"signal": strconv.Itoa(int(sig))})
	// An explicit kill, with any signal, is a manual stop: the exit it may
	// cause is final whatever the restart policy (dockerd 20.10 marks the
	// container manually stopped). SIGKILL also sets the desired state to
	// exited with a stop timeout of 0, so the node kills at once rather than
	// send the stop signal first; other signals leave the process running
	// if it survives them (SIGHUP to reload).
	if _, err := s.store.UpdatePod(r.Context(), p.Tenant, p.ID, func(p *types.Pod) error {
		p.Desired.Killed = true
		if sig == syscall.SIGKILL {
			zero := 0
			p.Desired.State = types.PhaseExited
			p.Desired.StopTimeout = &zero
		}
		return nil
	}); err != nil {
		return err
	}
	if err := node.Signal(r.Context(), p.ID, sig); err != nil {
		// The node may have killed it first, told by the desired state.
		if sig != syscall.SIGKILL || !errors.Is(err, runtime.ErrNotRunning) && !errors.Is(err, runtime.ErrNotFound) {
			return nodeError(err, p)
		}
	}
	if sig == syscall.SIGKILL {
		s.waitFor(r.Context(), p.Tenant, p.ID, 10*time.Second, func(_ types.Pod, st types.PodStatus, gone bool) bool {
			return gone || !st.Phase.Up()
		})
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) pauseContainer(w http.ResponseWriter, r *http.Request) error {
	return s.setPaused(w, r, true)
}

func (s *Server) unpauseContainer(w http.ResponseWriter, r *http.Request) error {
	return s.setPaused(w, r, false)
}

func (s *Server) setPaused(w http.ResponseWriter, r *http.Request, pause bool) error {
	p, st, err := s.podStatus(r)
	if err != nil {
		return err
	}
	if pause && st.Phase == types.PhasePaused {
		return conflict("Container %s is already paused", p.ID)
	}
	if pause && st.Phase != types.PhaseRunning {
		return conflict("Container %s is not running", p.ID)
	}
	if !pause && st.Phase != types.PhasePaused {
		return conflict("Container %s is not paused", p.ID)
	}
	want, phase := types.PhasePaused, types.PhasePaused
	if !pause {
		want, phase = types.PhaseRunning, types.PhaseRunning
	}
	_, st, err = s.setDesired(r.Context(), p.Tenant, p.ID, func(p *types.Pod) error {
		p.Desired.State = want
		return nil
	}, func(p types.Pod, st types.PodStatus) bool {
		return st.Phase == phase || st.Phase == types.PhaseExited || st.Error != ""
	}, 30*time.Second)
	if err != nil {
		return err
	}
	if st.Phase != phase && st.Error != "" {
		return errorf(http.StatusInternalServerError, "%s", st.Error)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) renameContainer(w http.ResponseWriter, r *http.Request) error {
	p, err := s.pod(r)
	if err != nil {
		return err
	}
	name := strings.TrimPrefix(r.URL.Query().Get("name"), "/")
	if name == "" || !validName.MatchString(name) {
		return badRequest("Invalid container name (%s), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", name)
	}
	if name == p.Name {
		return conflict("Renaming a container with the same name as its current name")
	}
	err = s.store.RenamePod(r.Context(), p.Tenant, p.ID, name)
	var inUse *store.NameInUseError
	if errors.As(err, &inUse) {
		return conflict("Error when allocating new name: Conflict. The container name \"/%s\" is already in use by container \"%s\". You have to remove (or rename) that container to be able to reuse that name.", name, inUse.ID)
	}
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) updateContainer(w http.ResponseWriter, r *http.Request) error {
	p, err := s.pod(r)
	if err != nil {
		return err
	}
	var req container.UpdateConfig
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if req.Memory != 0 || req.NanoCPUs != 0 || req.CPUShares != 0 || req.PidsLimit != nil {
		return badRequest("changing resource limits of an existing container is not supported yet")
	}
	if req.RestartPolicy.Name != "" {
		_, err = s.updateDesired(r.Context(), p.Tenant, p.ID, func(p *types.Pod) error {
			p.Spec.Restart = types.Restart{Policy: string(req.RestartPolicy.Name), MaxRetries: req.RestartPolicy.MaximumRetryCount}
			return nil
		})
		if err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusOK, container.UpdateResponse{Warnings: []string{}})
	return nil
}

func (s *Server) waitContainer(w http.ResponseWriter, r *http.Request) error {
	p, err := s.pod(r)
	if err != nil {
		return err
	}
	cond := r.URL.Query().Get("condition")
	if cond == "" {
		cond = "not-running"
	}
	if cond != "not-running" && cond != "next-exit" && cond != "removed" {
		return badRequest("invalid condition: %q", cond)
	}
	_, st0, _, err := s.store.PodState(r.Context(), p.Tenant, p.ID)
	if err != nil {
		return err
	}
	// Headers go out now: the CLI attaches, then starts, then reads this.
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	var last types.PodStatus
	_, rev, err := s.waitSinceRev(r.Context(), p.Tenant, p.ID, 0, 0, func(cur types.Pod, st types.PodStatus, gone bool) bool {
		if st.Exits > 0 || st.Phase != "" {
			last = st
		}
		switch cond {
		case "removed":
			return gone
		case "next-exit":
			return gone || st.Exits > st0.Exits && st.Phase != types.PhaseRestarting
		}
		if gone {
			return true
		}
		notRunning := st.Phase == types.PhaseExited || st.Phase == types.PhaseCreated || st.Phase == types.PhaseDead
		// A container told to run that has not started yet is not "not running".
		return notRunning && !(cur.Desired.State == types.PhaseRunning && st.Run < cur.Desired.Run)
	})
	// dockerd logs die and destroy as it acts, before the wait answers:
	// `docker run --rm` then `docker events --until now` shows them. Ours
	// come from the store's watch, so let them be published first.
	if rev > 0 {
		s.events.catchUp(r.Context(), rev, 2*time.Second)
	}
	// A failed start is not an error of the wait: dockerd's next-exit and
	// removed waits answer the exit code alone (the CLI would log "Error
	// waiting for container" on top of the start's error); not-running
	// reports the container's error as dockerd's State.Err does.
	resp := container.WaitResponse{StatusCode: int64(last.ExitCode)}
	if err != nil {
		resp.Error = &container.WaitExitError{Message: err.Error()}
	} else if last.Error != "" && cond == "not-running" {
		resp.Error = &container.WaitExitError{Message: last.Error}
	}
	return json.NewEncoder(w).Encode(resp)
}

func (s *Server) removeContainer(w http.ResponseWriter, r *http.Request) error {
	p, err := s.pod(r)
	if err != nil {
		return err
	}
	if boolValue(r, "link") {
		return badRequest("links are not supported")
	}
	st, err := s.store.Status(r.Context(), p.Tenant, p.ID)
	if err != nil {
		return err
	}
	running := st.Phase.Active()
	if running && !boolValue(r, "force") {
		if st.Phase == types.PhasePaused {
			return conflict("cannot remove container \"/%s\": container is paused and must be unpaused first, or use force", p.Name)
		}
		return conflict("cannot remove container \"/%s\": container is running: stop the container before removing or force remove", p.Name)
	}
	if err := s.store.DeletePod(r.Context(), p.Tenant, p.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if boolValue(r, "v") {
		s.removeAnonymousVolumes(r.Context(), p)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) pruneContainers(w http.ResponseWriter, r *http.Request) error {
	f, err := parseFilters(r)
	if err != nil {
		return err
	}
	items, err := s.containerItems(r.Context(), tenantOf(r))
	if err != nil {
		return err
	}
	report := container.PruneReport{ContainersDeleted: []string{}}
	for _, it := range items {
		if it.st.Phase.Active() {
			continue
		}
		if !f.matchLabels(it.p.Spec.Labels) || !f.untilOK(it.p.Created) {
			continue
		}
		if err := s.store.DeletePod(r.Context(), it.p.Tenant, it.p.ID); err == nil {
			report.ContainersDeleted = append(report.ContainersDeleted, it.p.ID)
		}
	}
	writeJSON(w, http.StatusOK, report)
	return nil
}

type item struct {
	p  types.Pod
	st types.PodStatus
}

func (s *Server) containerItems(ctx context.Context, tenant string) ([]item, error) {
	pods, err := s.store.Pods(ctx, tenant)
	if err != nil {
		return nil, err
	}
	sts, err := s.store.Statuses(ctx, tenant)
	if err != nil {
		return nil, err
	}
	out := make([]item, 0, len(pods))
	for _, p := range pods {
		st, ok := sts[p.ID]
		if !ok {
			st = types.PodStatus{ID: p.ID, Phase: types.PhaseCreated}
		}
		out = append(out, item{p, st})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].p.Created.After(out[j].p.Created) })
	return out, nil
}

func (s *Server) listContainers(w http.ResponseWriter, r *http.Request) error {
	f, err := parseFilters(r)
	if err != nil {
		return err
	}
	if err := f.only("id", "name", "label", "status", "ancestor", "exited", "before", "since", "health", "network", "volume", "is-task", "publish", "expose"); err != nil {
		return err
	}
	items, err := s.containerItems(r.Context(), tenantOf(r))
	if err != nil {
		return err
	}
	all := boolValue(r, "all")
	limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
	now := time.Now()
	out := []container.Summary{}
	for _, it := range items {
		state := dockerState(it.st)
		if !all && len(f["status"]) == 0 && state != "running" && state != "paused" && state != "restarting" {
			continue
		}
		if !s.matchContainer(r.Context(), f, it, state) {
			continue
		}
		sum := s.summary(it, state, now)
		if boolValue(r, "size") {
			sum.SizeRw, sum.SizeRootFs = s.sizes(r.Context(), it.p)
		}
		out = append(out, sum)
		if limit > 0 && len(out) >= limit {
			break
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// sizes are Docker's SizeRw (what the container wrote) and SizeRootFs (that
// and its image). A node that cannot tell answers zeroes, as dockerd does
// when it fails to measure.
func (s *Server) sizes(ctx context.Context, p types.Pod) (rw, rootfs int64) {
	if img, err := s.images.Tenant(p.Tenant).Lookup(ctx, p.Spec.ImageID); err == nil {
		rootfs = img.Size
	}
	if p.Node == "" {
		return 0, rootfs
	}
	node, err := s.nodes.Node(p.Node)
	if err != nil {
		return 0, rootfs
	}
	rw, err = node.Size(ctx, p.ID)
	if err != nil {
		s.log.Debug("container size", "pod", p.ID, "err", err)
		return 0, rootfs
	}
	return rw, rootfs + rw
}

func (s *Server) matchContainer(ctx context.Context, f filters, it item, state string) bool {
	if !f.matchAny("id", func(v string) bool { return strings.HasPrefix(it.p.ID, v) }) {
		return false
	}
	// dockerd: the name, with or without its slash, equal to the value or
	// matching it as a regular expression (name=^web$).
	if !f.matchAny("name", func(v string) bool {
		n := it.p.Name
		return v == n || v == "/"+n || matchRegexp(v, "/"+n) || matchRegexp(v, n)
	}) {
		return false
	}
	if !f.matchAny("status", func(v string) bool { return v == state }) {
		return false
	}
	if !f.matchAny("exited", func(v string) bool {
		return state == "exited" && v == strconv.Itoa(it.st.ExitCode)
	}) {
		return false
	}
	if !f.matchAny("health", func(v string) bool {
		h := "none"
		if it.st.Health != nil {
			h = it.st.Health.Status
		}
		return v == h
	}) {
		return false
	}
	if !f.matchLabels(it.p.Spec.Labels) {
		return false
	}
	if !f.matchAny("ancestor", func(v string) bool {
		if v == it.p.Spec.Image || strings.HasPrefix(strings.TrimPrefix(it.p.Spec.ImageID, "sha256:"), strings.TrimPrefix(v, "sha256:")) {
			return true
		}
		img, err := s.images.Tenant(it.p.Tenant).Lookup(ctx, v)
		return err == nil && img.ID == it.p.Spec.ImageID
	}) {
		return false
	}
	return true
}

func (s *Server) summary(it item, state string, now time.Time) container.Summary {
	p, st := it.p, it.st
	sum := container.Summary{
		ID:      p.ID,
		Names:   []string{"/" + p.Name},
		Image:   p.Spec.Image,
		ImageID: p.Spec.ImageID,
		Command: commandLine(p.Spec),
		Created: p.Created.Unix(),
		Ports:   []container.PortSummary{},
		Labels:  p.Spec.Labels,
		State:   container.ContainerState(state),
		Status:  statusText(st, now),
		Mounts:  s.mountPoints(p),
	}
	mode := networkMode(p.Spec)
	sum.HostConfig.NetworkMode = mode
	// The Networks column lists the networks joined: "none", "bridge" for
	// the default one, or the network named in the mode.
	net := mode
	if net == "default" {
		net = "bridge"
	}
	sum.NetworkSettings = &container.NetworkSettingsSummary{Networks: map[string]*network.EndpointSettings{net: {}}}
	joinedNetworks(sum.NetworkSettings.Networks, p.Spec, st)
	if st.Health != nil {
		sum.Health = &container.HealthSummary{Status: container.HealthStatus(st.Health.Status), FailingStreak: st.Health.FailingStreak}
	}
	return sum
}

// networkMode is HostConfig.NetworkMode as the container was created.
func networkMode(spec types.PodSpec) string {
	var hc struct{ NetworkMode string }
	json.Unmarshal(spec.DockerHostConfig, &hc)
	if hc.NetworkMode == "" {
		return "default"
	}
	return hc.NetworkMode
}

// commandLine is the Command column: entrypoint and cmd joined, the
// arguments with a space in single quotes, as dockerd writes it.
func commandLine(spec types.PodSpec) string {
	args := append(append([]string{}, spec.Entrypoint...), spec.Cmd...)
	for i, a := range args {
		if i > 0 && strings.Contains(a, " ") {
			args[i] = "'" + a + "'"
		}
	}
	return strings.Join(args, " ")
}

func (s *Server) inspectContainer(w http.ResponseWriter, r *http.Request) error {
	p, st, err := s.podStatus(r)
	if err != nil {
		return err
	}
	out := s.inspect(p, st)
	if boolValue(r, "size") {
		rw, rootfs := s.sizes(r.Context(), p)
		out.SizeRw, out.SizeRootFs = &rw, &rootfs
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// inspectJSON is Docker's container inspect document.
type inspectJSON struct {
	ID              string `json:"Id"`
	Created         string
	Path            string
	Args            []string
	State           stateJSON
	Image           string
	ResolvConfPath  string
	HostnamePath    string
	HostsPath       string
	LogPath         string
	Name            string
	RestartCount    int
	Driver          string
	Platform        string
	MountLabel      string
	ProcessLabel    string
	AppArmorProfile string
	ExecIDs         []string
	HostConfig      json.RawMessage
	SizeRw          *int64 `json:",omitempty"`
	SizeRootFs      *int64 `json:",omitempty"`
	GraphDriver     map[string]any
	Mounts          []container.MountPoint
	Config          json.RawMessage
	NetworkSettings map[string]any
	// Node and Unschedulable are macro's additions: where the pod runs, or
	// why it does not yet.
	Node          string `json:"Node,omitempty"`
	Unschedulable string `json:"Unschedulable,omitempty"`
}

type stateJSON struct {
	Status     string
	Running    bool
	Paused     bool
	Restarting bool
	OOMKilled  bool
	Dead       bool
	Pid        int
	ExitCode   int
	Error      string
	StartedAt  string
	FinishedAt string
	Health     *healthJSON `json:",omitempty"`
	// Suspend is macro's addition, once auto-suspend has frozen the pod.
	Suspend *suspendJSON `json:",omitempty"`
}

// suspendJSON shows auto-suspend in inspect: a suspended pod is running
// for Docker, frozen with its memory kept.
type suspendJSON struct {
	Suspended        bool
	Since            string `json:",omitempty"`
	Wakes            int
	SuspendedSeconds float64 // in total, the current suspension included
	LastWakeMs       float64 // how long the last thaw took on the node
}

type healthJSON struct {
	Status        string
	FailingStreak int
	Log           []healthLogJSON
}

type healthLogJSON struct {
	Start    string
	End      string
	ExitCode int
	Output   string
}

const zeroTime = "0001-01-01T00:00:00Z"

func timeString(t time.Time) string {
	if t.IsZero() {
		return zeroTime
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func (s *Server) inspect(p types.Pod, st types.PodStatus) inspectJSON {
	state := dockerState(st)
	args := append(append([]string{}, p.Spec.Entrypoint...), p.Spec.Cmd...)
	var path string
	if len(args) > 0 {
		path, args = args[0], args[1:]
	}
	cfg := map[string]any{}
	json.Unmarshal(p.Spec.DockerConfig, &cfg)
	if h, _ := cfg["Hostname"].(string); h == "" {
		cfg["Hostname"] = p.ID[:12]
	}
	if _, ok := cfg["OnBuild"]; !ok {
		cfg["OnBuild"] = nil // dockerd shows null; the API type leaves it out when empty
	}
	cfgJSON, _ := json.Marshal(cfg)
	hc := p.Spec.DockerHostConfig
	if len(hc) == 0 {
		hc = []byte("{}")
	}
	dir := path2(s.info.DataDir, "pods", p.ID)
	out := inspectJSON{
		ID:             p.ID,
		Created:        timeString(p.Created),
		Path:           path,
		Args:           args,
		Image:          p.Spec.ImageID,
		ResolvConfPath: path2(dir, "etc", "resolv.conf"),
		HostnamePath:   path2(dir, "etc", "hostname"),
		HostsPath:      path2(dir, "etc", "hosts"),
		LogPath:        path2(dir, "container.log"),
		Name:           "/" + p.Name,
		RestartCount:   st.RestartCount,
		Driver:         "overlay2",
		Platform:       "linux",
		HostConfig:     hc,
		GraphDriver:    map[string]any{"Name": "overlay2", "Data": map[string]string{"MergedDir": path2(dir, "rootfs"), "UpperDir": path2(dir, "upper"), "WorkDir": path2(dir, "work")}},
		Mounts:         s.mountPoints(p),
		Config:         cfgJSON,
		NetworkSettings: map[string]any{
			"Bridge": "", "SandboxID": "", "HairpinMode": false, "Ports": map[string]any{},
			"SandboxKey": "", "Networks": map[string]any{},
		},
		Node:          p.Node,
		Unschedulable: p.Unschedulable,
		State: stateJSON{
			Status:     state,
			Running:    st.Phase.Active(),
			Paused:     st.Phase == types.PhasePaused,
			Restarting: st.Phase == types.PhaseRestarting,
			OOMKilled:  st.OOMKilled,
			Dead:       st.Phase == types.PhaseDead,
			Pid:        st.Pid,
			ExitCode:   st.ExitCode,
			Error:      st.Error,
			StartedAt:  timeString(st.StartedAt),
			FinishedAt: timeString(st.FinishedAt),
		},
	}
	if sp := st.Suspend; sp != (types.Suspend{}) {
		total := sp.Total
		if sp.Suspended {
			total += time.Since(sp.Since)
		}
		out.State.Suspend = &suspendJSON{
			Suspended: sp.Suspended, Wakes: sp.Wakes,
			SuspendedSeconds: total.Seconds(), LastWakeMs: float64(sp.LastWake.Microseconds()) / 1000,
		}
		if sp.Suspended {
			out.State.Suspend.Since = timeString(sp.Since)
		}
	}
	if st.Health != nil {
		h := &healthJSON{Status: st.Health.Status, FailingStreak: st.Health.FailingStreak, Log: []healthLogJSON{}}
		for _, l := range st.Health.Log {
			h.Log = append(h.Log, healthLogJSON{Start: timeString(l.Start), End: timeString(l.End), ExitCode: l.ExitCode, Output: l.Output})
		}
		out.State.Health = h
	}
	if p.Node == "" && p.Unschedulable != "" {
		out.State.Error = "unschedulable: " + p.Unschedulable
	}
	out.NetworkSettings = networkSettings(p, st)
	// The networks a pod joined by name (compose's) replace the default
	// entry, as joinedNetworks does for ps.
	if nets, ok := out.NetworkSettings["Networks"].(map[string]any); ok && len(p.Spec.Networks) > 0 {
		delete(nets, networkMode(p.Spec))
		delete(nets, "bridge")
		for name, ep := range networkEndpoints(p.Spec, st) {
			nets[name] = ep
		}
	}
	return out
}

func path2(elem ...string) string { return path.Join(elem...) }
