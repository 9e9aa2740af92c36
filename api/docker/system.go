package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	goruntime "runtime"
	"slices"
	"strings"
	"time"

	"github.com/macro-cloud/macro/store"
	"github.com/macro-cloud/macro/types"
)

func (s *Server) routeSystem(mux *http.ServeMux) {
	ping := func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Cache-Control", "no-cache, no-store, must-revalidate")
		w.Header().Set("Builder-Version", "")
		w.Header().Set("Docker-Experimental", "false")
		if r.Method == http.MethodHead {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusOK)
			return nil
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("OK"))
		return nil
	}
	s.handle(mux, "GET /_ping", ping)
	s.handle(mux, "HEAD /_ping", ping)
	s.handle(mux, "GET /version", s.version)
	s.handle(mux, "GET /info", s.systemInfo)
	s.handle(mux, "GET /events", s.eventsHandler)
	s.handle(mux, "GET /system/df", s.diskUsage)
	s.handle(mux, "/", func(w http.ResponseWriter, r *http.Request) error {
		// What clients ask that macro does not serve, to find the gaps.
		s.log.Info("unknown route", "method", r.Method, "path", r.URL.Path)
		return notFound("page not found")
	})
}

func (s *Server) version(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]any{
		"Platform":      map[string]string{"Name": "macro " + s.info.Version},
		"Version":       s.info.Version,
		"ApiVersion":    APIVersion,
		"MinAPIVersion": MinAPIVersion,
		"GitCommit":     s.info.GitCommit,
		"GoVersion":     goruntime.Version(),
		"Os":            "linux",
		"Arch":          s.info.Arch,
		"KernelVersion": s.info.KernelVersion,
		"BuildTime":     "",
		"Components": []map[string]any{
			{"Name": "Engine", "Version": s.info.Version, "Details": map[string]string{"ApiVersion": APIVersion, "MinAPIVersion": MinAPIVersion, "Os": "linux", "Arch": s.info.Arch}},
		},
	})
	return nil
}

func (s *Server) systemInfo(w http.ResponseWriter, r *http.Request) error {
	items, err := s.containerItems(r.Context(), tenantOf(r))
	if err != nil {
		return err
	}
	var running, paused, stopped int
	for _, it := range items {
		switch it.st.Phase {
		case types.PhaseRunning, types.PhaseRestarting:
			running++
		case types.PhasePaused:
			paused++
		default:
			stopped++
		}
	}
	imgs, _ := s.tenantImages(r).List(r.Context())
	runtimes := map[string]any{}
	for _, name := range s.info.Runtimes {
		runtimes[name] = map[string]string{"path": name}
	}
	ncpu, mem, status := s.clusterSummary(r.Context())
	writeJSON(w, http.StatusOK, map[string]any{
		"ID":                 s.info.Name,
		"Containers":         len(items),
		"ContainersRunning":  running,
		"ContainersPaused":   paused,
		"ContainersStopped":  stopped,
		"Images":             len(imgs),
		"Driver":             "overlay2",
		"DriverStatus":       [][2]string{{"Backing Filesystem", "extfs"}},
		"SystemStatus":       status,
		"Plugins":            map[string]any{"Volume": []string{"local"}, "Network": []string{"ipip"}, "Log": []string{"json-file"}},
		"MemoryLimit":        true,
		"SwapLimit":          false,
		"CpuCfsPeriod":       true,
		"CpuCfsQuota":        true,
		"CPUShares":          true,
		"PidsLimit":          true,
		"OomKillDisable":     false,
		"CPUSet":             false, // --cpuset-cpus is refused
		"KernelMemory":       false,
		"KernelMemoryTCP":    false,
		"BridgeNfIptables":   false, // no bridge: pods are routed
		"BridgeNfIp6tables":  false,
		"HttpProxy":          "",
		"HttpsProxy":         "",
		"NoProxy":            "",
		"GenericResources":   nil,
		"ContainerdCommit":   map[string]string{"ID": "", "Expected": ""}, // no containerd
		"RuncCommit":         map[string]string{"ID": "", "Expected": ""},
		"InitCommit":         map[string]string{"ID": "", "Expected": ""},
		"IPv4Forwarding":     true,
		"Debug":              false,
		"NFd":                0,
		"NGoroutines":        goruntime.NumGoroutine(),
		"SystemTime":         time.Now().Format(time.RFC3339Nano),
		"LoggingDriver":      "json-file",
		"CgroupDriver":       "cgroupfs",
		"CgroupVersion":      "1",
		"NEventsListener":    0,
		"KernelVersion":      s.info.KernelVersion,
		"OperatingSystem":    "macro",
		"OSVersion":          s.info.Version,
		"OSType":             "linux",
		"Architecture":       archName(s.info.Arch),
		"IndexServerAddress": "https://index.docker.io/v1/",
		"RegistryConfig":     map[string]any{"IndexConfigs": map[string]any{}, "InsecureRegistryCIDRs": []string{"127.0.0.0/8"}},
		"NCPU":               ncpu,
		"MemTotal":           mem,
		"DockerRootDir":      s.info.DataDir,
		"Name":               s.info.Name,
		"Labels":             []string{},
		"ExperimentalBuild":  false,
		"ServerVersion":      s.info.Version,
		"Runtimes":           runtimes,
		"DefaultRuntime":     s.info.DefaultRuntime,
		"Swarm":              map[string]any{"LocalNodeState": "inactive", "ControlAvailable": false, "NodeID": "", "NodeAddr": ""},
		"LiveRestoreEnabled": true,
		"Isolation":          "",
		"InitBinary":         "",
		"SecurityOptions":    []string{"name=seccomp,profile=builtin"},
		"Warnings":           []string{},
	})
	return nil
}

