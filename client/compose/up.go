package compose

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/moby/api/types/container"

	"github.com/macro-cloud/macro/client"
)

// Deployer brings compose projects up and down through an Engine.
type Deployer struct {
	Engine Engine
	// Out receives one line per step, as docker compose's plain progress
	// prints them: "Container demo-web-1  Started".
	Out io.Writer
	// Poll is how often up looks at a dependency it waits for; 250 ms when
	// zero.
	Poll time.Duration
	// Parallel bounds how many containers down and stop handle at once
	// (each stop may wait out a stop timeout); 8 when zero.
	Parallel int

	mu sync.Mutex // serializes Out
}

func (d *Deployer) event(kind, name, what string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.Out != nil {
		fmt.Fprintf(d.Out, " %s %s  %s\n", kind, name, what)
	}
}

func (d *Deployer) warn(format string, args ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.Out != nil {
		fmt.Fprintf(d.Out, "WARNING: "+format+"\n", args...)
	}
}

func (d *Deployer) parallel() int {
	if d.Parallel > 0 {
		return d.Parallel
	}
	return 8
}

func (d *Deployer) poll() time.Duration {
	if d.Poll > 0 {
		return d.Poll
	}
	return 250 * time.Millisecond
}

func projectFilter(ns string, more ...string) client.Filters {
	return client.Filters{"label": append([]string{ProjectLabel + "=" + ns}, more...)}
}

// Up deploys p into the namespace p.Name: images (pulled when missing),
// networks, volumes, local files, then each service's containers in
// dependency order, waiting for the conditions of depends_on. Containers
// whose config-hash and image are unchanged are left alone (started if they
// are not running); changed ones are recreated; replicas beyond
// deploy.replicas are removed. Everything it creates carries the project's
// label, so that Down removes all of it even after a failed Up.
func (d *Deployer) Up(ctx context.Context, p *types.Project) error {
	e := d.Engine
	// Local files first: a missing one fails before anything is created.
	uploads, err := ScanUploads(p)
	if err != nil {
		return err
	}
	images, err := d.ensureImages(ctx, p)
	if err != nil {
		return err
	}
	if err := d.ensureNetworks(ctx, p); err != nil {
		return err
	}
	if err := d.ensureVolumes(ctx, p); err != nil {
		return err
	}
	for _, src := range sortedKeys(uploads) {
		if err := d.upload(ctx, p, uploads[src]); err != nil {
			return err
		}
	}

	observed, err := e.ListContainers(ctx, true, projectFilter(p.Name, OneoffLabel+"=False"))
	if err != nil {
		return err
	}
	byService := map[string][]container.Summary{}
	var orphans []string
	for _, c := range observed {
		svc := c.Labels[ServiceLabel]
		if _, ok := p.Services[svc]; !ok {
			orphans = append(orphans, containerName(c))
			continue
		}
		byService[svc] = append(byService[svc], c)
	}
	if len(orphans) > 0 {
		sort.Strings(orphans)
		d.warn("Found orphan containers (%s) for this project: kra down removes them", strings.Join(orphans, ", "))
	}
	order, err := DependencyOrder(p)
	if err != nil {
		return err
	}
	running := map[string][]string{} // service -> container IDs
	for _, name := range order {
		s := p.Services[name]
		if err := d.waitDependencies(ctx, p, s, running); err != nil {
			return err
		}
		ids, err := d.converge(ctx, p, s, byService[name], images[ImageName(p, s)], uploads)
		if err != nil {
			return err
		}
		running[name] = ids
	}
	return d.removeStaleUploads(ctx, p, uploads)
}

