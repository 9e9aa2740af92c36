package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/macro-cloud/macro/runtime"
	"github.com/macro-cloud/macro/runtime/logfile"
)

// The test binary doubles as the shim: Start re-executes it with this
// variable set, as cmd/macro dispatches `macro shim`.
const shimEnv = "MACRO_SANDBOX_TEST_SHIM"

// cgroupParent holds the cgroups of test containers; removed at the end.
const cgroupParent = "macro-test"

var testRootfs string

func TestMain(m *testing.M) {
	if os.Getenv(shimEnv) == "1" {
		os.Exit(ShimMain(os.Args[1:]))
	}
	if v := os.Getenv(starterEnv); v != "" {
		starterMain(v)
	}
	code := m.Run()
	if testRootfs != "" {
		os.RemoveAll(filepath.Dir(testRootfs))
	}
	removeCgroups(cgroupParent)
	os.Exit(code)
}

// removeCgroups removes a test cgroup (and its children) in every v1 hierarchy.
func removeCgroups(rel string) {
	ents, _ := os.ReadDir(cgroupRoot)
	for _, e := range ents {
		dir := filepath.Join(cgroupRoot, e.Name(), rel)
		// Children first.
		var dirs []string
		filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			os.Remove(dirs[i])
		}
	}
}

var rootfsOnce sync.Once

// rootfs builds a read-only busybox root filesystem shared by the tests.
func rootfs(t *testing.T) string {
	t.Helper()
	rootfsOnce.Do(func() {
		dir, err := os.MkdirTemp("", "macro-rootfs-")
		if err != nil {
			t.Fatal(err)
		}
		root := filepath.Join(dir, "rootfs")
		for _, d := range []string{"bin", "proc", "dev", "sys", "tmp", "etc", "root", "home/app"} {
			if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		bb, err := os.ReadFile("/bin/busybox")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "bin/busybox"), bb, 0o755); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("/bin/busybox", "--list").Output()
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range strings.Fields(string(out)) {
			if a != "busybox" {
				os.Symlink("busybox", filepath.Join(root, "bin", a))
			}
		}
		files := map[string]string{
			"etc/passwd": "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
			"etc/group":  "root:x:0:\napp:x:1000:\nextra:x:2000:app,other\nnogroup:x:65534:\n",
			"notexec":    "#!/bin/sh\n",
		}
		for name, content := range files {
			if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		testRootfs = root
	})
	if testRootfs == "" {
		t.Fatal("no rootfs")
	}
	return testRootfs
}

func requireRoot(t *testing.T, binary string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("sandbox tests need root (namespaces, cgroups)")
	}
	if _, err := exec.LookPath(binary); err != nil {
		t.Skipf("%s not installed: %v", binary, err)
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("busybox-static (/bin/busybox) not installed")
	}
}

type env struct {
	t    *testing.T
	rt   *Runtime
	root string
}

func newEnv(t *testing.T, binary string) *env {
	t.Helper()
	requireRoot(t, binary)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	rt, err := New(Config{Binary: binary, Root: root, ShimPath: exe, ShimArgs: []string{}, ShimEnv: []string{shimEnv + "=1"}})
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, rt: rt, root: root}
}

type opts struct {
	args      []string
	tty       bool
	openStdin bool
	stdinOnce bool
	memory    int64
	stateDir  string
}

// spec is a minimal runc-like config.json for a busybox container.
func testSpec(rootfs, id string, o opts) *specs.Spec {
	caps := []string{"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_CHOWN", "CAP_SETUID", "CAP_SETGID", "CAP_DAC_OVERRIDE"}
	s := &specs.Spec{
		Version: "1.0.2",
		Process: &specs.Process{
			Terminal: o.tty,
			Args:     o.args,
			Env:      []string{"PATH=/bin", "TERM=xterm"},
			Cwd:      "/",
			Capabilities: &specs.LinuxCapabilities{
				Bounding: caps, Effective: caps, Permitted: caps,
			},
			Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
			NoNewPrivileges: true,
		},
		Root:     &specs.Root{Path: rootfs, Readonly: true},
		Hostname: "c",
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=1777"}},
		},
		Linux: &specs.Linux{
			CgroupsPath: "/" + cgroupParent + "/" + id,
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace}, {Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace}, {Type: specs.MountNamespace},
			},
			Resources: &specs.LinuxResources{
				Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
			},
			MaskedPaths:   []string{"/proc/kcore", "/sys/firmware"},
			ReadonlyPaths: []string{"/proc/sys", "/proc/sysrq-trigger"},
		},
	}
	if o.memory > 0 {
		s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &o.memory, Swap: &o.memory}
	}
	return s
}

