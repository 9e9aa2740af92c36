package sandbox

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// execUser is a resolved `--user`.
type execUser struct {
	UID, GID uint32
	Groups   []uint32 // supplementary groups
	Home     string
}

// resolveUser resolves a Docker user spec (name, uid, uid:gid, name:group,
// uid:group, ...) against the rootfs's /etc/passwd and /etc/group, as
// Docker does: a numeric uid missing from passwd is fine (gid 0), a name
// missing is an error.
func resolveUser(rootfs, spec string) (execUser, error) {
	u := execUser{Home: "/"}
	userPart, groupPart, hasGroup := strings.Cut(spec, ":")
	passwd := readDB(rootfs, "/etc/passwd")
	var name string
	if userPart == "" {
		userPart = "0"
	}
	if n, err := strconv.ParseUint(userPart, 10, 32); err == nil {
		u.UID = uint32(n)
		for _, f := range passwd {
			if len(f) >= 6 && f[2] == userPart {
				name = f[0]
				if g, err := strconv.ParseUint(f[3], 10, 32); err == nil {
					u.GID = uint32(g)
				}
				u.Home = f[5]
				break
			}
		}
	} else {
		found := false
		for _, f := range passwd {
			if len(f) >= 6 && f[0] == userPart {
				uid, err1 := strconv.ParseUint(f[2], 10, 32)
				gid, err2 := strconv.ParseUint(f[3], 10, 32)
				if err1 != nil || err2 != nil {
					continue
				}
				name, u.UID, u.GID, u.Home, found = f[0], uint32(uid), uint32(gid), f[5], true
				break
			}
		}
		if !found {
			return u, fmt.Errorf("unable to find user %s: no matching entries in passwd file", userPart)
		}
	}
	if u.Home == "" {
		u.Home = "/"
	}
	groups := readDB(rootfs, "/etc/group")
	if hasGroup && groupPart != "" {
		if g, err := strconv.ParseUint(groupPart, 10, 32); err == nil {
			u.GID = uint32(g)
		} else {
			found := false
			for _, f := range groups {
				if len(f) >= 3 && f[0] == groupPart {
					if g, err := strconv.ParseUint(f[2], 10, 32); err == nil {
						u.GID, found = uint32(g), true
						break
					}
				}
			}
			if !found {
				return u, fmt.Errorf("unable to find group %s: no matching entries in group file", groupPart)
			}
		}
	}
	if name != "" {
		for _, f := range groups {
			if len(f) < 4 {
				continue
			}
			for m := range strings.SplitSeq(f[3], ",") {
				if strings.TrimSpace(m) != name {
					continue
				}
				if g, err := strconv.ParseUint(f[2], 10, 32); err == nil && uint32(g) != u.GID {
					u.Groups = append(u.Groups, uint32(g))
				}
			}
		}
	}
	return u, nil
}

// readDB reads a colon-separated database (passwd, group) from inside
// rootfs, resolving symlinks within it; a missing file reads as empty.
func readDB(rootfs, path string) [][]string {
	f, err := openInRoot(rootfs, path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out [][]string
	sc := bufio.NewScanner(io.LimitReader(f, 4<<20))
	sc.Buffer(make([]byte, 64*1024), 64*1024)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, strings.Split(line, ":"))
	}
	return out
}

// openInRoot opens path as if rootfs were / (openat2 RESOLVE_IN_ROOT), so a
// tenant's symlink cannot make us read a host file.
func openInRoot(rootfs, path string) (*os.File, error) {
	dfd, err := unix.Open(rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(dfd)
	fd, err := unix.Openat2(dfd, strings.TrimPrefix(path, "/"), &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOCTTY,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), path)
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, errors.New("not a regular file")
	}
	return f, nil
}
