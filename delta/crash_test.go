package delta

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestMain lets the test binary act as a syncing process that the crash
// test kills.
func TestMain(m *testing.M) {
	if src := os.Getenv("DELTA_TEST_SYNC_SRC"); src != "" {
		if n, _ := strconv.Atoi(os.Getenv("DELTA_TEST_EXIT_IN_PATCH")); n > 0 {
			testHookPatch = func(string) error {
				if n--; n == 0 {
					os.Exit(7) // a crash: no cleanup runs
				}
				return nil
			}
		}
		recv := &TreeReceiver{Root: os.Getenv("DELTA_TEST_SYNC_DST"), State: os.Getenv("DELTA_TEST_SYNC_STATE")}
		if _, err := Sync(context.Background(), &TreeSource{Root: src}, recv); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestKilledSync kills a syncing process (SIGKILL) at several moments:
// the receiver's tree is always the old tree or the new one, whole, and a
// sync run after it completes.
func TestKilledSync(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	killedSync(t, filepath.Join(t.TempDir(), "dst"))
}

// TestKilledSyncInPlace is TestKilledSync into a mount point, which is
// switched entry by entry under a journal (swap.go): after a kill the
// tree is the old one or, once the journal exists, the new one as soon as
// the state directory is used again.
func TestKilledSyncInPlace(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	killedSync(t, mountedRoot(t))
}

func killedSync(t *testing.T, dst string) {
	ctx := context.Background()
	tmp := t.TempDir()
	src, state := filepath.Join(tmp, "src"), filepath.Join(tmp, "state")
	for i := range 6 {
		write(t, filepath.Join(src, "d", "f"+strconv.Itoa(i)), randBytes(uint64(10+i), 4<<20), 0o644)
	}
	write(t, filepath.Join(dst, "old"), []byte("the old tree"), 0o644)
	oldM := manifestOf(t, dst)
	newM := manifestOf(t, src)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, after := range []time.Duration{20 * time.Millisecond, 80 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond} {
		cmd := exec.Command(self, "-test.run=^$")
		cmd.Env = append(os.Environ(), "DELTA_TEST_SYNC_SRC="+src, "DELTA_TEST_SYNC_DST="+dst, "DELTA_TEST_SYNC_STATE="+state)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(after)
		cmd.Process.Kill()
		cmd.Wait()
		// What a reader of the volume sees once the engine touched its
		// state again (an interrupted in-place switch is finished).
		if _, err := (&TreeSource{Root: dst, State: state}).Manifest(ctx); err != nil {
			t.Fatal(err)
		}
		errOld, errNew := Verify(ctx, dst, oldM), Verify(ctx, dst, newM)
		if errOld != nil && errNew != nil {
			t.Fatalf("killed after %v: the tree is neither the old one (%v) nor the new one (%v)", after, errOld, errNew)
		}
		t.Logf("killed after %v: the tree is the %s one", after, map[bool]string{true: "old", false: "new"}[errOld == nil])
		if errNew == nil {
			break
		}
	}
	if _, err := Sync(ctx, &TreeSource{Root: src}, &TreeReceiver{Root: dst, State: state}); err != nil {
		t.Fatal(err)
	}
	if err := Verify(ctx, dst, newM); err != nil {
		t.Fatal(err)
	}
}

// TestCrashInPatch: a process that dies while it patches old files in
// place (patch.go) leaves an undo log; the next use of the state
// directory puts the old tree back, whole, and a sync then completes.
func TestCrashInPatch(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	ctx := context.Background()
	for _, dst := range []string{filepath.Join(t.TempDir(), "dst"), mountedRoot(t)} {
		tmp := t.TempDir()
		src, state := filepath.Join(tmp, "src"), filepath.Join(tmp, "state")
		for i := range 3 {
			write(t, filepath.Join(src, "f"+strconv.Itoa(i)), randBytes(uint64(20+i), 1<<20), 0o644)
		}
		if _, err := Sync(ctx, &TreeSource{Root: src}, &TreeReceiver{Root: dst, State: state}); err != nil {
			t.Fatal(err)
		}
		oldM := manifestOf(t, dst)
		for i := range 3 {
			p := filepath.Join(src, "f"+strconv.Itoa(i))
			b, _ := os.ReadFile(p)
			for _, at := range []int{5000, 300000, 900000} {
				copy(b[at:], "an overwrite in place")
			}
			write(t, p, b, 0o600)
		}
		newM := manifestOf(t, src)
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(self, "-test.run=^$")
		cmd.Env = append(os.Environ(), "DELTA_TEST_SYNC_SRC="+src, "DELTA_TEST_SYNC_DST="+dst, "DELTA_TEST_SYNC_STATE="+state, "DELTA_TEST_EXIT_IN_PATCH=5")
		if err := cmd.Run(); err == nil || cmd.ProcessState.ExitCode() != 7 {
			t.Fatalf("the syncing process did not die in its patch: %v", err)
		}
		if _, err := os.Stat(undoFile(state)); err != nil {
			t.Fatalf("no undo log after a crash in the patch: %v", err)
		}
		if _, err := (&TreeSource{Root: dst, State: state}).Manifest(ctx); err != nil {
			t.Fatal(err)
		}
		if err := Verify(ctx, dst, oldM); err != nil {
			t.Fatalf("after the crash and recovery the tree is not the old one: %v", err)
		}
		if _, err := Sync(ctx, &TreeSource{Root: src}, &TreeReceiver{Root: dst, State: state}); err != nil {
			t.Fatal(err)
		}
		if err := Verify(ctx, dst, newM); err != nil {
			t.Fatal(err)
		}
	}
}
