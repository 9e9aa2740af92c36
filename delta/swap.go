package delta

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/macro-cloud/macro/internal/atomicfile"
	"golang.org/x/sys/unix"
)

// The switch of a tree whose root cannot be renamed: a mount point (an lv2
// volume's loop-mounted filesystem) or a btrfs subvolume (an nfs or gfs
// volume), which rename(2) refuses to move (EBUSY) or to exchange with a
// directory of another filesystem or subvolume (EXDEV). There the new tree
// is built inside the root, in NewDirName, and switched in entry by entry
// under a journal kept in the state directory:
//
//  1. the journal says "old": every entry of the root (but the two
//     directories below) is moved into OldDirName;
//  2. the journal says "new": every entry of NewDirName is moved into the
//     root, and the root gets the manifest's mode, owner and mtime;
//  3. the journal is removed, then OldDirName and NewDirName.
//
// Each step is synced (syncfs) before the journal moves on. A crash before
// the journal exists leaves the old tree (the new one is deleted by the
// next sync); after it, recoverSwap, run by every later use of the state
// directory under its lock, carries the switch to its end: the tree is the
// new one. Unlike the exchange, the switch is not one atomic step for a
// reader of the tree during it; the API lets no container use the volume
// meanwhile.

// NewDirName and OldDirName are the directories of an in-place switch at
// the top of a tree; scans skip them (a tenant's own entries of these
// names are not carried).
const (
	NewDirName = ".macro-delta-new"
	OldDirName = ".macro-delta-old"
)

// skipTop says whether a scan skips p: the switch's own directories.
func skipTop(p string) bool { return p == NewDirName || p == OldDirName }

// inPlace says whether root must be switched entry by entry: it is the
// root of a filesystem or subvolume other than its parent's or state's.
func inPlace(root, state string) bool {
	var r, p, s unix.Stat_t
	if unix.Lstat(root, &r) != nil {
		return false // no root yet: the new tree is renamed into place
	}
	if unix.Lstat(filepath.Dir(root), &p) != nil || unix.Lstat(state, &s) != nil {
		return false
	}
	return r.Dev != p.Dev || r.Dev != s.Dev
}

func journalFile(state string) string { return stateFile(state, "switch") }

func writeJournal(state, phase string) error {
	return atomicfile.Write(journalFile(state), []byte(phase+"\n"), 0o600)
}

// switchInPlace moves the tree built in root/NewDirName into root (see
// above); top is the manifest's root entry.
// journaled says the journal was written: from then on the switch goes
// to its end, now or at the next use of the state.
func switchInPlace(root, state string, top *Entry) (journaled bool, err error) {
	if err := writeJournal(state, "old"); err != nil {
		os.Remove(journalFile(state))
		return false, err
	}
	dropUndo(state) // the switch goes to its end from here
	return true, finishSwitch(root, state, "old", top)
}

