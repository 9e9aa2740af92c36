package volume

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParseOptions(t *testing.T) {
	tests := []struct {
		driver string
		opts   map[string]string
		want   Options
		err    string
	}{
		{driver: "local"},
		{driver: ""},
		{driver: "local", opts: map[string]string{"type": "nfs"}, err: "local volume options are not supported (type)"},
		{driver: "zfs", err: `unknown volume driver "zfs"`},
		{driver: "lv2", err: "an lv2 volume needs a size"},
		{driver: "lv2", opts: map[string]string{"size": "1M"}, err: "at least 16M"},
		{driver: "lv2", opts: map[string]string{"size": "10G", "zone": "a"}, want: Options{Size: 10 << 30, Zone: "a"}},
		{driver: "lv2", opts: map[string]string{"size": "64M", "snapshot": "hourly"}, err: "lv2 volumes have no snapshots"},
		{driver: "lv2", opts: map[string]string{"size": "ten"}, err: `volume option size: invalid size "ten"`},
		{driver: "nfs", want: Options{Every: time.Hour, Keep: DefaultKeep}},
		{driver: "nfs", opts: map[string]string{"snapshot": "off"}},
		{driver: "nfs", opts: map[string]string{"snapshot": "daily", "snapshots.keep": "7", "size": "1.5g"}, want: Options{Every: 24 * time.Hour, Keep: 7, Size: 3 << 29}},
		{driver: "gfs"},
		{driver: "gfs", opts: map[string]string{"snapshot": "30m"}, want: Options{Every: 30 * time.Minute, Keep: DefaultKeep}},
		{driver: "gfs", opts: map[string]string{"snapshot": "1s"}, err: "duration of 1m or more"},
		{driver: "gfs", opts: map[string]string{"snapshots.keep": "0"}, err: "from 1 to 1000"},
		{driver: "nfs", opts: map[string]string{"replicas": "3"}, err: `unknown option "replicas" for volume driver nfs`},
		{driver: "nfs", opts: map[string]string{"redundancy": "reduced"}, want: Options{Every: time.Hour, Keep: DefaultKeep, Reduced: true}},
		{driver: "gfs", opts: map[string]string{"redundancy": "full"}},
		{driver: "gfs", opts: map[string]string{"redundancy": "red"}, err: "want full (3 copies) or reduced (2)"},
		{driver: "lv2", opts: map[string]string{"size": "64M", "redundancy": "reduced"}, err: "lv2 volumes live on one node"},
		{driver: "nfs", opts: map[string]string{"zone": "a/b"}, err: "invalid zone"},
		{driver: "nfs", opts: map[string]string{"size": "-1"}, err: "invalid size"},
	}
	for _, tt := range tests {
		got, err := ParseOptions(tt.driver, tt.opts)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s %v: error %v, want %q", tt.driver, tt.opts, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%s %v: %+v, %v; want %+v", tt.driver, tt.opts, got, err, tt.want)
		}
	}
}

func FuzzParseOptions(f *testing.F) {
	f.Add("lv2", "size", "10G")
	f.Add("nfs", "snapshot", "hourly")
	f.Add("gfs", "snapshots.keep", "24")
	f.Add("nfs", "size", "1e300")
	f.Add("local", "o", "bind")
	f.Fuzz(func(t *testing.T, driver, k, v string) {
		o, err := ParseOptions(driver, map[string]string{k: v})
		if err != nil {
			return
		}
		if o.Size < 0 || o.Every < 0 || o.Keep < 0 || (o.Every > 0 && o.Keep == 0) {
			t.Fatalf("accepted %s %s=%s as %+v", driver, k, v, o)
		}
		if driver == "lv2" && o.Size < MinLV2Size {
			t.Fatalf("lv2 of %d bytes", o.Size)
		}
	})
}

// TestPlan: a schedule takes a snapshot when the newest automatic one is
// as old as its interval, and prunes the oldest automatic ones beyond
// keep, never the tenant's own. The clock is injected.
func TestPlan(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	opts := Options{Every: time.Hour, Keep: 2}
	var snaps []Snapshot
	apply := func(now time.Time) (took bool, pruned []string) {
		take, prune := Plan(snaps, opts, now)
		if take != nil {
			snaps = append(snaps, *take)
		}
		for _, p := range prune {
			for i, s := range snaps {
				if s.Name == p {
					snaps = append(snaps[:i], snaps[i+1:]...)
					break
				}
			}
		}
		return take != nil, prune
	}
	snaps = append(snaps, Snapshot{Name: "mine", Created: t0.Add(-48 * time.Hour)})
	if took, _ := apply(t0); !took {
		t.Fatal("no first snapshot")
	}
	if took, _ := apply(t0.Add(59 * time.Minute)); took {
		t.Fatal("took one before the hour")
	}
	if took, pruned := apply(t0.Add(time.Hour)); !took || len(pruned) != 0 {
		t.Fatalf("at one hour: took %v pruned %v", took, pruned)
	}
	took, pruned := apply(t0.Add(3 * time.Hour))
	if !took || len(pruned) != 1 || pruned[0] != "auto-20261206T100000Z" {
		t.Fatalf("at three hours: took %v pruned %v", took, pruned)
	}
	var names []string
	for _, s := range snaps {
		names = append(names, s.Name)
	}
	if got := strings.Join(names, " "); got != "mine auto-20261206T110000Z auto-20261206T130000Z" {
		t.Fatalf("snapshots: %s", got)
	}
	if take, prune := Plan(snaps, Options{}, t0.Add(100*time.Hour)); take != nil || prune != nil {
		t.Fatal("no schedule, yet a plan")
	}
}

