package ocispec

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Errors of user resolution, with runc's (and so Docker's) wording.
var (
	ErrNoPasswdEntries = errors.New("no matching entries in passwd file")
	ErrNoGroupEntries  = errors.New("no matching entries in group file")
	ErrRange           = fmt.Errorf("uids and gids must be in range 0-%d", maxID)
)

const maxID = 1<<31 - 1

// maxAccountFile bounds how much of an image's passwd or group file is read:
// the file comes from a tenant.
const maxAccountFile = 16 << 20

// passwdEntry is one line of /etc/passwd.
type passwdEntry struct {
	Name string
	UID  int
	GID  int
	Home string
}

// groupEntry is one line of /etc/group.
type groupEntry struct {
	Name    string
	GID     int
	Members []string
}

// ResolveUser resolves a Docker user spec ("", "name", "uid", "uid:gid",
// "name:group", ...) against rootfs/etc/passwd and rootfs/etc/group with
// runc's rules, which are Docker's:
//   - "" is uid 0 (and its passwd entry, if any);
//   - a name must exist in passwd ("unable to find user NAME: no matching
//     entries in passwd file"); a number need not (gid 0, home "/");
//   - with an explicit group, the group is looked up by name (must exist)
//     or number (need not exist) and no supplementary groups are added;
//     without one, the gid comes from passwd and the groups listing the
//     user by name become supplementary groups.
//
// additionalGids starts with the primary gid. The files are opened inside
// rootfs: symlinks (also in /etc) are resolved as if rootfs were "/", so an
// image cannot make the host's files be read. Missing files are not errors.
func ResolveUser(rootfs, user string) (uid, gid uint32, additionalGids []uint32, home string, err error) {
	passwd, err := readInRoot(rootfs, "/etc/passwd")
	if err != nil {
		return 0, 0, nil, "", fmt.Errorf("read passwd: %w", err)
	}
	group, err := readInRoot(rootfs, "/etc/group")
	if err != nil {
		return 0, 0, nil, "", fmt.Errorf("read group: %w", err)
	}
	return resolveUser(user, passwd, group)
}

// resolveUser is ResolveUser over file contents; nil means the file is
// missing.
func resolveUser(spec string, passwd, group []byte) (uid, gid uint32, additionalGids []uint32, home string, err error) {
	userArg, groupArg, _ := strings.Cut(spec, ":")
	// runc ignores anything after a second colon.
	groupArg, _, _ = strings.Cut(groupArg, ":")
	uidArg, uidErr := strconv.Atoi(userArg)
	gidArg, gidErr := strconv.Atoi(groupArg)

	u := passwdEntry{Home: "/"}
	var matched string
	found := false
	if err := parsePasswd(passwd, func(p passwdEntry) bool {
		var ok bool
		switch {
		case userArg == "":
			ok = p.UID == 0
		case uidErr == nil:
			ok = p.UID == uidArg
		default:
			ok = p.Name == userArg
		}
		if ok {
			u, matched, found = p, p.Name, true
		}
		return !ok // first match wins
	}); err != nil {
		return 0, 0, nil, "", err
	}
	if !found && userArg != "" {
		if uidErr != nil {
			return 0, 0, nil, "", fmt.Errorf("unable to find user %s: %w", userArg, ErrNoPasswdEntries)
		}
		if uidArg < 0 || uidArg > maxID {
			return 0, 0, nil, "", ErrRange
		}
		u.UID = uidArg
	}

	var sgids []uint32
	if groupArg != "" || matched != "" {
		groupFound := false
		if err := parseGroup(group, func(g groupEntry) bool {
			if groupArg == "" {
				for _, m := range g.Members {
					if m == matched {
						sgids = append(sgids, uint32(g.GID))
						break
					}
				}
				return true
			}
			if (gidErr == nil && g.GID == gidArg) || (gidErr != nil && g.Name == groupArg) {
				u.GID, groupFound = g.GID, true
				return false
			}
			return true
		}); err != nil {
			return 0, 0, nil, "", err
		}
		if groupArg != "" && !groupFound {
			if gidErr != nil {
				return 0, 0, nil, "", fmt.Errorf("unable to find group %s: %w", groupArg, ErrNoGroupEntries)
			}
			if gidArg < 0 || gidArg > maxID {
				return 0, 0, nil, "", ErrRange
			}
			u.GID = gidArg
		}
	}
	if u.UID < 0 || u.UID > maxID || u.GID < 0 || u.GID > maxID {
		return 0, 0, nil, "", ErrRange
	}
	additionalGids = append([]uint32{uint32(u.GID)}, sgids...)
	if u.Home == "" {
		u.Home = "/"
	}
	return uint32(u.UID), uint32(u.GID), additionalGids, u.Home, nil
}

