package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/macro-cloud/macro/volume/volfs"
)

// Volume mount processes. A remote volume's FUSE mount is served by a
// small process of its own (`macro volfs-shim STATEDIR`, started by the
// agent, in a session of its own), not by the agent: the FUSE connection
// lives as long as that process, so an agent that restarts (an upgrade, a
// crash, kill -9) leaves its pods' mounts working. The process reaches the
// servers with the node's credentials, as the agent does.
//
// Its state directory, DataDir/volfs/shim/<path of the mount under
// DataDir/volfs>, holds config.json (what to mount, and the credentials:
// 0600), pid, log, and lock, on which the process holds an exclusive
// flock for its whole life: a restarted agent that finds the lock held
// knows the mount is served and adopts it (Config.VolumeShim and
// volumeShimMain); a lock it can take is a process gone. Stopping is
// SIGTERM: the process unmounts and exits (and releases the lock).

// shimConfig is what a mount process reads from its config.json.
type shimConfig struct {
	Tenant string `json:"tenant"`
	Volume string `json:"volume"`
	Dir    string `json:"dir"`
	Cache  string `json:"cache"`
	// Creds are the node's credentials (Config.VolumeShim), opaque here.
	Creds json.RawMessage `json:"creds"`
}

// shim is a mount served by a process of its own.
type shim struct {
	state string
	dir   string
	log   *slog.Logger
}

// shimStopWait is how long a stop waits for the process to unmount and go
// before it is killed.
const shimStopWait = 15 * time.Second

// shimState is the state directory of the mount at dir.
func (a *Agent) shimState(dir string) string {
	rel, err := filepath.Rel(filepath.Join(a.cfg.DataDir, "volfs"), dir)
	if err != nil || strings.HasPrefix(rel, "..") {
		rel = strings.ReplaceAll(strings.Trim(dir, "/"), "/", "_")
	}
	return filepath.Join(a.cfg.DataDir, "volfs", "shim", rel)
}

// shimAlive tells whether a mount process holds the lock of state.
func shimAlive(state string) bool {
	f, err := os.OpenFile(filepath.Join(state, "lock"), os.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return true // EWOULDBLOCK: held
	}
	unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return false
}

// isMountPoint tells whether dir is mounted on (its device differs from
// its parent's); a FUSE mount whose process is gone answers ENOTCONN,
// which counts as mounted.
func isMountPoint(dir string) bool {
	var st, pst unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return errors.Is(err, unix.ENOTCONN)
	}
	if err := unix.Stat(filepath.Dir(dir), &pst); err != nil {
		return false
	}
	return st.Dev != pst.Dev
}

// adoptShim takes over the mount at dir if a live process serves it.
func (a *Agent) adoptShim(dir string, log *slog.Logger) (*shim, bool) {
	state := a.shimState(dir)
	if _, err := os.Stat(state); err != nil {
		return nil, false
	}
	if alive, mounted := shimAlive(state), isMountPoint(dir); !alive || !mounted {
		log.Warn("remote volume: the mount process of a previous agent is gone; mounting again", "dir", dir, "alive", alive, "mounted", mounted)
		return nil, false
	}
	log.Info("remote volume: adopted the mount process of a previous agent", "dir", dir)
	return &shim{state: state, dir: dir, log: log}, true
}