// ensureImages returns the image ID of every service's image, pulling the
// missing ones (and all with pull_policy: always).
func (d *Deployer) ensureImages(ctx context.Context, p *types.Project) (map[string]string, error) {
	ids := map[string]string{}
	for _, name := range serviceNames(p) {
		s := p.Services[name]
		ref := ImageName(p, s)
		if _, ok := ids[ref]; ok {
			continue
		}
		if s.Build != nil {
			d.warn("service %s: build is ignored: kra deploys the image %s (push it with kra push)", name, ref)
		}
		id, err := d.Engine.ImageID(ctx, ref)
		if err != nil {
			return nil, fmt.Errorf("service %s: image %s: %w", name, ref, err)
		}
		policy := s.PullPolicy
		if id == "" && (policy == types.PullPolicyNever || policy == types.PullPolicyBuild) {
			return nil, fmt.Errorf("service %s: no image %s, and pull_policy is %s", name, ref, policy)
		}
		if id == "" || policy == types.PullPolicyAlways {
			d.event("Image", ref, "Pulling")
			if err := d.Engine.PullImage(ctx, ref); err != nil {
				return nil, fmt.Errorf("service %s: pulling %s: %w", name, ref, err)
			}
			if id, err = d.Engine.ImageID(ctx, ref); err != nil {
				return nil, fmt.Errorf("service %s: image %s: %w", name, ref, err)
			}
			if id == "" {
				return nil, fmt.Errorf("service %s: no image %s after pulling it", name, ref)
			}
			d.event("Image", ref, "Pulled")
		}
		ids[ref] = id
	}
	return ids, nil
}

func (d *Deployer) ensureNetworks(ctx context.Context, p *types.Project) error {
	for _, key := range sortedKeys(p.Networks) {
		n := p.Networks[key]
		var found *client.Network
		if !bool(n.External) {
			// By its labels first, as compose looks for it: a server may
			// show the name differently (macro: <namespace>/<overlay>).
			mine, err := d.Engine.ListNetworks(ctx, projectFilter(p.Name, NetworkLabel+"="+key))
			if err != nil {
				return fmt.Errorf("network %s: %w", n.Name, err)
			}
			if len(mine) > 0 {
				continue
			}
		}
		byName, err := d.Engine.ListNetworks(ctx, client.Filters{"name": {n.Name}})
		if err != nil {
			return fmt.Errorf("network %s: %w", n.Name, err)
		}
		for i := range byName {
			if byName[i].Name == n.Name || byName[i].ID == n.Name {
				found = &byName[i]
				break
			}
		}
		if bool(n.External) {
			if found == nil {
				return fmt.Errorf("network %s declared as external, but could not be found", n.Name)
			}
			continue
		}
		if found != nil {
			if found.Labels[ProjectLabel] != p.Name {
				d.warn("a network with name %s exists but was not created for namespace %s: using it", n.Name, p.Name)
			}
			continue
		}
		req, err := NetworkRequest(p, key)
		if err != nil {
			return err
		}
		if _, err := d.Engine.CreateNetwork(ctx, req); err != nil {
			return fmt.Errorf("creating network %s: %w", n.Name, err)
		}
		d.event("Network", n.Name, "Created")
	}
	return nil
}

// volumeExists finds a volume by its name, or (when ns is not empty) by
// the labels of the namespace's volume key.
func (d *Deployer) volumeExists(ctx context.Context, name, ns, key string) (*client.Volume, error) {
	list, err := d.Engine.ListVolumes(ctx, client.Filters{"name": {name}})
	if err != nil {
		return nil, fmt.Errorf("volume %s: %w", name, err)
	}
	for i := range list {
		if list[i].Name == name {
			return &list[i], nil
		}
	}
	if ns == "" {
		return nil, nil
	}
	list, err = d.Engine.ListVolumes(ctx, projectFilter(ns, VolumeLabel+"="+key))
	if err != nil {
		return nil, fmt.Errorf("volume %s: %w", name, err)
	}
	if len(list) > 0 {
		return &list[0], nil
	}
	return nil, nil
}

func (d *Deployer) ensureVolumes(ctx context.Context, p *types.Project) error {
	for _, key := range sortedKeys(p.Volumes) {
		v := p.Volumes[key]
		ns := p.Name
		if bool(v.External) {
			ns = ""
		}
		found, err := d.volumeExists(ctx, v.Name, ns, key)
		if err != nil {
			return err
		}
		if bool(v.External) {
			if found == nil {
				return fmt.Errorf("external volume %q not found", v.Name)
			}
			continue
		}
		if found != nil {
			if found.Labels[ProjectLabel] != p.Name {
				d.warn("volume %q already exists but was not created for namespace %s: using it", v.Name, p.Name)
			} else if h, _ := VolumeHash(v); found.Labels[ConfigHashLabel] != "" && found.Labels[ConfigHashLabel] != h {
				d.warn("volume %q exists but does not match the compose file: kra down -v removes it (and its data)", v.Name)
			}
			continue
		}
		req, err := VolumeRequest(p, key)
		if err != nil {
			return err
		}
		if _, err := d.Engine.CreateVolume(ctx, req); err != nil {
			return fmt.Errorf("creating volume %s: %w", v.Name, err)
		}
		d.event("Volume", v.Name, "Created")
	}
	return nil
}