// parsePasswd calls each for every entry of a passwd file until it returns
// false. Fields that are not numbers where numbers belong read as 0, as in
// runc.
func parsePasswd(data []byte, each func(passwdEntry) bool) error {
	return eachLine(data, func(line []byte) bool {
		f := fields(line, 7)
		return each(passwdEntry{Name: f[0], UID: atoi(f[2]), GID: atoi(f[3]), Home: f[5]})
	})
}

// parseGroup calls each for every entry of a group file until it returns
// false.
func parseGroup(data []byte, each func(groupEntry) bool) error {
	return eachLine(data, func(line []byte) bool {
		f := fields(line, 4)
		g := groupEntry{Name: f[0], GID: atoi(f[2])}
		if f[3] != "" {
			g.Members = strings.Split(f[3], ",")
		}
		return each(g)
	})
}

func eachLine(data []byte, each func([]byte) bool) error {
	s := bufio.NewScanner(bytes.NewReader(data))
	s.Buffer(nil, len(data)+1)
	for s.Scan() {
		line := bytes.TrimSpace(s.Bytes())
		if len(line) == 0 {
			continue
		}
		if !each(line) {
			return nil
		}
	}
	return s.Err()
}

// fields splits a colon-separated line into exactly n fields.
func fields(line []byte, n int) []string {
	f := strings.SplitN(string(line), ":", n+1)
	for len(f) < n {
		f = append(f, "")
	}
	return f[:n]
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0
	}
	return n
}

// readInRoot reads the regular file at path inside root (at most
// maxAccountFile bytes), resolving symlinks and ".." as if root were "/".
// A missing file reads as nil, nil; anything but a regular file is an error.
func readInRoot(root, path string) ([]byte, error) {
	f, err := openInRoot(root, path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxAccountFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxAccountFile {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxAccountFile)
	}
	if data == nil {
		data = []byte{}
	}
	return data, nil
}

// openInRoot opens path read-only inside root with openat2(RESOLVE_IN_ROOT),
// so no symlink leads out of root even if the tree changes meanwhile. The
// file is first opened with O_PATH and checked to be regular, so that a
// FIFO or device node planted by an image is never opened for reading.
func openInRoot(root, path string) (*os.File, error) {
	dir, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: root, Err: err}
	}
	defer unix.Close(dir)
	fd, err := unix.Openat2(dir, strings.TrimLeft(path, "/"), &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if errors.Is(err, unix.ENOSYS) {
		return openInRootFallback(root, path)
	}
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: filepath.Join(root, path), Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, &fs.PathError{Op: "stat", Path: filepath.Join(root, path), Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	// Reopening an O_PATH descriptor through /proc opens the very same file.
	rfd, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", fd), unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: filepath.Join(root, path), Err: err}
	}
	return os.NewFile(uintptr(rfd), filepath.Join(root, path)), nil
}

// openInRootFallback serves kernels without openat2 (before 5.6): it
// resolves the path in user space, then opens without following a final
// symlink. It is only safe while nobody changes the tree concurrently.
func openInRootFallback(root, path string) (*os.File, error) {
	p, err := SecureJoin(root, path)
	if err != nil {
		return nil, err
	}
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: p, Err: err}
	}
	f := os.NewFile(uintptr(fd), p)
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	return f, nil
}

// SecureJoin joins unsafe to root as if root were "/" for unsafe: ".."
// stops at root and symlinks are followed, absolute ones relative to root.
// The result is a path under root; missing components are taken as plain
// names. Like filepath-securejoin, it is free of races only
// while the tree under root does not change.
func SecureJoin(root, unsafe string) (string, error) {
	root = filepath.Clean(root)
	var resolved string // relative to root, always clean and inside
	rest := unsafe
	links := 0
	for rest != "" {
		var part string
		part, rest, _ = strings.Cut(rest, "/")
		switch part {
		case "", ".":
			continue
		case "..":
			resolved = filepath.Dir(resolved)
			if resolved == "." || resolved == "/" {
				resolved = ""
			}
			continue
		}
		next := filepath.Join(resolved, part)
		st, err := os.Lstat(filepath.Join(root, next))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				// Missing components are taken as plain names, as
				// filepath-securejoin does.
				resolved = next
				continue
			}
			return "", err
		}
		if st.Mode()&fs.ModeSymlink == 0 {
			resolved = next
			continue
		}
		links++
		if links > 255 {
			return "", &fs.PathError{Op: "securejoin", Path: unsafe, Err: unix.ELOOP}
		}
		target, err := os.Readlink(filepath.Join(root, next))
		if err != nil {
			return "", err
		}
		if strings.HasPrefix(target, "/") {
			resolved = ""
		}
		rest = target + "/" + rest
	}
	return filepath.Join(root, resolved), nil
}