// clusterSummary is what docker info tells of the cluster: the CPUs and
// memory of its ready nodes, and as SystemStatus (which the docker CLI
// prints as " Nodes: 3 (2 ready)") how many nodes there are and their
// zones. Before any node registered (a server that just started its own
// agent), it is this machine's capacity.
func (s *Server) clusterSummary(ctx context.Context) (ncpu int, mem int64, status [][2]string) {
	var nodes []types.Node
	if s.store != nil {
		nodes, _ = s.store.Nodes(ctx)
	}
	if len(nodes) == 0 {
		return s.info.CPUs, s.info.MemoryBytes, nil
	}
	ready := 0
	zones := map[string]bool{}
	for _, n := range nodes {
		if z := n.Labels["zone"]; z != "" {
			zones[z] = true
		}
		if n.Ready {
			ready++
			ncpu += n.CPUs
			mem += n.MemoryBytes
		}
	}
	status = [][2]string{{"Nodes", fmt.Sprintf("%d (%d ready)", len(nodes), ready)}}
	if len(zones) > 0 {
		status = append(status, [2]string{"Zones", strings.Join(slices.Sorted(maps.Keys(zones)), ", ")})
	}
	return ncpu, mem, status
}

func archName(goarch string) string {
	switch goarch {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "aarch64"
	}
	return goarch
}

func (s *Server) diskUsage(w http.ResponseWriter, r *http.Request) error {
	items, err := s.containerItems(r.Context(), tenantOf(r))
	if err != nil {
		return err
	}
	now := time.Now()
	containers := []any{}
	users := map[string]int{}
	for _, it := range items {
		sum := s.summary(it, dockerState(it.st), now)
		sum.SizeRw, sum.SizeRootFs = s.sizes(r.Context(), it.p)
		containers = append(containers, sum)
		users[it.p.Spec.ImageID]++
	}
	imgs, err := s.tenantImages(r).List(r.Context())
	if err != nil {
		return err
	}
	images := []any{}
	var total int64
	for _, img := range imgs {
		total += img.Size
		images = append(images, map[string]any{
			"Id": img.ID, "ParentId": "", "RepoTags": nonNil(img.RepoTags), "RepoDigests": nonNil(img.RepoDigests),
			"Created": img.Created.Unix(), "Size": img.Size, "SharedSize": 0, "VirtualSize": img.Size,
			"Labels": img.Config.Config.Labels, "Containers": users[img.ID],
		})
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"LayersSize": total, "Images": images, "Containers": containers,
		"Volumes": s.volumeUsage(r.Context(), tenantOf(r)), "BuildCache": []any{},
	})
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// Run applies the restart policies of a daemon start (restartOnBoot),
// then feeds the event stream from the store until ctx ends.
func (s *Server) Run(ctx context.Context) {
	s.restartOnBoot(ctx)
	go s.removeVolumesWithPods(ctx)
	s.events.run(ctx, s.store, s.log)
}