// startShim starts a process that mounts the volume at dir and waits until
// it serves the mount (or says why it cannot).
func (a *Agent) startShim(tenant, name, dir, cache string, log *slog.Logger) (*shim, error) {
	argv, creds, ok := a.cfg.VolumeShim()
	if !ok {
		return nil, errors.New("no way to the servers yet")
	}
	state := a.shimState(dir)
	// A process that still holds the lock serves a mount that is no
	// longer there (unmounted behind its back): end it first.
	if shimAlive(state) {
		(&shim{state: state, dir: dir, log: log}).Unmount()
	}
	for _, f := range []string{"config.json", "pid"} {
		if err := os.Remove(filepath.Join(state, f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	if err := os.MkdirAll(state, 0o700); err != nil {
		return nil, err
	}
	b, err := json.Marshal(shimConfig{Tenant: tenant, Volume: name, Dir: dir, Cache: cache, Creds: creds})
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(state, "config.json"), b, 0o600); err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(filepath.Join(state, "log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer pr.Close()
	cmd := exec.Command(argv[0], append(argv[1:], state)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{pw} // fd 3: the word that it is ready
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	pw.Close()
	if err != nil {
		return nil, fmt.Errorf("start the mount process: %w", err)
	}
	go cmd.Wait() // reaped while this agent lives; adopted by init after
	// The process probes the volume first (volfs retries for 30 s while
	// its primary cannot be reached); past a minute it is stuck.
	type answer struct {
		line string
		err  error
	}
	ch := make(chan answer, 1)
	go func() {
		line, err := bufio.NewReader(pr).ReadString('\n')
		ch <- answer{strings.TrimSpace(line), err}
	}()
	var ans answer
	select {
	case ans = <-ch:
	case <-time.After(time.Minute):
		ans = answer{err: errors.New("no answer in a minute")}
	}
	s := &shim{state: state, dir: dir, log: log}
	if ans.err == nil && ans.line == "ok" {
		return s, nil
	}
	cmd.Process.Kill()
	s.Unmount()
	msg := ans.line
	if msg == "" {
		msg = fmt.Sprint(ans.err)
		if tail := shimLogTail(state); tail != "" {
			msg += ": " + tail
		}
	}
	return nil, errors.New(strings.TrimPrefix(msg, "error: "))
}

// shimLogTail is the last line of a mount process's log.
func shimLogTail(state string) string {
	b, _ := os.ReadFile(filepath.Join(state, "log"))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// Unmount ends the mount process (it unmounts first) and removes its
// state; a process that does not go in shimStopWait is killed and the
// mount detached.
func (s *shim) Unmount() error {
	b, err := os.ReadFile(filepath.Join(s.state, "pid"))
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if err == nil && pid > 0 && shimAlive(s.state) {
		syscall.Kill(pid, syscall.SIGTERM)
		deadline := time.Now().Add(shimStopWait)
		for shimAlive(s.state) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if shimAlive(s.state) {
			s.log.Warn("remote volume: the mount process did not stop; killed", "pid", pid)
			syscall.Kill(pid, syscall.SIGKILL)
			for i := 0; i < 250 && shimAlive(s.state); i++ {
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	var uerr error
	for {
		err := unix.Unmount(s.dir, unix.MNT_DETACH)
		if err == unix.EINVAL || err == unix.ENOENT {
			break
		}
		if err != nil {
			uerr = fmt.Errorf("unmount %s: %w", s.dir, err)
			break
		}
	}
	if shimAlive(s.state) {
		return errors.Join(uerr, fmt.Errorf("the mount process of %s does not stop", s.dir))
	}
	return errors.Join(uerr, os.RemoveAll(s.state))
}

// stopShimAt ends a mount process left at dir by a previous agent, if any.
func (a *Agent) stopShimAt(dir string) error {
	state := a.shimState(dir)
	if _, err := os.Stat(state); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return (&shim{state: state, dir: dir, log: a.log}).Unmount()
}

// collectShimOrphans ends the mount processes of pods this node no longer
// has (removed while no agent ran), after a restart.
func (a *Agent) collectShimOrphans(keep map[string]bool) {
	base := filepath.Join(a.cfg.DataDir, "volfs", "shim", "mnt")
	pods, err := os.ReadDir(base)
	if err != nil {
		return
	}
	for _, p := range pods {
		if keep[p.Name()] {
			continue
		}
		a.mu.Lock()
		_, busy := a.workers[p.Name()]
		a.mu.Unlock()
		if busy {
			continue
		}
		mounts, _ := os.ReadDir(filepath.Join(base, p.Name()))
		for _, m := range mounts {
			dir := filepath.Join(a.cfg.DataDir, "volfs", "mnt", p.Name(), m.Name())
			if err := a.stopShimAt(dir); err != nil {
				a.log.Warn("remote volume: end the mount process of a removed pod", "pod", p.Name(), "err", err)
				continue
			}
			a.log.Info("remote volume: ended the mount process of a removed pod", "pod", p.Name())
			os.Remove(dir)
		}
		os.Remove(filepath.Join(base, p.Name()))
		os.Remove(filepath.Join(a.cfg.DataDir, "volfs", "mnt", p.Name()))
	}
}

// VolumeShimMain is the mount process (`macro volfs-shim STATEDIR`): it
// mounts the volume its config.json names, says "ok" (or "error: ...") on
// fd 3, serves the mount until SIGTERM or until the mount goes, and exits.
// transport makes the way to the servers from the credentials.
func VolumeShimMain(state string, transport func(creds []byte) (http.RoundTripper, error)) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("subsystem", "volfs-shim")
	ready := os.NewFile(3, "ready")
	fail := func(err error) int {
		log.Error("volume mount", "err", err)
		if ready != nil {
			fmt.Fprintf(ready, "error: %v\n", err)
			ready.Close()
		}
		return 1
	}
	signal.Ignore(syscall.SIGHUP, syscall.SIGPIPE)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	lock, err := os.OpenFile(filepath.Join(state, "lock"), os.O_CREATE|os.O_RDWR|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return fail(err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return fail(fmt.Errorf("another process serves %s", state))
	}
	defer runtime.KeepAlive(lock) // held until the process ends
	if err := os.WriteFile(filepath.Join(state, "pid"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		return fail(err)
	}
	var cfg shimConfig
	b, err := os.ReadFile(filepath.Join(state, "config.json"))
	if err == nil {
		err = json.Unmarshal(b, &cfg)
	}
	if err != nil {
		return fail(fmt.Errorf("config: %w", err))
	}
	tr, err := transport(cfg.Creds)
	if err != nil {
		return fail(err)
	}
	log = log.With("volume", cfg.Volume, "dir", cfg.Dir)
	c := volfsClient(tr, cfg.Tenant, cfg.Volume, log)
	srv, err := mountChecked(c, cfg.Volume, cfg.Dir, cfg.Cache)
	if err != nil {
		return fail(err)
	}
	log.Info("serving the mount", "pid", os.Getpid())
	io.WriteString(ready, "ok\n")
	ready.Close()
	done := make(chan struct{})
	go func() { srv.Wait(); close(done) }()
	select {
	case <-done:
		log.Info("the mount went away")
		return 0
	case sig := <-stop:
		log.Info("unmounting", "signal", sig.String())
	}
	if err := srv.Unmount(); err != nil {
		// Busy (a pod still has files open): detach it; the kernel
		// ends the connection when the last user goes.
		log.Warn("unmount", "err", err)
		unix.Unmount(cfg.Dir, unix.MNT_DETACH)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
	return 0
}

// volfsClient is a volume's client through tr.
func volfsClient(tr http.RoundTripper, tenant, name string, log *slog.Logger) *volfs.Client {
	return &volfs.Client{
		HC:      &http.Client{Transport: tr},
		Base:    volfsBase(tenant, name),
		OnError: func(err error) { log.Warn("remote volume", "err", err) },
	}
}

// mountChecked mounts the volume c reaches at dir after one call, so that a
// volume that cannot be reached fails the start with the reason rather
// than with EIO inside the pod.
func mountChecked(c *volfs.Client, name, dir, cache string) (*fuse.Server, error) {
	probe := *c
	var reason error
	probe.OnError = func(err error) { reason = err }
	if _, err := probe.Op(context.Background(), volfs.Request{Op: volfs.OpStat}); err != nil {
		if reason != nil {
			err = reason
		}
		return nil, fmt.Errorf("mount volume %s from its node: %w", name, err)
	}
	srv, err := volfs.Mount(dir, c, volfs.MountOptions{CacheDir: cache, Name: "volfs:" + name})
	if err != nil {
		return nil, fmt.Errorf("mount volume %s: %w", name, err)
	}
	return srv, nil
}