// finishSwitch runs the switch from phase on.
func finishSwitch(root, state, phase string, top *Entry) error {
	newDir, oldDir := filepath.Join(root, NewDirName), filepath.Join(root, OldDirName)
	if phase == "old" {
		if err := os.Mkdir(oldDir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		ents, err := os.ReadDir(root)
		if err != nil {
			return err
		}
		moved := 0
		for _, e := range ents {
			if skipTop(e.Name()) {
				continue
			}
			if testHookSwitch != nil {
				if err := testHookSwitch("old", moved); err != nil {
					return err
				}
			}
			moved++
			if err := os.Rename(filepath.Join(root, e.Name()), filepath.Join(oldDir, e.Name())); err != nil {
				return fmt.Errorf("switch: %w", err)
			}
		}
		if err := syncfs(root); err != nil {
			return err
		}
		if err := writeJournal(state, "new"); err != nil {
			return err
		}
	}
	ents, err := os.ReadDir(newDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for i, e := range ents {
		if testHookSwitch != nil {
			if err := testHookSwitch("new", i); err != nil {
				return err
			}
		}
		if err := os.Rename(filepath.Join(newDir, e.Name()), filepath.Join(root, e.Name())); err != nil {
			return fmt.Errorf("switch: %w", err)
		}
	}
	if top == nil {
		// Recovery: the root's metadata are in the manifest of the
		// sync under way (pending).
		if m, err := (&TreeReceiver{State: state}).Pending(); err == nil && len(m.Entries) > 0 {
			top = &m.Entries[0]
		}
	}
	if err := syncfs(root); err != nil {
		return err
	}
	if err := os.Remove(journalFile(state)); err != nil {
		return err
	}
	atomicfile.SyncDir(state)
	os.RemoveAll(oldDir)
	os.RemoveAll(newDir)
	// Last, as removing the two directories changes the root's mtime.
	if top != nil {
		if err := setRootMeta(root, top); err != nil {
			return err
		}
	}
	os.Remove(rootMTimeFile(state))
	return nil
}

// The root's mtime before a sync in place made its directory there: a
// sync that fails, or that a crash cut before its switch, leaves the old
// tree with that mtime again (restoreRootMTime, then or at the next use
// of the state).
func rootMTimeFile(state string) string { return stateFile(state, "rootmtime") }

func keepRootMTime(root, state string) error {
	if _, err := os.Stat(rootMTimeFile(state)); err == nil {
		// A sync before this one was cut: its value is the one.
		return nil
	}
	info, err := os.Lstat(root)
	if err != nil {
		return err
	}
	return writeFileAtomic(rootMTimeFile(state), []byte(strconv.FormatInt(info.ModTime().UnixNano(), 10)), 0o600)
}

// restoreRootMTime removes what a sync in place left in the root and puts
// the root's mtime back.
func restoreRootMTime(root, state string) {
	b, err := os.ReadFile(rootMTimeFile(state))
	if err != nil {
		return
	}
	os.RemoveAll(filepath.Join(root, NewDirName))
	os.RemoveAll(filepath.Join(root, OldDirName))
	if ns, err := strconv.ParseInt(string(b), 10, 64); err == nil {
		mt := time.Unix(0, ns)
		os.Chtimes(root, mt, mt)
	}
	os.Remove(rootMTimeFile(state))
}

// testHookSwitch runs before each move of a switch; its error stops the
// switch there, as a crash would (tests).
var testHookSwitch func(phase string, i int) error

// recoverSwap finishes a switch a crash interrupted (the caller holds the
// state's lock).
func recoverSwap(root, state string) error {
	b, err := os.ReadFile(journalFile(state))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	phase := string(b)
	switch phase {
	case "old\n", "new\n":
		return finishSwitch(root, state, phase[:3], nil)
	}
	return fmt.Errorf("switch journal %s: %w: %q", journalFile(state), ErrCorrupt, phase)
}

// setRootMeta gives the tree's root the manifest's owner, mode and mtime.
func setRootMeta(root string, e *Entry) error {
	if os.Geteuid() == 0 {
		if err := os.Lchown(root, int(e.UID), int(e.GID)); err != nil {
			return err
		}
	}
	if err := os.Chmod(root, fileMode(e.Mode)); err != nil {
		return err
	}
	mt := time.Unix(0, e.MTime)
	return os.Chtimes(root, mt, mt)
}

func fileMode(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	if m&0o4000 != 0 {
		mode |= fs.ModeSetuid
	}
	if m&0o2000 != 0 {
		mode |= fs.ModeSetgid
	}
	if m&0o1000 != 0 {
		mode |= fs.ModeSticky
	}
	return mode
}

// stampsUnder are the stamps of m's files as they are under root.
func stampsUnder(root string, m *Manifest) (map[string]stamp, error) {
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	stamps := map[string]stamp{}
	for _, e := range m.Entries {
		if e.Kind != File {
			continue
		}
		info, err := r.Lstat(e.Path)
		if err != nil {
			return nil, err
		}
		stamps[e.Path] = stampOf(info.Sys().(*syscall.Stat_t))
	}
	return stamps, nil
}

// Recover repairs the tree at root after a crash of a sync into it (state
// is the sync's state directory): a switch in place is finished, patches
// of a sync that did not switch are undone. Whoever uses the tree (a pod
// that mounts a volume) calls it first; it costs three stats when there
// is nothing to repair, and does nothing while a sync holds the state
// (that sync repairs it itself).
func Recover(root, state string) error {
	pending := false
	for _, f := range []string{journalFile(state), undoFile(state), rootMTimeFile(state)} {
		if _, err := os.Lstat(f); err == nil {
			pending = true
		}
	}
	if !pending {
		return nil
	}
	f, err := os.OpenFile(filepath.Join(state, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil // a sync is under way: it repairs first
		}
		return err
	}
	return recoverState(root, state)
}
