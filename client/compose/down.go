package compose

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/moby/api/types/container"

	"github.com/macro-cloud/macro/client"
)

// DownOptions says what Down removes besides containers and networks.
type DownOptions struct {
	// Volumes removes the namespace's named volumes too (down -v). The
	// volumes of uploaded local files are removed either way: they are
	// copies of local files, not data.
	Volumes bool
	// Project, when known, orders the stops: a service before what it
	// depends on, as compose does.
	Project *types.Project
}

// Down removes what the namespace ns holds of a compose project, found by
// its label (com.docker.compose.project), whoever created it (kra up,
// docker compose, or a failed up): containers (one-off and upload helpers
// too), networks, and with Volumes its volumes. External networks and
// volumes carry no project label and stay.
func (d *Deployer) Down(ctx context.Context, ns string, o DownOptions) error {
	e := d.Engine
	found := false
	cs, err := e.ListContainers(ctx, true, projectFilter(ns))
	if err != nil {
		return err
	}
	found = found || len(cs) > 0
	for _, level := range stopLevels(cs, o.Project) {
		if err := d.removeAll(ctx, level, o); err != nil {
			return err
		}
	}
	nets, err := e.ListNetworks(ctx, projectFilter(ns))
	if err != nil && !missingAPI(err) {
		return err
	}
	sort.Slice(nets, func(i, j int) bool { return nets[i].Name < nets[j].Name })
	for _, n := range nets {
		found = true
		if err := e.RemoveNetwork(ctx, n.ID); err != nil && !errors.Is(err, client.ErrNotFound) {
			return fmt.Errorf("removing network %s: %w", n.Name, err)
		}
		d.event("Network", n.Name, "Removed")
	}
	vols, err := e.ListVolumes(ctx, projectFilter(ns))
	if err != nil && !missingAPI(err) {
		return err
	}
	sort.Slice(vols, func(i, j int) bool { return vols[i].Name < vols[j].Name })
	for _, v := range vols {
		if !o.Volumes && v.Labels[FilesLabel] == "" {
			continue
		}
		found = true
		if err := e.RemoveVolume(ctx, v.Name, false); err != nil && !errors.Is(err, client.ErrNotFound) {
			return fmt.Errorf("removing volume %s: %w", v.Name, err)
		}
		d.event("Volume", v.Name, "Removed")
	}
	if !found {
		d.warn("no resource found to remove for namespace %q", ns)
	}
	return nil
}

// missingAPI says that a list answered 404: a server without the
// endpoint has none of the kind (macro before its networks and volumes
// API), so there is nothing to remove.
func missingAPI(err error) bool {
	var e *client.Error
	return errors.As(err, &e) && e.Status == 404
}

// stopLevels groups containers into the order compose stops them: those of
// services nothing depends on first, then what they depend on; containers
// of services the project does not name (or all, without a project) come
// in the first group.
func stopLevels(cs []container.Summary, p *types.Project) [][]container.Summary {
	if len(cs) == 0 {
		return nil
	}
	depth := map[string]int{} // service -> how many services stand above it
	if p != nil {
		order, err := DependencyOrder(p)
		if err == nil {
			// Walk from the dependents down: a dependency stops after
			// every service that depends on it.
			for i := len(order) - 1; i >= 0; i-- {
				name := order[i]
				for dep := range p.Services[name].DependsOn {
					if depth[dep] < depth[name]+1 {
						depth[dep] = depth[name] + 1
					}
				}
			}
		}
	}
	max := 0
	for _, v := range depth {
		if v > max {
			max = v
		}
	}
	levels := make([][]container.Summary, max+1)
	for _, c := range cs {
		l := depth[c.Labels[ServiceLabel]]
		levels[l] = append(levels[l], c)
	}
	for _, l := range levels {
		sort.Slice(l, func(i, j int) bool { return containerName(l[i]) < containerName(l[j]) })
	}
	return levels
}

// removeAll stops and removes containers, several at once: each stop may
// wait out its container's stop timeout.
func (d *Deployer) removeAll(ctx context.Context, cs []container.Summary, o DownOptions) error {
	return d.each(len(cs), func(i int) error {
		c := cs[i]
		var s types.ServiceConfig
		if o.Project != nil {
			s = o.Project.Services[c.Labels[ServiceLabel]]
		}
		if err := d.remove(ctx, c, s, o.Volumes); err != nil {
			return err
		}
		d.event("Container", containerName(c), "Removed")
		return nil
	})
}

// each calls fn for 0..n-1, d.Parallel at a time, in order when that is
// one, and joins the errors.
func (d *Deployer) each(n int, fn func(i int) error) error {
	errs := make([]error, n)
	if d.parallel() == 1 {
		for i := range n {
			errs[i] = fn(i)
		}
		return errors.Join(errs...)
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, d.parallel())
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = fn(i)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