var idSeq int

// start starts a container and registers its deletion.
func (e *env) start(o opts) (id string, c runtime.Container, pid int, err error) {
	t := e.t
	t.Helper()
	idSeq++
	id = fmt.Sprintf("t%d-%d", os.Getpid(), idSeq)
	bundle := t.TempDir()
	if err := writeJSONAtomic(filepath.Join(bundle, "config.json"), testSpec(rootfs(t), id, o)); err != nil {
		t.Fatal(err)
	}
	stateDir := o.stateDir
	if stateDir == "" {
		stateDir = t.TempDir()
	}
	c = runtime.Container{
		ID: id, Bundle: bundle, StateDir: stateDir, LogPath: filepath.Join(bundle, "log.json"),
		Tty: o.tty, OpenStdin: o.openStdin, StdinOnce: o.stdinOnce,
	}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(stateDir, shimLogFile))
			t.Logf("shim log of %s:\n%s", id, b)
		}
		if err := e.rt.Delete(context.Background(), id); err != nil {
			t.Errorf("delete %s: %v", id, err)
		}
		removeCgroups(filepath.Join(cgroupParent, id))
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pid, err = e.rt.Start(ctx, c)
	return id, c, pid, err
}

func (e *env) mustStart(o opts) (string, runtime.Container) {
	e.t.Helper()
	id, c, pid, err := e.start(o)
	if err != nil {
		e.t.Fatalf("start: %v", err)
	}
	if pid <= 0 {
		e.t.Fatalf("start: pid %d", pid)
	}
	return id, c
}

func (e *env) wait(id string) runtime.State {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := e.rt.Wait(ctx, id)
	if err != nil {
		e.t.Fatalf("wait: %v", err)
	}
	return st
}

// logs returns the container log as "stream:line" strings.
func logs(t *testing.T, path string) []string {
	t.Helper()
	var out []string
	for e, err := range logfile.Read(context.Background(), path, logfile.Options{Tail: -1}) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e.Stream+":"+string(e.Line))
	}
	return out
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestStdoutStderrExitCode(t *testing.T) {
	e := newEnv(t, "runc")
	id, c := e.mustStart(opts{args: []string{"sh", "-c", "echo out; sleep 0.1; echo err >&2; exit 3"}})
	st := e.wait(id)
	if st.ExitCode != 3 || st.OOMKilled || st.FinishedAt.IsZero() || st.StartedAt.IsZero() {
		t.Fatalf("state %+v", st)
	}
	got := strings.Join(logs(t, c.LogPath), "|")
	if got != "stdout:out\n|stderr:err\n" {
		t.Fatalf("logs %q", got)
	}
}

func TestStartError(t *testing.T) {
	e := newEnv(t, "runc")
	id, _, _, err := e.start(opts{args: []string{"nosuchbinary"}})
	if err == nil {
		t.Fatal("start succeeded")
	}
	want := `exec: "nosuchbinary": executable file not found in $PATH`
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not contain %q", err, want)
	}
	st, err := e.rt.State(ctxT(t), id)
	if err != nil || st.Status != runtime.StatusStopped || st.ExitCode != 127 {
		t.Fatalf("state %+v %v", st, err)
	}
}

func TestOOMKilled(t *testing.T) {
	e := newEnv(t, "runc")
	id, _ := e.mustStart(opts{args: []string{"sh", "-c", "head -c 64m /dev/zero | tail"}, memory: 8 << 20})
	st := e.wait(id)
	if !st.OOMKilled || st.ExitCode != 137 {
		t.Fatalf("state %+v, want OOMKilled and exit 137", st)
	}
}