// restartOnBoot does what dockerd does for its containers when it starts:
// a container with restart policy "always" that was started before and is
// not running now is started again, even if it was stopped by hand.
// ("unless-stopped" ones stay stopped when stopped by hand; the others are
// running or restarting already, as the node agent adopts them.)
//
// The single-machine cloud starts its API server and its node agent
// together, so a server start is the daemon start of Docker's docs. With
// several API servers this belongs to the node's agent instead.
func (s *Server) restartOnBoot(ctx context.Context) {
	snap, err := s.store.Snapshot(ctx)
	if err != nil {
		s.log.Warn("restart on boot: snapshot", "err", err)
		return
	}
	for _, p := range snap.Pods {
		st := snap.Statuses[p.ID]
		if p.Spec.Restart.Policy != "always" || !stoppedByHand(p.Desired) || p.Desired.Run == 0 {
			continue
		}
		if st.Phase != types.PhaseExited && st.Phase != types.PhaseCreated {
			continue
		}
		_, err := s.updateDesired(ctx, p.Tenant, p.ID, func(cur *types.Pod) error { // within the memory quota
			if !stoppedByHand(cur.Desired) {
				return nil
			}
			cur.Desired = types.DesiredState{State: types.PhaseRunning, Run: cur.Desired.Run + 1}
			return nil
		})
		if err != nil {
			s.log.Warn("restart on boot", "pod", p.ID, "err", err)
		}
	}
}

// stoppedByHand is true for a pod the tenant stopped or killed.
func stoppedByHand(d types.DesiredState) bool {
	return d.State == types.PhaseExited || d.Killed
}

func (s *Server) eventsHandler(w http.ResponseWriter, r *http.Request) error {
	f, err := parseFilters(r)
	if err != nil {
		return err
	}
	var since, until time.Time
	if v := r.URL.Query().Get("since"); v != "" {
		t, ok := parseTimestamp(v)
		if !ok {
			return badRequest("invalid value for since: %s", v)
		}
		since = t
	}
	if v := r.URL.Query().Get("until"); v != "" {
		t, ok := parseTimestamp(v)
		if !ok {
			return badRequest("invalid value for until: %s", v)
		}
		until = t
	}
	tenant := tenantOf(r)
	if !since.IsZero() || !until.IsZero() {
		// What happened before this request must be in the history, as
		// with dockerd that logs an event as it acts: `docker run --rm`
		// then `docker events --until 0s` shows the destroy.
		if rev, err := s.currentRevision(r.Context()); err == nil {
			s.events.catchUp(r.Context(), rev, 300*time.Millisecond)
		}
	}
	ch, past, cancel := s.events.subscribe()
	defer cancel()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	flush := func() {
		if fl, ok := w.(http.Flusher); ok {
			fl.Flush()
		}
	}
	flush()
	enc := json.NewEncoder(w)
	emit := func(e types.Event) bool {
		if e.Tenant != tenant || !matchEvent(f, e) || !since.IsZero() && e.Time.Before(since) {
			return true
		}
		if !until.IsZero() && e.Time.After(until) {
			return true
		}
		if enc.Encode(eventJSON(e)) != nil {
			return false
		}
		flush()
		return true
	}
	if !since.IsZero() {
		for _, e := range past {
			if !emit(e) {
				return nil
			}
		}
	}
	var deadline <-chan time.Time
	if !until.IsZero() {
		deadline = time.After(time.Until(until))
	}
	for {
		select {
		case <-r.Context().Done():
			return nil
		case <-deadline:
			// Events published just before the deadline may still be queued.
			for {
				select {
				case e, ok := <-ch:
					if !ok || !emit(e) {
						return nil
					}
				default:
					return nil
				}
			}
		case e, ok := <-ch:
			if !ok || !emit(e) {
				return nil
			}
		}
	}
}

// currentRevision is the store's revision now. (The store has no call for
// just that; reading a key that cannot exist answers it.)
func (s *Server) currentRevision(ctx context.Context) (int64, error) {
	_, _, rev, err := s.store.PodState(ctx, "", "")
	if errors.Is(err, store.ErrNotFound) {
		err = nil
	}
	return rev, err
}

func matchEvent(f filters, e types.Event) bool {
	return f.matchAny("type", func(v string) bool { return v == e.Type }) &&
		f.matchAny("event", func(v string) bool { return v == e.Action }) &&
		f.matchAny("container", func(v string) bool {
			// dockerd's FuzzyMatch: the ID or the name, or a prefix of either.
			return e.Type == "container" && (strings.HasPrefix(e.ID, v) || strings.HasPrefix(e.Attrs["name"], v))
		}) &&
		f.matchAny("image", func(v string) bool { return v == e.Attrs["image"] || v == e.ID }) &&
		f.matchLabels(e.Attrs)
}

func eventJSON(e types.Event) map[string]any {
	attrs := e.Attrs
	if attrs == nil {
		attrs = map[string]string{}
	}
	out := map[string]any{
		"Type": e.Type, "Action": e.Action, "Actor": map[string]any{"ID": e.ID, "Attributes": attrs},
		"scope": "local", "time": e.Time.Unix(), "timeNano": e.Time.UnixNano(),
	}
	if e.Type == "container" {
		out["status"] = e.Action
		out["id"] = e.ID
		out["from"] = attrs["image"]
	}
	return out
}
