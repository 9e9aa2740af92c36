package volume

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// Snapshot space. A snapshot is copy-on-write: when it is taken it shares
// every block with its volume and costs nothing; each block the volume
// later rewrites or frees stays in the snapshot alone. What a snapshot
// holds alone (its btrfs qgroup's exclusive bytes, which the pool counts
// since quotas are on) is what deleting it would free, and what it counts
// for in its tenant's volume quota (api/docker: snapshotQuota).

// SnapshotSpacer is a Snapshotter that tells how much its snapshots hold.
type SnapshotSpacer interface {
	// SnapshotSpace is the space each snapshot of the volume holds
	// alone, by name.
	SnapshotSpace(ctx context.Context, ref Ref) (map[string]int64, error)
}

var _ SnapshotSpacer = (*Btrfs)(nil)

// SnapshotSpace implements SnapshotSpacer from the pool's qgroups (synced
// first, so that the last writes are counted).
func (b *Btrfs) SnapshotSpace(ctx context.Context, ref Ref) (map[string]int64, error) {
	_, snaps, err := b.paths(ctx, ref)
	if err != nil {
		return nil, err
	}
	mnt, err := b.Pool.Mount(ctx)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	list, err := b.list(snaps)
	b.mu.Unlock()
	if err != nil || len(list) == 0 {
		return map[string]int64{}, err
	}
	ids := map[string]string{} // qgroup id -> snapshot
	for _, s := range list {
		out, err := output(ctx, "btrfs", "inspect-internal", "rootid", filepath.Join(snaps, s.Name))
		if err != nil {
			continue // deleted meanwhile
		}
		ids["0/"+strings.TrimSpace(string(out))] = s.Name
	}
	out, err := output(ctx, "btrfs", "qgroup", "show", "--raw", "--sync", mnt)
	if err != nil {
		return nil, err
	}
	space, err := parseQgroups(out, ids)
	if err != nil {
		return nil, fmt.Errorf("snapshot space of %s: %w", ref, err)
	}
	return space, nil
}

// parseQgroups reads `btrfs qgroup show --raw`: the exclusive bytes of
// the qgroups named in ids, by their names there.
func parseQgroups(out []byte, ids map[string]string) (map[string]int64, error) {
	space := map[string]int64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 {
			continue
		}
		name, ok := ids[f[0]]
		if !ok {
			continue
		}
		excl, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("qgroup %s: exclusive %q", f[0], f[2])
		}
		space[name] = excl
	}
	return space, sc.Err()
}

func output(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}
