package delta

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// mountedRoot mounts a tmpfs on a new directory, as an lv2 volume's
// filesystem is mounted on its _data: rename(2) cannot move it.
func mountedRoot(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounts a tmpfs: needs root")
	}
	dir := filepath.Join(t.TempDir(), "_data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=64m"); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// TestSyncIntoMountPoint: a tree whose root is a mount point is switched
// in place, entry by entry, and nothing of the switch stays visible.
func TestSyncIntoMountPoint(t *testing.T) {
	ctx := context.Background()
	tmp := t.TempDir()
	src, state := filepath.Join(tmp, "src"), filepath.Join(tmp, "state")
	dst := mountedRoot(t)
	write(t, filepath.Join(dst, "stale"), []byte("an old file"), 0o644)
	if !inPlace(dst, state) && os.MkdirAll(state, 0o700) == nil && !inPlace(dst, state) {
		t.Fatal("a mount point is not switched in place")
	}
	sourceTree(t, src)
	recv := &TreeReceiver{Root: dst, State: state}
	for round := range 2 {
		if round == 1 {
			big, _ := os.ReadFile(filepath.Join(src, "big"))
			copy(big[1<<20:], "changed")
			write(t, filepath.Join(src, "big"), big, 0o644)
			os.Chmod(src, 0o711)
		}
		if _, err := Sync(ctx, &TreeSource{Root: src}, recv); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if err := Verify(ctx, dst, manifestOf(t, src)); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		for _, n := range []string{NewDirName, OldDirName} {
			if _, err := os.Lstat(filepath.Join(dst, n)); err == nil {
				t.Errorf("round %d: %s left in the tree", round, n)
			}
		}
	}
	if info, _ := os.Stat(dst); info.Mode().Perm() != 0o711 {
		t.Errorf("the root's mode is %v, want the source's 0711", info.Mode().Perm())
	}
}

// TestSwitchInPlaceRecovers: a switch stopped at any move (as by a crash)
// is carried to its end by the next use of the state directory: the tree
// is then the new one, whole.
func TestSwitchInPlaceRecovers(t *testing.T) {
	ctx := context.Background()
	for _, stop := range []struct {
		phase string
		at    int
	}{{"old", 0}, {"old", 2}, {"new", 0}, {"new", 3}} {
		t.Run(stop.phase+strconv.Itoa(stop.at), func(t *testing.T) {
			tmp := t.TempDir()
			src, state := filepath.Join(tmp, "src"), filepath.Join(tmp, "state")
			dst := mountedRoot(t)
			for i := range 5 {
				write(t, filepath.Join(dst, "old"+strconv.Itoa(i)), []byte("old"), 0o644)
				write(t, filepath.Join(src, "new"+strconv.Itoa(i), "f"), randBytes(uint64(i), 10000), 0o644)
			}
			oldM := manifestOf(t, dst)
			errStop := errors.New("stopped")
			testHookSwitch = func(phase string, i int) error {
				if phase == stop.phase && i == stop.at {
					return errStop
				}
				return nil
			}
			_, err := Sync(ctx, &TreeSource{Root: src}, &TreeReceiver{Root: dst, State: state})
			testHookSwitch = nil
			if !errors.Is(err, errStop) {
				t.Fatalf("the switch was not stopped: %v", err)
			}
			// Any use of the state directory finishes the switch: here
			// the volume read as a source (an export).
			m, err := (&TreeSource{Root: dst, State: state}).Manifest(ctx)
			if err != nil {
				t.Fatal(err)
			}
			want := manifestOf(t, src)
			if err := Verify(ctx, dst, want); err != nil {
				t.Fatalf("after recovery: %v (old tree: %v)", err, Verify(ctx, dst, oldM))
			}
			if len(m.Entries) != len(want.Entries) {
				t.Errorf("the manifest after recovery has %d entries, want %d", len(m.Entries), len(want.Entries))
			}
			if _, err := os.Stat(journalFile(state)); err == nil {
				t.Error("the journal is still there")
			}
		})
	}
}

// TestRecover: a user of the tree (a pod's mount) repairs an interrupted
// switch with Recover, without a sync; with nothing to repair it is a
// no-op.
func TestRecover(t *testing.T) {
	ctx := context.Background()
	tmp := t.TempDir()
	src, state := filepath.Join(tmp, "src"), filepath.Join(tmp, "state")
	dst := mountedRoot(t)
	if err := Recover(dst, state); err != nil {
		t.Fatalf("nothing to repair: %v", err)
	}
	write(t, filepath.Join(dst, "old"), []byte("old"), 0o644)
	for i := range 3 {
		write(t, filepath.Join(src, "n"+strconv.Itoa(i)), []byte("new"), 0o644)
	}
	testHookSwitch = func(phase string, i int) error {
		if phase == "new" && i == 1 {
			return errors.New("stopped")
		}
		return nil
	}
	_, err := Sync(ctx, &TreeSource{Root: src}, &TreeReceiver{Root: dst, State: state})
	testHookSwitch = nil
	if err == nil {
		t.Fatal("the switch was not stopped")
	}
	if err := Recover(dst, state); err != nil {
		t.Fatal(err)
	}
	if err := Verify(ctx, dst, manifestOf(t, src)); err != nil {
		t.Fatalf("after Recover: %v", err)
	}
}
