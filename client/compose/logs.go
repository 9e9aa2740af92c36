package compose

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/moby/api/types/container"

	"github.com/macro-cloud/macro/client"
)

// Attach follows the output of the project's containers (not of services
// with attach: false) into w, each line prefixed with its container's
// name without the project's ("web-1  | "), as docker compose up does,
// until every container stopped or ctx ends.
func (d *Deployer) Attach(ctx context.Context, p *types.Project, w io.Writer) error {
	cs, err := d.Engine.ListContainers(ctx, true, projectFilter(p.Name, OneoffLabel+"=False"))
	if err != nil {
		return err
	}
	var attach []container.Summary
	width := 0
	for _, c := range cs {
		s, ok := p.Services[c.Labels[ServiceLabel]]
		if !ok || (s.Attach != nil && !*s.Attach) {
			continue
		}
		attach = append(attach, c)
		if n := len(logPrefix(p.Name, c)); n > width {
			width = n
		}
	}
	width++ // compose's formatter: one space more than the longest name
	sort.Slice(attach, func(i, j int) bool { return containerName(attach[i]) < containerName(attach[j]) })
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make([]error, len(attach))
	for i, c := range attach {
		lw := &lineWriter{mu: &mu, w: w, prefix: fmt.Sprintf("%-*s | ", width, logPrefix(p.Name, c))}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := d.Engine.Logs(ctx, c.ID, client.LogsOptions{Follow: true}, lw, lw)
			lw.flush()
			if err != nil && ctx.Err() == nil && !errors.Is(err, client.ErrNotFound) {
				errs[i] = err
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// logPrefix is compose's name for a container in logs: without the
// project's prefix.
func logPrefix(project string, c container.Summary) string {
	return strings.TrimPrefix(containerName(c), project+"-")
}

// lineWriter writes whole lines to w with a prefix, under mu shared with
// the writers of the other containers.
type lineWriter struct {
	mu     *sync.Mutex
	w      io.Writer
	prefix string
	buf    []byte
}

func (l *lineWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, b...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		if _, err := fmt.Fprintf(l.w, "%s%s\n", l.prefix, l.buf[:i]); err != nil {
			return 0, err
		}
		l.buf = l.buf[i+1:]
	}
	return len(b), nil
}

func (l *lineWriter) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		fmt.Fprintf(l.w, "%s%s\n", l.prefix, l.buf)
		l.buf = nil
	}
}

// Stop stops the namespace's containers, services before what they depend
// on, each within timeout seconds (nil: its stop_grace_period), as the
// first Ctrl-C of an attached docker compose up does.
func (d *Deployer) Stop(ctx context.Context, p *types.Project, timeout *int) error {
	cs, err := d.Engine.ListContainers(ctx, false, projectFilter(p.Name, OneoffLabel+"=False"))
	if err != nil {
		return err
	}
	for _, level := range stopLevels(cs, p) {
		err := d.each(len(level), func(i int) error {
			c := level[i]
			t := timeout
			if t == nil {
				t = seconds(p.Services[c.Labels[ServiceLabel]].StopGracePeriod)
			}
			if err := d.Engine.StopContainer(ctx, c.ID, t); err != nil && !errors.Is(err, client.ErrNotFound) {
				return fmt.Errorf("stopping container %s: %w", containerName(c), err)
			}
			d.event("Container", containerName(c), "Stopped")
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// Kill sends SIGKILL to the namespace's running containers, as the second
// Ctrl-C of an attached docker compose up does.
func (d *Deployer) Kill(ctx context.Context, p *types.Project) error {
	cs, err := d.Engine.ListContainers(ctx, false, projectFilter(p.Name, OneoffLabel+"=False"))
	if err != nil {
		return err
	}
	sort.Slice(cs, func(i, j int) bool { return containerName(cs[i]) < containerName(cs[j]) })
	return d.each(len(cs), func(i int) error {
		err := d.Engine.KillContainer(ctx, cs[i].ID, "")
		if errors.Is(err, client.ErrConflict) || errors.Is(err, client.ErrNotFound) {
			return nil // stopped meanwhile
		}
		if err != nil {
			return fmt.Errorf("killing container %s: %w", containerName(cs[i]), err)
		}
		d.event("Container", containerName(cs[i]), "Killed")
		return nil
	})
}
