package testenv

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/macro-cloud/macro/volume"
)

const (
	dataDirPrefix = "macro-e2e-"
	ownerName     = ".testenv-owner" // "<pid> <start time>" of the test process
)

var sweepOnce sync.Once

// writeOwner records the test process in dir, so that a later sweep can tell
// a directory of a live test from one a dead test binary left behind.
func writeOwner(dir string) error {
	start, err := procStartTime(os.Getpid())
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, ownerName), fmt.Appendf(nil, "%d %s\n", os.Getpid(), start), 0o644)
}

// procStartTime returns the start time of pid in clock ticks since boot
// (field 22 of /proc/pid/stat), which tells a process from a later one that
// reuses its pid.
func procStartTime(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "", fmt.Errorf("/proc/%d/stat: no comm", pid)
	}
	f := strings.Fields(s[i+1:]) // fields 3...
	if len(f) < 20 {
		return "", fmt.Errorf("/proc/%d/stat: short", pid)
	}
	return f[19], nil
}

// ownerAlive reports whether the test process recorded in dir still runs.
func ownerAlive(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, ownerName))
	if err != nil {
		// Not written yet by a test that is starting, or not ours: leave it
		// unless it is old.
		fi, err := os.Stat(dir)
		return err == nil && time.Since(fi.ModTime()) < 10*time.Minute
	}
	var pid int
	var start string
	if _, err := fmt.Sscan(string(b), &pid, &start); err != nil {
		return false
	}
	now, err := procStartTime(pid)
	return err == nil && now == start
}

// sweepStale cleans up the data directories of test binaries that died
// without running their cleanups (killed by go test's -timeout).
func sweepStale(logf func(string, ...any)) {
	sweepStaleDirs(dataDirPrefix, cleanupDataDir, logf)
}

// sweepStaleDirs removes, with cleanup, the temp dirs named prefix* whose
// owning test process is gone.
func sweepStaleDirs(prefix string, cleanup func(dir string, remove bool, logf func(string, ...any)) error, logf func(string, ...any)) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), prefix+"*"))
	for _, dir := range dirs {
		if ownerAlive(dir) {
			continue
		}
		logf("testenv: removing %s, left behind by a test process that is gone", dir)
		if err := cleanup(dir, true, logf); err != nil {
			logf("testenv: %v", err)
		}
	}
}

// unixClient is an HTTP client that talks to the unix socket sock whatever
// host a URL names ("http://docker/v1.50/containers/json").
func unixClient(sock string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		DisableKeepAlives: true,
	}}
}