func TestSignal(t *testing.T) {
	e := newEnv(t, "runc")
	ctx := ctxT(t)
	// pid 1 only sees signals it handles: trap TERM.
	id, c := e.mustStart(opts{args: []string{"sh", "-c", "trap 'exit 42' TERM; echo ready; while :; do sleep 0.05; done"}})
	for i := 0; len(logs(t, c.LogPath)) == 0; i++ { // the trap is installed
		if i > 1000 {
			t.Fatal("container did not get ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := e.rt.Signal(ctx, id, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if st := e.wait(id); st.ExitCode != 42 {
		t.Fatalf("after TERM: %+v", st)
	}
	if err := e.rt.Signal(ctx, id, syscall.SIGKILL); !errors.Is(err, runtime.ErrNotRunning) {
		t.Fatalf("signal stopped container: %v", err)
	}

	id2, _ := e.mustStart(opts{args: []string{"sleep", "1000"}})
	if err := e.rt.Signal(ctx, id2, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if st := e.wait(id2); st.ExitCode != 137 || st.OOMKilled {
		t.Fatalf("after KILL: %+v", st)
	}
}

func TestPauseResume(t *testing.T) {
	e := newEnv(t, "runc")
	ctx := ctxT(t)
	id, _ := e.mustStart(opts{args: []string{"sleep", "1000"}})
	check := func(want runtime.Status) {
		t.Helper()
		st, err := e.rt.State(ctx, id)
		if err != nil || st.Status != want || st.Pid <= 0 {
			t.Fatalf("state %+v %v, want %s", st, err, want)
		}
	}
	check(runtime.StatusRunning)
	if err := e.rt.Pause(ctx, id); err != nil {
		t.Fatal(err)
	}
	check(runtime.StatusPaused)
	if err := e.rt.Resume(ctx, id); err != nil {
		t.Fatal(err)
	}
	check(runtime.StatusRunning)
	if err := e.rt.Resume(ctx, id); err == nil {
		t.Fatal("resume of a running container succeeded")
	}
	// Frozen again, a thaw lets the process run on: it answers signals.
	if err := e.rt.Pause(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := e.rt.Resume(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := e.rt.Signal(ctx, id, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if st, err := e.rt.Wait(ctx, id); err != nil || st.ExitCode != 137 {
		t.Fatalf("after thaw and kill: %+v %v", st, err)
	}
}

func TestStdinOnce(t *testing.T) {
	e := newEnv(t, "runc")
	ctx := ctxT(t)
	// A StateDir too long for a socket path exercises the short socket dir.
	long := filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 60))
	id, c := e.mustStart(opts{args: []string{"cat"}, openStdin: true, stdinOnce: true, stateDir: long})
	w, err := e.rt.Stdin(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "hello\nworld\n")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if st := e.wait(id); st.ExitCode != 0 {
		t.Fatalf("state %+v", st)
	}
	if got := strings.Join(logs(t, c.LogPath), ""); got != "stdout:hello\nstdout:world\n" {
		t.Fatalf("logs %q", got)
	}
}

func TestTty(t *testing.T) {
	e := newEnv(t, "runc")
	ctx := ctxT(t)
	id, c := e.mustStart(opts{args: []string{"sh", "-c", "tty; read x; stty size; echo got $x"}, tty: true, openStdin: true})
	if err := e.rt.Resize(ctx, id, runtime.Size{Width: 123, Height: 45}); err != nil {
		t.Fatal(err)
	}
	w, err := e.rt.Stdin(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "abc\n")
	w.Close()
	if st := e.wait(id); st.ExitCode != 0 {
		t.Fatalf("state %+v", st)
	}
	got := strings.Join(logs(t, c.LogPath), "")
	for _, want := range []string{"stdout:/dev/pts/0\r\n", "45 123\r\n", "got abc\r\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("logs %q lack %q", got, want)
		}
	}
	if strings.Contains(got, "stderr:") {
		t.Errorf("tty log has stderr: %q", got)
	}
}

func TestExec(t *testing.T) {
	e := newEnv(t, "runc")
	ctx := ctxT(t)
	id, _ := e.mustStart(opts{args: []string{"sleep", "1000"}})

	t.Run("stdio and exit code", func(t *testing.T) {
		var out, errb bytes.Buffer
		code, err := e.rt.Exec(ctx, id, runtime.Process{
			Args: []string{"sh", "-c", `read x; echo "got $x $FOO $PATH"; echo oops >&2; exit 5`},
			Env:  []string{"FOO=bar"},
		}, runtime.IO{Stdin: strings.NewReader("abc\n"), Stdout: &out, Stderr: &errb})
		if err != nil || code != 5 {
			t.Fatalf("code %d err %v", code, err)
		}
		if out.String() != "got abc bar /bin\n" || errb.String() != "oops\n" {
			t.Fatalf("stdout %q stderr %q", out.String(), errb.String())
		}
	})
	t.Run("not found", func(t *testing.T) {
		var errb bytes.Buffer
		code, err := e.rt.Exec(ctx, id, runtime.Process{Args: []string{"nosuch"}}, runtime.IO{Stderr: &errb})
		if err == nil || code != 127 || !strings.Contains(err.Error(), `exec: "nosuch": executable file not found in $PATH`) {
			t.Fatalf("code %d err %v", code, err)
		}
		if errb.Len() != 0 {
			t.Fatalf("runtime error leaked to stderr: %q", errb.String())
		}
	})
	t.Run("not executable", func(t *testing.T) {
		code, err := e.rt.Exec(ctx, id, runtime.Process{Args: []string{"/notexec"}}, runtime.IO{})
		if err == nil || code != 126 {
			t.Fatalf("code %d err %v", code, err)
		}
	})
	t.Run("user", func(t *testing.T) {
		for _, tc := range []struct{ user, want string }{
			{"", "0 0 0"},
			{"app", "1000 1000 1000 2000 /home/app"},
			{"1000", "1000 1000 1000 2000 /home/app"},
			{"app:2000", "1000 2000 2000 /home/app"},
			{"nobody:extra", "65534 2000 2000 /nonexistent"},
			{"4242", "4242 0 0 /"},
			{"4242:4343", "4242 4343 4343 /"},
		} {
			var out bytes.Buffer
			code, err := e.rt.Exec(ctx, id, runtime.Process{User: tc.user,
				Args: []string{"sh", "-c", `echo $(id -u) $(id -g) $(id -G) $HOME`}}, runtime.IO{Stdout: &out})
			if err != nil || code != 0 {
				t.Fatalf("%s: code %d err %v", tc.user, code, err)
			}
			got := strings.TrimSpace(out.String())
			if tc.user == "" {
				got = strings.TrimSuffix(got, " /root")
			}
			if got != tc.want {
				t.Errorf("user %q: got %q want %q", tc.user, got, tc.want)
			}
		}
		_, err := e.rt.Exec(ctx, id, runtime.Process{User: "nosuchuser", Args: []string{"id"}}, runtime.IO{})
		if err == nil || !strings.Contains(err.Error(), "unable to find user nosuchuser") {
			t.Fatalf("unknown user: %v", err)
		}
	})
	t.Run("tty", func(t *testing.T) {
		var out bytes.Buffer
		resize := make(chan runtime.Size, 1)
		resize <- runtime.Size{Width: 99, Height: 33}
		pr, pw := io.Pipe()
		done := make(chan struct{})
		var code int
		var err error
		go func() {
			defer close(done)
			code, err = e.rt.Exec(ctx, id, runtime.Process{Tty: true, Args: []string{"sh", "-c", "read x; tty; stty size; exit 4"}},
				runtime.IO{Stdin: pr, Stdout: &syncBuf{b: &out}, Resize: resize})
		}()
		time.Sleep(300 * time.Millisecond)
		io.WriteString(pw, "go\n")
		<-done
		pw.Close()
		if err != nil || code != 4 {
			t.Fatalf("code %d err %v", code, err)
		}
		if !strings.Contains(out.String(), "/dev/pts/") || !strings.Contains(out.String(), "33 99") {
			t.Fatalf("tty output %q", out.String())
		}
	})
	t.Run("cancel", func(t *testing.T) {
		cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := e.rt.Exec(cctx, id, runtime.Process{Args: []string{"sleep", "1000"}}, runtime.IO{})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err %v", err)
		}
		if time.Since(start) > 10*time.Second {
			t.Fatal("cancel took too long")
		}
		time.Sleep(100 * time.Millisecond)
		pids, err := e.rt.Pids(ctx, id)
		if err != nil || len(pids) != 1 {
			t.Fatalf("pids after cancel: %v %v", pids, err)
		}
	})
}

type syncBuf struct {
	mu sync.Mutex
	b  *bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func TestStatsPids(t *testing.T) {
	e := newEnv(t, "runc")
	ctx := ctxT(t)
	id, _ := e.mustStart(opts{args: []string{"sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; sleep 1000"}, memory: 64 << 20})
	time.Sleep(300 * time.Millisecond)
	s, err := e.rt.Stats(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if s.CPUUsageNanos == 0 || s.MemoryUsage == 0 || s.MemoryLimit != 64<<20 || s.PidsCurrent == 0 ||
		s.SystemNanos == 0 || s.OnlineCPUs == 0 || s.Read.IsZero() {
		t.Fatalf("stats %+v", s)
	}
	pids, err := e.rt.Pids(ctx, id)
	st, _ := e.rt.State(ctx, id)
	if err != nil || len(pids) == 0 || pids[0] != st.Pid {
		t.Fatalf("pids %v (init %d) %v", pids, st.Pid, err)
	}
}

func TestReattach(t *testing.T) {
	e := newEnv(t, "runc")
	ctx := ctxT(t)
	id, c := e.mustStart(opts{args: []string{"sh", "-c", "echo started; read x; echo got $x; exit 9"}, openStdin: true})
	st1, err := e.rt.State(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	// The shim runs in its own session: it survives the death of macro.
	var ss shimState
	if err := readJSON(filepath.Join(c.StateDir, shimStateFile), &ss); err != nil {
		t.Fatal(err)
	}
	if sid, _ := unix.Getsid(ss.ShimPid); sid != ss.ShimPid {
		t.Fatalf("shim %d is not a session leader (sid %d)", ss.ShimPid, sid)
	}

	// A new Runtime value over the same Root, as after a restart of macro.
	exe, _ := os.Executable()
	rt2, err := New(Config{Root: e.root, ShimPath: exe, ShimArgs: []string{}, ShimEnv: []string{shimEnv + "=1"}})
	if err != nil {
		t.Fatal(err)
	}
	st2, err := rt2.State(ctx, id)
	if err != nil || st2.Status != runtime.StatusRunning || st2.Pid != st1.Pid || !st2.StartedAt.Equal(st1.StartedAt) {
		t.Fatalf("reattached state %+v %v, was %+v", st2, err, st1)
	}
	w, err := rt2.Stdin(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "again\n")
	w.Close()
	st, err := rt2.Wait(ctx, id)
	if err != nil || st.ExitCode != 9 {
		t.Fatalf("exit %+v %v", st, err)
	}
	if got := strings.Join(logs(t, c.LogPath), ""); got != "stdout:started\nstdout:got again\n" {
		t.Fatalf("logs %q", got)
	}
}

// starterEnv makes the test binary play macro: start one container, say
// so, and wait to be killed.
const starterEnv = "MACRO_SANDBOX_TEST_STARTER"

type starterArgs struct {
	Root      string
	Container runtime.Container
}

func starterMain(v string) {
	var a starterArgs
	if err := json.Unmarshal([]byte(v), &a); err != nil {
		panic(err)
	}
	exe, _ := os.Executable()
	rt, err := New(Config{Root: a.Root, ShimPath: exe, ShimArgs: []string{}, ShimEnv: []string{shimEnv + "=1", starterEnv + "="}})
	if err != nil {
		panic(err)
	}
	pid, err := rt.Start(context.Background(), a.Container)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println(pid)
	select {}
}

func TestSurvivesKilledCaller(t *testing.T) {
	e := newEnv(t, "runc")
	ctx := ctxT(t)
	idSeq++
	id := fmt.Sprintf("t%d-%d", os.Getpid(), idSeq)
	bundle := t.TempDir()
	if err := writeJSONAtomic(filepath.Join(bundle, "config.json"),
		testSpec(rootfs(t), id, opts{args: []string{"sh", "-c", "read x; echo got $x"}})); err != nil {
		t.Fatal(err)
	}
	c := runtime.Container{ID: id, Bundle: bundle, StateDir: t.TempDir(), LogPath: filepath.Join(bundle, "log.json"), OpenStdin: true}
	t.Cleanup(func() {
		e.rt.Delete(context.Background(), id)
		removeCgroups(filepath.Join(cgroupParent, id))
	})
	arg, _ := json.Marshal(starterArgs{Root: e.root, Container: c})
	exe, _ := os.Executable()
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), starterEnv+"="+string(arg))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if strings.HasPrefix(line, "error") || line == "" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("starter: %q", line)
	}
	// kill -9 "macro" and its whole process group.
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	cmd.Wait()

	st, err := e.rt.State(ctx, id)
	if err != nil || st.Status != runtime.StatusRunning {
		t.Fatalf("after the caller died: %+v %v", st, err)
	}
	w, err := e.rt.Stdin(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "x\n")
	w.Close()
	if st := e.wait(id); st.ExitCode != 0 {
		t.Fatalf("exit %+v", st)
	}
	if got := strings.Join(logs(t, c.LogPath), ""); got != "stdout:got x\n" {
		t.Fatalf("logs %q", got)
	}
}

func TestUnknown(t *testing.T) {
	e := newEnv(t, "runc")
	ctx := ctxT(t)
	if _, err := e.rt.State(ctx, "nope"); !errors.Is(err, runtime.ErrNotFound) {
		t.Fatalf("state: %v", err)
	}
	if err := e.rt.Signal(ctx, "nope", syscall.SIGKILL); !errors.Is(err, runtime.ErrNotFound) {
		t.Fatalf("signal: %v", err)
	}
	if err := e.rt.Delete(ctx, "nope"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := e.rt.State(ctx, "../../etc"); !errors.Is(err, runtime.ErrNotFound) {
		t.Fatalf("state: %v", err)
	}
}

func TestDeleteRunning(t *testing.T) {
	e := newEnv(t, "runc")
	ctx := ctxT(t)
	id, c := e.mustStart(opts{args: []string{"sleep", "1000"}})
	var ss shimState
	readJSON(filepath.Join(c.StateDir, shimStateFile), &ss)
	if err := e.rt.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := e.rt.State(ctx, id); !errors.Is(err, runtime.ErrNotFound) {
		t.Fatalf("state after delete: %v", err)
	}
	if shimAlive(ss) {
		t.Fatal("shim still alive")
	}
	if _, err := os.Stat(c.StateDir); !os.IsNotExist(err) {
		t.Fatalf("state dir left: %v", err)
	}
	if _, err := os.Stat(filepath.Join(cgroupRoot, "memory", cgroupParent, id)); !os.IsNotExist(err) {
		t.Fatalf("cgroup left: %v", err)
	}
}

func TestGvisor(t *testing.T) {
	e := newEnv(t, "runsc")
	ctx := ctxT(t)
	id, c := e.mustStart(opts{args: []string{"sh", "-c", "echo hello; echo err >&2; exit 3"}})
	if st := e.wait(id); st.ExitCode != 3 {
		t.Fatalf("state %+v", st)
	}
	// The two streams are copied independently: only order within one is kept.
	got := logs(t, c.LogPath)
	slices.Sort(got)
	if strings.Join(got, "") != "stderr:err\nstdout:hello\n" {
		t.Fatalf("logs %q", got)
	}

	t.Run("start error", func(t *testing.T) {
		id, _, _, err := e.start(opts{args: []string{"nosuchbinary"}})
		if err == nil || !strings.Contains(err.Error(), `error finding executable "nosuchbinary"`) {
			t.Fatalf("start: %v", err)
		}
		if st, err := e.rt.State(ctx, id); err != nil || st.ExitCode != 127 {
			t.Fatalf("state %+v %v", st, err)
		}
	})

	t.Run("tty stdin resize", func(t *testing.T) {
		id, c := e.mustStart(opts{args: []string{"sh", "-c", "read x; stty size; echo got $x"}, tty: true, openStdin: true})
		if err := e.rt.Resize(ctx, id, runtime.Size{Width: 123, Height: 45}); err != nil {
			t.Fatal(err)
		}
		w, err := e.rt.Stdin(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, "abc\n")
		w.Close()
		if st := e.wait(id); st.ExitCode != 0 {
			t.Fatalf("state %+v", st)
		}
		if got := strings.Join(logs(t, c.LogPath), ""); !strings.Contains(got, "45 123\r\n") || !strings.Contains(got, "got abc\r\n") {
			t.Fatalf("logs %q", got)
		}
	})

	t.Run("oom", func(t *testing.T) {
		// The sandbox itself needs tens of MiB: a small limit kills
		// runsc create instead of the application.
		id, _ := e.mustStart(opts{args: []string{"sh", "-c", "head -c 512m /dev/zero | tail"}, memory: 128 << 20})
		if st := e.wait(id); !st.OOMKilled || st.ExitCode != 137 {
			t.Fatalf("state %+v", st)
		}
	})

	id, _ = e.mustStart(opts{args: []string{"sleep", "1000"}})
	t.Run("exec", func(t *testing.T) {
		var out bytes.Buffer
		code, err := e.rt.Exec(ctx, id, runtime.Process{User: "app", Args: []string{"sh", "-c", "cat; id -u; exit 6"}},
			runtime.IO{Stdin: strings.NewReader("in\n"), Stdout: &out})
		if err != nil || code != 6 || out.String() != "in\n1000\n" {
			t.Fatalf("exec: %d %v %q", code, err, out.String())
		}
		code, err = e.rt.Exec(ctx, id, runtime.Process{Args: []string{"nosuch"}}, runtime.IO{})
		if err == nil || code != 127 {
			t.Fatalf("exec nosuch: %d %v", code, err)
		}
		out.Reset()
		code, err = e.rt.Exec(ctx, id, runtime.Process{Tty: true, Args: []string{"stty", "size"}}, runtime.IO{Stdout: &out})
		if err != nil || code != 0 || out.String() != "24 80\r\n" {
			t.Fatalf("exec tty: %d %v %q", code, err, out.String())
		}
	})
	t.Run("stats", func(t *testing.T) {
		s, err := e.rt.Stats(ctx, id)
		if err != nil || s.MemoryUsage == 0 || s.CPUUsageNanos == 0 || s.PidsCurrent == 0 {
			t.Fatalf("stats %+v %v", s, err)
		}
		if pids, err := e.rt.Pids(ctx, id); err != nil || len(pids) == 0 {
			t.Fatalf("pids %v %v", pids, err)
		}
	})
	if err := e.rt.Pause(ctx, id); err != nil {
		t.Fatal(err)
	}
	if st, err := e.rt.State(ctx, id); err != nil || st.Status != runtime.StatusPaused {
		t.Fatalf("paused state %+v %v", st, err)
	}
	if err := e.rt.Resume(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := e.rt.Signal(ctx, id, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if st := e.wait(id); st.ExitCode != 137 {
		t.Fatalf("after KILL: %+v", st)
	}
}

func TestShimKilled(t *testing.T) {
	e := newEnv(t, "runc")
	ctx := ctxT(t)
	id, c := e.mustStart(opts{args: []string{"sleep", "1000"}})
	var ss shimState
	if err := readJSON(filepath.Join(c.StateDir, shimStateFile), &ss); err != nil {
		t.Fatal(err)
	}
	syscall.Kill(ss.ShimPid, syscall.SIGKILL)
	for shimAlive(ss) {
		time.Sleep(10 * time.Millisecond)
	}
	// The container runs on without its shim...
	if st, err := e.rt.State(ctx, id); err != nil || st.Status != runtime.StatusRunning {
		t.Fatalf("state %+v %v", st, err)
	}
	// ...but nobody can tell how it ends: stopped, exit code 255.
	if err := e.rt.Signal(ctx, id, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if st := e.wait(id); st.ExitCode != 255 {
		t.Fatalf("state %+v", st)
	}
}