// uploadMount is where the helper container mounts an upload's volume.
const uploadMount = "/kra-upload"

// upload puts u's contents into its volume through a helper container
// that is created (never started) with the volume mounted, and removed
// after PUT /containers/{id}/archive. An existing volume without a
// leftover helper holds the contents already: the helper is removed only
// after a complete upload.
func (d *Deployer) upload(ctx context.Context, p *types.Project, u Upload) error {
	e := d.Engine
	what := u.describe(p.WorkingDir)
	helper := p.Name + "-kra-upload-" + u.Hash[:12]
	vol, err := d.volumeExists(ctx, u.Volume, p.Name, strings.TrimPrefix(u.Volume, p.Name+"_"))
	if err != nil {
		return err
	}
	leftover, err := e.Container(ctx, helper)
	if err != nil && !errors.Is(err, client.ErrNotFound) {
		return fmt.Errorf("uploading %s: %w", what, err)
	}
	if vol != nil && leftover == nil {
		d.event("Files", what, "Unchanged")
		return nil
	}
	if leftover != nil {
		if err := e.RemoveContainer(ctx, leftover.ID, true, false); err != nil {
			return fmt.Errorf("uploading %s: removing the helper container of an earlier upload: %w", what, err)
		}
	}
	if vol == nil {
		_, err := e.CreateVolume(ctx, VolumeCreate{Name: u.Volume, Labels: map[string]string{
			ProjectLabel: p.Name,
			VolumeLabel:  strings.TrimPrefix(u.Volume, p.Name+"_"),
			VersionLabel: ComposeVersion,
			FilesLabel:   u.Source,
		}})
		if err != nil {
			return fmt.Errorf("uploading %s: creating volume %s: %w", what, u.Volume, err)
		}
	}
	none := container.NetworkMode("none")
	id, err := e.CreateContainer(ctx, helper, "", CreateRequest{
		Config: container.Config{
			Image:      u.Image,
			Entrypoint: []string{"/kra-upload-helper-never-runs"},
			Labels: map[string]string{
				ProjectLabel: p.Name,
				ServiceLabel: "kra-upload",
				OneoffLabel:  "True",
				VersionLabel: ComposeVersion,
			},
		},
		HostConfig: &container.HostConfig{
			NetworkMode: none,
			Binds:       []string{u.Volume + ":" + uploadMount + ":rw"},
		},
	})
	if err != nil {
		return fmt.Errorf("uploading %s: creating the helper container: %w", what, err)
	}
	// Streamed: a large directory is never held in memory.
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(u.Tar(pw)) }()
	err = e.PutArchive(ctx, id, uploadMount, pr)
	pr.CloseWithError(errors.New("upload ended"))
	if err != nil {
		return fmt.Errorf("uploading %s into volume %s: %w", what, u.Volume, err)
	}
	if err := e.RemoveContainer(ctx, id, true, false); err != nil {
		return fmt.Errorf("uploading %s: removing the helper container: %w", what, err)
	}
	d.event("Files", what, "Uploaded to volume "+u.Volume)
	return nil
}

// removeStaleUploads removes the namespace's upload volumes of contents no
// longer in the file; one still mounted (by an orphan) stays.
func (d *Deployer) removeStaleUploads(ctx context.Context, p *types.Project, uploads Uploads) error {
	list, err := d.Engine.ListVolumes(ctx, projectFilter(p.Name, FilesLabel))
	if missingAPI(err) && len(uploads) == 0 {
		return nil // a server without volumes has none to remove
	}
	if err != nil {
		return err
	}
	current := map[string]bool{}
	for _, u := range uploads {
		current[u.Volume] = true
	}
	for _, v := range list {
		if current[v.Name] || v.Labels[FilesLabel] == "" {
			continue
		}
		err := d.Engine.RemoveVolume(ctx, v.Name, false)
		if errors.Is(err, client.ErrConflict) {
			continue // in use
		}
		if err != nil && !errors.Is(err, client.ErrNotFound) {
			return fmt.Errorf("removing volume %s of old files: %w", v.Name, err)
		}
	}
	return nil
}