func cleanupDataDir(dir string, remove bool, logf func(string, ...any)) error {
	killByCmdline(dir)
	removeSocketDirs(dir)
	ids, cgroups := deleteContainers(dir, logf)
	cgroups = append(cgroups, findCgroups(ids)...)
	removeCgroups(cgroups, logf)
	var errs []error
	if err := removeHostNetwork(dir); err != nil {
		errs = append(errs, err)
	}
	// Network namespaces (DIR/net/router, DIR/net/ns/<pod>) are bind
	// mounts: unmounting them frees them and every interface in them.
	if err := unmountUnder(dir); err != nil {
		errs = append(errs, err)
	}
	// Volumes' loop devices (lv2 images, the btrfs pool) go with their
	// mounts (autoclear); this frees any whose mount never happened.
	if err := volume.DetachLoops(dir); err != nil {
		errs = append(errs, err)
	}
	if remove {
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// killByCmdline sends SIGKILL to every process with dir (or a path under
// it) on its command line, and waits for them to go.
func killByCmdline(dir string) {
	self := os.Getpid()
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !mentionsPath(string(b), dir) {
			continue
		}
		syscall.Kill(pid, syscall.SIGKILL)
		pids = append(pids, pid)
	}
	waitGone(pids, 5*time.Second)
}

// mentionsPath reports whether s contains the path dir itself, not just a
// longer name that starts with it (/tmp/macro-e2e-1 in /tmp/macro-e2e-12).
func mentionsPath(s, dir string) bool {
	for i := 0; ; {
		j := strings.Index(s[i:], dir)
		if j < 0 {
			return false
		}
		end := i + j + len(dir)
		if end == len(s) || !isNameByte(s[end]) {
			return true
		}
		i = end
	}
}

func isNameByte(c byte) bool {
	return c == '.' || c == '_' || c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// waitGone waits until none of pids runs (a zombie counts as gone).
func waitGone(pids []int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for _, pid := range pids {
		for processRunning(pid) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// processRunning reports whether pid exists and is not a zombie.
func processRunning(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i > 0 && !bytes.HasPrefix(b[i+1:], []byte(" Z"))
}

// runtimeRoots returns the --root directories of the OCI runtime binaries
// under dir and the binary of each: DIR/runtime/NAME/root/runc and .../runsc
// (runtime/sandbox's layout), or DIR/runtime/NAME/root itself, whose binary
// is told by NAME.
func runtimeRoots(dir string) map[string]string {
	roots := map[string]string{}
	rts, _ := filepath.Glob(filepath.Join(dir, "runtime", "*", "root"))
	for _, rt := range rts {
		found := false
		for _, bin := range []string{"runc", "runsc"} {
			if fi, err := os.Stat(filepath.Join(rt, bin)); err == nil && fi.IsDir() {
				roots[filepath.Join(rt, bin)] = bin
				found = true
			}
		}
		if !found {
			name := filepath.Base(filepath.Dir(rt))
			if strings.Contains(name, "gvisor") || strings.Contains(name, "runsc") {
				roots[rt] = "runsc"
			} else {
				roots[rt] = "runc"
			}
		}
	}
	return roots
}

// deleteContainers kills and deletes every container of every runtime under
// dir and returns their IDs and the cgroup directories runc recorded.
func deleteContainers(dir string, logf func(string, ...any)) (ids, cgroups []string) {
	for root, tool := range runtimeRoots(dir) {
		seen := map[string]bool{}
		if out, err := runTool(tool, "--root", root, "list", "--quiet"); err == nil {
			for _, id := range strings.Fields(out) {
				seen[id] = true
			}
		}
		// runc keeps ROOT/<id>/state.json; read it even when `list` fails.
		ents, _ := os.ReadDir(root)
		for _, e := range ents {
			st, err := readRuncState(filepath.Join(root, e.Name(), "state.json"))
			if err != nil {
				continue
			}
			seen[e.Name()] = true
			if st.Pid > 0 {
				syscall.Kill(st.Pid, syscall.SIGKILL)
			}
			for _, p := range st.CgroupPaths {
				cgroups = append(cgroups, p)
			}
		}
		for id := range seen {
			if out, err := runTool(tool, "--root", root, "delete", "--force", id); err != nil {
				logf("testenv: %s delete %s: %v %s", tool, id, err, out)
			}
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids, cgroups
}

// removeSocketDirs removes the socket directories runtime/sandbox keeps
// outside dir for state directories whose path is too long for a socket:
// /run/macro-sock/<first 8 bytes of sha256(StateDir), hex>. State
// directories are found through the DIR/runtime/*/root/containers/<id>
// symlinks.
func removeSocketDirs(dir string) {
	links, _ := filepath.Glob(filepath.Join(dir, "runtime", "*", "root", "containers", "*"))
	for _, l := range links {
		target, err := os.Readlink(l)
		if err != nil {
			continue
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(l), target)
		}
		h := sha256.Sum256([]byte(target))
		os.RemoveAll(filepath.Join(shortSockRoot, hex.EncodeToString(h[:8])))
	}
}

const shortSockRoot = "/run/macro-sock"

type runcState struct {
	Pid         int               `json:"init_process_pid"`
	CgroupPaths map[string]string `json:"cgroup_paths"`
}

func readRuncState(p string) (runcState, error) {
	var st runcState
	b, err := os.ReadFile(p)
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(b, &st)
}

func runTool(tool string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, tool, args...).CombinedOutput()
	return string(out), err
}

const cgroupRoot = "/sys/fs/cgroup"

// findCgroups returns the cgroups named after one of ids under a top-level
// cgroup named macro* of any hierarchy (cgroup v1 controllers, the v2
// unified hierarchy mounted at /sys/fs/cgroup or /sys/fs/cgroup/unified).
func findCgroups(ids []string) []string {
	if len(ids) == 0 {
		return nil
	}
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	var tops []string
	for _, pattern := range []string{cgroupRoot + "/macro*", cgroupRoot + "/*/macro*"} {
		m, _ := filepath.Glob(pattern)
		tops = append(tops, m...)
	}
	var found []string
	for _, top := range tops {
		base := strings.Count(top, "/")
		filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			if strings.Count(p, "/")-base > 4 {
				return filepath.SkipDir
			}
			if want[d.Name()] {
				found = append(found, p)
				return filepath.SkipDir
			}
			return nil
		})
	}
	return found
}

// removeCgroups kills every process in the cgroups (and their children),
// thawing frozen ones first, then removes them innermost first.
func removeCgroups(cgroups []string, logf func(string, ...any)) {
	var all []string
	seen := map[string]bool{}
	for _, cg := range cgroups {
		if !strings.HasPrefix(cg, cgroupRoot+"/") {
			continue
		}
		filepath.WalkDir(cg, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() && !seen[p] {
				seen[p] = true
				all = append(all, p)
			}
			return nil
		})
	}
	if len(all) == 0 {
		return
	}
	for _, cg := range all {
		os.WriteFile(filepath.Join(cg, "freezer.state"), []byte("THAWED"), 0)
		os.WriteFile(filepath.Join(cg, "cgroup.freeze"), []byte("0"), 0)
		os.WriteFile(filepath.Join(cg, "cgroup.kill"), []byte("1"), 0)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		busy := false
		for _, cg := range all {
			for _, pid := range cgroupPids(cg) {
				busy = true
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if !busy || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Deepest first.
	sort.Slice(all, func(i, j int) bool { return len(all[i]) > len(all[j]) })
	for _, cg := range all {
		var err error
		for range 50 {
			if err = unix.Rmdir(cg); err == nil || errors.Is(err, unix.ENOENT) {
				err = nil
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			logf("testenv: remove cgroup %s: %v", cg, err)
		}
	}
}

func cgroupPids(cg string) []int {
	b, err := os.ReadFile(filepath.Join(cg, "cgroup.procs"))
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// unmountUnder lazily unmounts every mount point at or under dir, in the
// reverse order of /proc/self/mountinfo (children after their parents
// there, so before them here).
func unmountUnder(dir string) error {
	var last error
	for range 3 {
		mps, err := mountsUnder(dir)
		if err != nil {
			return err
		}
		if len(mps) == 0 {
			return nil
		}
		last = nil
		for i := len(mps) - 1; i >= 0; i-- {
			if err := unix.Unmount(mps[i], unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
				last = fmt.Errorf("unmount %s: %w", mps[i], err)
			}
		}
	}
	return last
}

func mountsUnder(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	return out, sc.Err()
}

// unescapeMountinfo decodes the octal escapes (\040 for a space) of
// /proc/self/mountinfo.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
