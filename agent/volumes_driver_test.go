package agent

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/macro-cloud/macro/types"
	"github.com/macro-cloud/macro/volume"
)

// TestVolumeDriversAndSchedule: the agent keeps each volume with the
// driver it was made with (VolumeRoot is inside the btrfs pool for nfs, a
// mount for lv2), and the snapshot schedule, driven by an injected clock,
// takes and prunes automatic snapshots.
func TestVolumeDriversAndSchedule(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: loop devices and mounts")
	}
	if _, err := exec.LookPath("mkfs.btrfs"); err != nil {
		t.Skip("needs btrfs-progs (scripts/setup.sh)")
	}
	data := t.TempDir()
	t.Cleanup(func() { volume.CleanupMounts(data) })
	a := &Agent{cfg: Config{DataDir: data, Volumes: volume.Config{PoolBytes: 512 << 20}}}
	ctx := context.Background()
	for _, v := range []types.Volume{
		{Tenant: "alice", Name: "files", Driver: "nfs", Options: map[string]string{"snapshot": "hourly", "snapshots.keep": "2"}},
		{Tenant: "alice", Name: "db", Driver: "lv2", Options: map[string]string{"size": "32M"}},
	} {
		if err := a.CreateVolume(ctx, v); err != nil {
			t.Fatal(err)
		}
	}
	root, err := a.VolumeRoot(ctx, "alice", "files")
	if err != nil || root != filepath.Join(data, "btrfs", "pool", "v", "alice", "files") {
		t.Fatalf("nfs root %s %v", root, err)
	}
	db, err := a.VolumeRoot(ctx, "alice", "db")
	if ok, _ := volume.IsMountPoint(db); err != nil || !ok {
		t.Fatalf("lv2 root %s %v, mounted %v", db, err, ok)
	}
	if _, err := a.VolumeSnapshots(ctx, "alice", "db"); err == nil || !strings.Contains(err.Error(), "lv2 volumes cannot be snapshotted") {
		t.Fatalf("lv2 snapshots: %v", err)
	}
	t0 := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	for _, d := range []time.Duration{0, 30 * time.Minute, time.Hour, 2 * time.Hour} {
		if err := a.snapshotTick(ctx, t0.Add(d)); err != nil {
			t.Fatal(err)
		}
	}
	snaps, err := a.VolumeSnapshots(ctx, "alice", "files")
	if err != nil || len(snaps) != 2 || snaps[0].Name != "auto-20261206T010000Z" || snaps[1].Name != "auto-20261206T020000Z" {
		t.Fatalf("snapshots %+v %v", snaps, err)
	}
	for _, n := range []string{"files", "db"} {
		if err := a.RemoveVolume(ctx, "alice", n); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(data, "volumes", "alice", "db")); err == nil {
		t.Fatal("lv2 volume left")
	}
}