// DependencyOrder returns p's services so that each comes after what it
// depends on, in name order where that leaves a choice.
func DependencyOrder(p *types.Project) ([]string, error) {
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name string, path []string) error
	visit = func(name string, path []string) error {
		switch state[name] {
		case 1:
			return fmt.Errorf("dependency cycle detected: %s", strings.Join(append(path, name), " -> "))
		case 2:
			return nil
		}
		state[name] = 1
		s := p.Services[name]
		for _, dep := range sortedKeys(s.DependsOn) {
			if _, ok := p.Services[dep]; !ok {
				if s.DependsOn[dep].Required {
					return fmt.Errorf("service %s depends on unknown service %s", name, dep)
				}
				continue
			}
			if err := visit(dep, append(path, name)); err != nil {
				return err
			}
		}
		state[name] = 2
		order = append(order, name)
		return nil
	}
	for _, name := range serviceNames(p) {
		if err := visit(name, nil); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// waitDependencies waits for the conditions of s's depends_on.
func (d *Deployer) waitDependencies(ctx context.Context, p *types.Project, s types.ServiceConfig, running map[string][]string) error {
	for _, dep := range sortedKeys(s.DependsOn) {
		cond := s.DependsOn[dep].Condition
		if _, ok := p.Services[dep]; !ok {
			continue // not required, and not deployed
		}
		switch cond {
		case "", types.ServiceConditionStarted:
			continue
		case types.ServiceConditionHealthy, types.ServiceConditionCompletedSuccessfully:
		default:
			return fmt.Errorf("service %s: depends_on %s: unknown condition %s", s.Name, dep, cond)
		}
		for _, id := range running[dep] {
			if err := d.waitFor(ctx, s.Name, dep, id, cond); err != nil {
				return err
			}
		}
	}
	return nil
}

func (d *Deployer) waitFor(ctx context.Context, svc, dep, id, cond string) error {
	t := time.NewTicker(d.poll())
	defer t.Stop()
	waiting := false
	for {
		c, err := d.Engine.Container(ctx, id)
		if err != nil {
			return fmt.Errorf("service %s waits for %s: %w", svc, dep, err)
		}
		name := strings.TrimPrefix(c.Name, "/")
		st := c.State
		if st == nil {
			return fmt.Errorf("service %s waits for %s: container %s has no state", svc, dep, name)
		}
		switch cond {
		case types.ServiceConditionHealthy:
			if c.Config != nil && (c.Config.Healthcheck == nil || len(c.Config.Healthcheck.Test) == 0 || c.Config.Healthcheck.Test[0] == "NONE") && st.Health == nil {
				return fmt.Errorf("dependency failed to start: container %s has no healthcheck configured (service %s waits for %s to be healthy)", name, svc, dep)
			}
			if st.Health != nil {
				switch st.Health.Status {
				case container.Healthy:
					d.event("Container", name, "Healthy")
					return nil
				case container.Unhealthy:
					return fmt.Errorf("dependency failed to start: container %s is unhealthy", name)
				}
			}
			if !st.Running && !st.Restarting {
				return fmt.Errorf("dependency failed to start: container %s exited (%d)", name, st.ExitCode)
			}
		case types.ServiceConditionCompletedSuccessfully:
			if !st.Running && !st.Restarting && st.Status != container.StateCreated {
				if st.ExitCode != 0 {
					return fmt.Errorf("service %q didn't complete successfully: exit %d", dep, st.ExitCode)
				}
				d.event("Container", name, "Exited")
				return nil
			}
		}
		if !waiting {
			d.event("Container", name, "Waiting")
			waiting = true
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// containerRef is an existing container of a service.
type containerRef struct {
	container.Summary
	Number int
}

// sortByNumber sorts by container number.
func sortByNumber(list []containerRef) {
	sort.Slice(list, func(i, j int) bool { return list[i].Number < list[j].Number })
}

func containerName(c container.Summary) string {
	if len(c.Names) > 0 {
		return strings.TrimPrefix(c.Names[0], "/")
	}
	return c.ID
}

// converge makes the service's containers match s and returns their IDs
// in number order.
func (d *Deployer) converge(ctx context.Context, p *types.Project, s types.ServiceConfig, observed []container.Summary, imageID string, uploads Uploads) ([]string, error) {
	want := replicas(s)
	if want > 1 && s.ContainerName != "" {
		return nil, fmt.Errorf("service %s: container_name %s cannot be used with %d replicas: names are unique", s.Name, s.ContainerName, want)
	}
	probe, err := ContainerRequest(p, s, 1, imageID, uploads)
	if err != nil {
		return nil, err
	}
	hash := probe.Labels[ConfigHashLabel]
	var list []containerRef
	next := 1
	for _, c := range observed {
		n, _ := strconv.Atoi(c.Labels[NumberLabel])
		list = append(list, containerRef{Summary: c, Number: n})
		if n >= next {
			next = n + 1
		}
	}
	sortByNumber(list)
	var ids []string
	kept := 0
	for _, c := range list {
		name := containerName(c.Summary)
		if kept >= want || c.Number < 1 {
			if err := d.remove(ctx, c.Summary, s, false); err != nil {
				return nil, err
			}
			d.event("Container", name, "Removed")
			continue
		}
		kept++
		if c.Labels[ConfigHashLabel] != hash || c.Labels[ImageLabel] != imageID {
			if err := d.remove(ctx, c.Summary, s, false); err != nil {
				return nil, err
			}
			id, err := d.create(ctx, p, s, c.Number, imageID, uploads)
			if err != nil {
				return nil, err
			}
			d.event("Container", name, "Recreated")
			if err := d.start(ctx, id, name); err != nil {
				return nil, err
			}
			ids = append(ids, id)
			continue
		}
		if c.State == container.StateRunning {
			d.event("Container", name, "Running")
		} else if err := d.start(ctx, c.ID, name); err != nil {
			return nil, err
		}
		ids = append(ids, c.ID)
	}
	for ; kept < want; kept++ {
		n := next
		next++
		id, err := d.create(ctx, p, s, n, imageID, uploads)
		if err != nil {
			return nil, err
		}
		name := ContainerName(p, s, n)
		d.event("Container", name, "Created")
		if err := d.start(ctx, id, name); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, nil
}

func (d *Deployer) create(ctx context.Context, p *types.Project, s types.ServiceConfig, n int, imageID string, uploads Uploads) (string, error) {
	req, err := ContainerRequest(p, s, n, imageID, uploads)
	if err != nil {
		return "", err
	}
	name := ContainerName(p, s, n)
	id, err := d.Engine.CreateContainer(ctx, name, s.Platform, req)
	if err != nil {
		return "", fmt.Errorf("service %s: creating container %s: %w", s.Name, name, err)
	}
	return id, nil
}

func (d *Deployer) start(ctx context.Context, id, name string) error {
	if err := d.Engine.StartContainer(ctx, id); err != nil {
		return fmt.Errorf("starting container %s: %w", name, err)
	}
	d.event("Container", name, "Started")
	return nil
}

// remove stops a container (within the service's stop_grace_period) and
// removes it, with its anonymous volumes when volumes.
func (d *Deployer) remove(ctx context.Context, c container.Summary, s types.ServiceConfig, volumes bool) error {
	name := containerName(c)
	if c.State == container.StateRunning || c.State == container.StateRestarting || c.State == container.StatePaused {
		if err := d.Engine.StopContainer(ctx, c.ID, seconds(s.StopGracePeriod)); err != nil && !errors.Is(err, client.ErrNotFound) {
			return fmt.Errorf("stopping container %s: %w", name, err)
		}
	}
	if err := d.Engine.RemoveContainer(ctx, c.ID, true, volumes); err != nil && !errors.Is(err, client.ErrNotFound) {
		return fmt.Errorf("removing container %s: %w", name, err)
	}
	return nil
}
