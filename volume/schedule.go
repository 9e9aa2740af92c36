package volume

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// AutoPrefix starts the names of the snapshots a schedule takes.
const AutoPrefix = "auto-"

// Plan is what a volume's snapshot schedule does at now: the snapshot to
// take (nil when the newest automatic one is younger than opts.Every) and
// the automatic snapshots to delete, oldest first, so that opts.Keep
// remain. Snapshots a tenant took are never pruned. Pure: the clock is
// the caller's.
func Plan(snaps []Snapshot, opts Options, now time.Time) (take *Snapshot, prune []string) {
	if opts.Every <= 0 {
		return nil, nil
	}
	var auto []Snapshot
	for _, s := range snaps {
		if s.Auto {
			auto = append(auto, s)
		}
	}
	if len(auto) == 0 || !now.Before(auto[len(auto)-1].Created.Add(opts.Every)) {
		take = &Snapshot{Name: AutoPrefix + now.UTC().Format("20060102T150405Z"), Created: now.UTC(), Auto: true}
		auto = append(auto, *take)
	}
	keep := opts.Keep
	if keep < 1 {
		keep = DefaultKeep
	}
	for i := 0; i < len(auto)-keep; i++ {
		prune = append(prune, auto[i].Name)
	}
	return take, prune
}

// RunSchedule applies Plan to one volume with snapshotter s: takes the
// snapshot that is due and prunes. snaps is sorted oldest first.
func RunSchedule(ctx context.Context, s Snapshotter, ref Ref, opts Options, now time.Time) error {
	snaps, err := s.Snapshots(ctx, ref)
	if err != nil {
		return err
	}
	take, prune := Plan(snaps, opts, now)
	var errs []error
	if take != nil {
		if err := s.Snapshot(ctx, ref, *take); err != nil && !errors.Is(err, ErrSnapshotExists) {
			errs = append(errs, err)
		}
	}
	for _, name := range prune {
		if !strings.HasPrefix(name, AutoPrefix) {
			continue // only what a schedule took
		}
		if err := s.DeleteSnapshot(ctx, ref, name); err != nil && !errors.Is(err, ErrSnapshotNotFound) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("snapshot schedule of %s: %w", ref, err)
	}
	return nil
}