// storageDir is a data dir whose mounts (and so loop devices) go with
// the test, even when it fails.
func storageDir(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: loop devices and mounts")
	}
	for _, tool := range []string{"mkfs.ext4", "mkfs.btrfs", "btrfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (scripts/setup.sh installs it)", tool)
		}
	}
	dir := t.TempDir()
	t.Cleanup(func() { CleanupMounts(dir) })
	return dir
}

// TestLV2: an lv2 volume is a filesystem of its size: writing past it
// fails with ENOSPC and the volume stays usable; it survives an unmount
// (a restart of the machine) and goes with Remove.
func TestLV2(t *testing.T) {
	dir := storageDir(t)
	ctx := context.Background()
	l := &LV2{Dir: dir}
	ref := Ref{Tenant: "alice", Name: "db"}
	opts := Options{Size: 32 << 20}
	root, err := l.Root(ctx, ref, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "keep"), []byte("kept"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(root, "big"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	var werr error
	for i := 0; i < 64 && werr == nil; i++ {
		_, werr = f.Write(buf)
	}
	if werr == nil {
		werr = f.Sync()
	}
	f.Close()
	if !errors.Is(werr, unix.ENOSPC) {
		t.Fatalf("writing 64M into 32M: %v, want ENOSPC", werr)
	}
	os.Remove(filepath.Join(root, "big"))
	if n, err := l.Size(ctx, ref); err != nil || n <= 0 || n > 32<<20 {
		t.Errorf("size %d, %v", n, err)
	}
	// As after a reboot: mounted again on the next Root.
	if err := unmount(root); err != nil {
		t.Fatal(err)
	}
	if root, err = l.Root(ctx, ref, opts); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "keep")); err != nil || string(b) != "kept" {
		t.Fatalf("after remount: %q %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(root, "lost+found")); err == nil {
		t.Error("lost+found in the tenant's volume")
	}
	if err := l.Remove(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if ok, _ := IsMountPoint(root); ok {
		t.Error("still mounted after Remove")
	}
	if _, err := os.Stat(filepath.Dir(root)); err == nil {
		t.Error("volume directory left after Remove")
	}
}

// TestBtrfsSnapshots: a snapshot keeps the files as they were; rollback
// brings them back and keeps the state it replaced as a snapshot; a
// rollback that a crash left half done is cleaned up on the next use.
func TestBtrfsSnapshots(t *testing.T) {
	dir := storageDir(t)
	ctx := context.Background()
	pool := &Pool{Dir: dir, Size: 512 << 20}
	b := &Btrfs{Pool: pool, Kind: "nfs"}
	ref := Ref{Tenant: "alice", Name: "files"}
	root, err := b.Root(ctx, ref, Options{})
	if err != nil {
		t.Fatal(err)
	}
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(root, "f"), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	read := func() string {
		t.Helper()
		got, err := os.ReadFile(filepath.Join(root, "f"))
		if err != nil {
			t.Fatal(err)
		}
		return string(got)
	}
	write("one")
	if err := b.Snapshot(ctx, ref, Snapshot{Name: "s1", Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := b.Snapshot(ctx, ref, Snapshot{Name: "s1"}); !errors.Is(err, ErrSnapshotExists) {
		t.Fatalf("same name again: %v", err)
	}
	write("two")
	if err := b.Rollback(ctx, ref, "nope", Options{}); !errors.Is(err, ErrSnapshotNotFound) {
		t.Fatalf("rollback to a missing snapshot: %v", err)
	}
	if err := b.Rollback(ctx, ref, "s1", Options{}); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != "one" {
		t.Fatalf("after rollback: %q", got)
	}
	snaps, err := b.Snapshots(ctx, ref)
	if err != nil || len(snaps) != 2 || snaps[0].Name != "s1" || !strings.HasPrefix(snaps[1].Name, "rollback-") {
		t.Fatalf("snapshots %+v %v", snaps, err)
	}
	// The state before the rollback is in its snapshot.
	if got, err := os.ReadFile(filepath.Join(filepath.Dir(filepath.Dir(filepath.Dir(root))), "s", "alice", "files", snaps[1].Name, "f")); err != nil || string(got) != "two" {
		t.Fatalf("kept state: %q %v", got, err)
	}
	// A snapshot is read-only.
	if err := os.WriteFile(filepath.Join(filepath.Dir(filepath.Dir(filepath.Dir(root))), "s", "alice", "files", "s1", "g"), nil, 0o644); err == nil {
		t.Fatal("wrote into a snapshot")
	}

	// A crash between the copy and the swap: <vol>.new is left; the
	// volume is the old state and the leftover goes.
	if err := run(ctx, "btrfs", "subvolume", "snapshot", filepath.Join(filepath.Dir(filepath.Dir(filepath.Dir(root))), "s", "alice", "files", "s1"), root+".new"); err != nil {
		t.Fatal(err)
	}
	write("three")
	if root, err = b.Root(ctx, ref, Options{}); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != "three" {
		t.Fatalf("after an interrupted rollback: %q", got)
	}
	if _, err := os.Stat(root + ".new"); err == nil {
		t.Fatal("leftover of the interrupted rollback")
	}
	// A crash after the swap, before the old state was deleted: the
	// volume is the snapshot's state and the old one goes.
	if err := run(ctx, "btrfs", "subvolume", "snapshot", filepath.Join(filepath.Dir(filepath.Dir(filepath.Dir(root))), "s", "alice", "files", "s1"), root+".new"); err != nil {
		t.Fatal(err)
	}
	if err := unix.Renameat2(unix.AT_FDCWD, root+".new", unix.AT_FDCWD, root, unix.RENAME_EXCHANGE); err != nil {
		t.Fatal(err)
	}
	if root, err = b.Root(ctx, ref, Options{}); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != "one" {
		t.Fatalf("after a rollback interrupted after its swap: %q", got)
	}
	if _, err := os.Stat(root + ".new"); err == nil {
		t.Fatal("the old state is left after the interrupted rollback")
	}
	write("three")

	// The schedule takes its snapshot (injected clock) and prunes.
	opts := Options{Every: time.Hour, Keep: 1}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 3 {
		if err := RunSchedule(ctx, b, ref, opts, t0.Add(time.Duration(i)*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	snaps, _ = b.Snapshots(ctx, ref)
	var auto []string
	for _, s := range snaps {
		if s.Auto {
			auto = append(auto, s.Name)
		}
	}
	if len(snaps) != 3 || len(auto) != 1 || auto[0] != "auto-20260101T020000Z" {
		t.Fatalf("after the schedule: %+v", snaps)
	}

	// A pool that was unmounted (a reboot) comes back with its volumes.
	if err := unmount(filepath.Join(dir, "btrfs", "pool")); err != nil {
		t.Fatal(err)
	}
	if root, err = b.Root(ctx, ref, Options{}); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != "three" {
		t.Fatalf("after remounting the pool: %q", got)
	}
	if err := b.Remove(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(root); err == nil {
		t.Fatal("volume left after Remove")
	}
}

// TestBtrfsSize: an nfs volume's size is its subvolume's qgroup limit:
// writing past it fails with EDQUOT, and rollback keeps the limit.
func TestBtrfsSize(t *testing.T) {
	dir := storageDir(t)
	ctx := context.Background()
	b := &Btrfs{Pool: &Pool{Dir: dir, Size: 512 << 20}, Kind: "nfs"}
	ref := Ref{Tenant: "alice", Name: "small"}
	opts := Options{Size: 16 << 20}
	fill := func(root string) error {
		f, err := os.Create(filepath.Join(root, "big"))
		if err != nil {
			return err
		}
		defer f.Close()
		buf := make([]byte, 1<<20)
		for range 64 {
			if _, err := f.Write(buf); err != nil {
				return err
			}
		}
		return f.Sync()
	}
	root, err := b.Root(ctx, ref, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := fill(root); !errors.Is(err, unix.EDQUOT) {
		t.Fatalf("writing 64M into a 16M nfs volume: %v, want EDQUOT", err)
	}
	os.Remove(filepath.Join(root, "big"))
	if err := b.Snapshot(ctx, ref, Snapshot{Name: "empty"}); err != nil {
		t.Fatal(err)
	}
	if err := b.Rollback(ctx, ref, "empty", opts); err != nil {
		t.Fatal(err)
	}
	if err := fill(root); !errors.Is(err, unix.EDQUOT) {
		t.Fatalf("after rollback, writing 64M into a 16M nfs volume: %v, want EDQUOT", err)
	}
}
