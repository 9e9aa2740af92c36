package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/macro-cloud/macro/internal/testenv"
	"github.com/macro-cloud/macro/internal/testimages"
)

// cloud is one macro server with the busybox image loaded.
type cloud struct {
	t    *testing.T
	srv  *testenv.Server
	host string
}

func newCloud(t *testing.T, opts ...testenv.Option) *cloud {
	testenv.RequireRoot(t)
	srv := testenv.StartServer(t, opts...)
	c := &cloud{t: t, srv: srv, host: srv.Host()}
	out := c.must("load", "-i", testimages.Busybox(t))
	if !strings.Contains(out, "busybox:latest") {
		t.Fatalf("docker load printed %q", out)
	}
	return c
}

func (c *cloud) docker(args ...string) testenv.Result {
	c.t.Helper()
	return testenv.Docker(c.t, c.host, args...)
}

func (c *cloud) must(args ...string) string {
	c.t.Helper()
	return strings.TrimSpace(testenv.MustDocker(c.t, c.host, args...).Stdout)
}

// inspect decodes `docker inspect` of one object.
func (c *cloud) inspect(name string) map[string]any {
	c.t.Helper()
	var out []map[string]any
	if err := json.Unmarshal([]byte(c.must("inspect", name)), &out); err != nil || len(out) != 1 {
		c.t.Fatalf("inspect %s: %v %v", name, err, out)
	}
	return out[0]
}

func (c *cloud) state(name string) map[string]any {
	return c.inspect(name)["State"].(map[string]any)
}

// eventually retries cond for up to 20 seconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestDockerCLI(t *testing.T) {
	c := newCloud(t)

	t.Run("run prints and propagates the exit code", func(t *testing.T) {
		r := c.docker("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3")
		if r.ExitCode != 3 || r.Stdout != "out\n" || r.Stderr != "err\n" {
			t.Fatalf("got exit %d stdout %q stderr %q", r.ExitCode, r.Stdout, r.Stderr)
		}
	})

	t.Run("run with env, workdir, user, hostname, entrypoint", func(t *testing.T) {
		env := filepath.Join(t.TempDir(), "env")
		os.WriteFile(env, []byte("FROM_FILE=yes\n# comment\n"), 0o644)
		out := c.must("run", "--rm", "-e", "A=1", "--env-file", env, "-w", "/tmp", "-u", "1000:1000", "--hostname", "box",
			"--entrypoint", "sh", "busybox", "-c", `echo $A $FROM_FILE $(pwd) $(id -u):$(id -g) $(hostname)`)
		if out != "1 yes /tmp 1000:1000 box" {
			t.Fatalf("got %q", out)
		}
	})

	t.Run("stdin reaches the container", func(t *testing.T) {
		r := testenv.MustDockerIn(t, c.host, "hello through stdin\n", "run", "--rm", "-i", "busybox", "cat")
		if r.Stdout != "hello through stdin\n" {
			t.Fatalf("got %q", r.Stdout)
		}
	})

	t.Run("missing command exits 127", func(t *testing.T) {
		r := c.docker("run", "--rm", "busybox", "/no/such/binary")
		if r.ExitCode != 127 {
			t.Fatalf("exit %d, stderr %q", r.ExitCode, r.Stderr)
		}
	})

	t.Run("detached lifecycle", func(t *testing.T) {
		id := c.must("run", "-d", "--name", "life", "-l", "team=blue", "busybox", "sh", "-c", "trap 'exit 0' TERM; while true; do echo tick; sleep 0.2; done")
		if len(id) != 64 {
			t.Fatalf("run -d printed %q", id)
		}
		if st := c.state("life"); st["Status"] != "running" || st["Pid"].(float64) <= 0 {
			t.Fatalf("state %v", st)
		}
		if out := c.must("ps", "-q", "--filter", "label=team=blue"); out != id[:12] {
			t.Fatalf("ps -q by label: %q", out)
		}
		if out := c.must("ps", "--filter", "name=life", "--format", "{{.Names}} {{.Status}}"); !strings.HasPrefix(out, "life Up") {
			t.Fatalf("ps format: %q", out)
		}
		eventually(t, "logs", func() bool { return strings.Contains(c.must("logs", "life"), "tick") })
		if out := c.must("logs", "--tail", "1", "life"); out != "tick" {
			t.Fatalf("logs --tail 1: %q", out)
		}
		c.must("pause", "life")
		if st := c.state("life"); st["Status"] != "paused" || st["Paused"] != true {
			t.Fatalf("paused state %v", st)
		}
		c.must("unpause", "life")
		if out := c.must("exec", "life", "sh", "-c", "echo in-exec; exit 0"); out != "in-exec" {
			t.Fatalf("exec: %q", out)
		}
		if r := c.docker("exec", "life", "sh", "-c", "exit 7"); r.ExitCode != 7 {
			t.Fatalf("exec exit code %d", r.ExitCode)
		}
		if out := c.must("exec", "-u", "1000", "-w", "/tmp", "-e", "X=y", "life", "sh", "-c", "echo $(id -u) $(pwd) $X"); out != "1000 /tmp y" {
			t.Fatalf("exec -u -w -e: %q", out)
		}
		if out := c.must("top", "life"); !strings.Contains(out, "PID") || !strings.Contains(out, "sleep") && !strings.Contains(out, "sh -c") {
			t.Fatalf("top: %q", out)
		}
		c.must("rename", "life", "life2")
		if r := c.docker("rm", "life2"); r.ExitCode == 0 || !strings.Contains(r.Stderr, "container is running") {
			t.Fatalf("rm of a running container: %d %q", r.ExitCode, r.Stderr)
		}
		c.must("stop", "life2")
		if st := c.state("life2"); st["Status"] != "exited" || st["ExitCode"].(float64) != 0 {
			t.Fatalf("after stop: %v", st)
		}
		c.must("start", "life2")
		if st := c.state("life2"); st["Status"] != "running" {
			t.Fatalf("after start: %v", st)
		}
		c.must("kill", "-s", "KILL", "life2")
		eventually(t, "killed", func() bool { return c.state("life2")["Status"] == "exited" })
		if code := c.state("life2")["ExitCode"].(float64); code != 137 {
			t.Fatalf("exit code after kill: %v", code)
		}
		c.must("rm", "life2")
		if r := c.docker("inspect", "life2"); r.ExitCode == 0 || !strings.Contains(r.Stderr, "No such object") && !strings.Contains(r.Stderr, "No such container") {
			t.Fatalf("inspect after rm: %d %q", r.ExitCode, r.Stderr)
		}
	})

	t.Run("wait returns the exit code", func(t *testing.T) {
		c.must("run", "-d", "--name", "waiter", "busybox", "sh", "-c", "sleep 0.3; exit 5")
		if out := c.must("wait", "waiter"); out != "5" {
			t.Fatalf("wait printed %q", out)
		}
		c.must("rm", "waiter")
	})

	t.Run("memory limit OOM kills", func(t *testing.T) {
		r := c.docker("run", "--name", "oom", "-m", "16m", "busybox", "sh", "-c", "x=$(head -c 64000000 /dev/zero | tr '\\0' a); echo survived")
		if r.ExitCode != 137 {
			t.Fatalf("exit %d, out %q", r.ExitCode, r.Combined())
		}
		if st := c.state("oom"); st["OOMKilled"] != true {
			t.Fatalf("OOMKilled not set: %v", st)
		}
		c.must("rm", "oom")
	})

	t.Run("limits reach the cgroup", func(t *testing.T) {
		id := c.must("run", "-d", "--memory", "32m", "--cpus", "0.5", "--pids-limit", "20", "busybox", "sleep", "30")
		defer c.docker("rm", "-f", id)
		hc := c.inspect(id)["HostConfig"].(map[string]any)
		if hc["Memory"].(float64) != 32<<20 || hc["NanoCpus"].(float64) != 5e8 || hc["PidsLimit"].(float64) != 20 {
			t.Fatalf("HostConfig %v", hc)
		}
		mem, _ := os.ReadFile("/sys/fs/cgroup/memory/macro/" + id + "/memory.limit_in_bytes")
		if strings.TrimSpace(string(mem)) != "33554432" {
			t.Fatalf("memory.limit_in_bytes = %q", mem)
		}
		pids, _ := os.ReadFile("/sys/fs/cgroup/pids/macro/" + id + "/pids.max")
		if strings.TrimSpace(string(pids)) != "20" {
			t.Fatalf("pids.max = %q", pids)
		}
	})

	t.Run("isolation: read-only, no host processes, dropped caps", func(t *testing.T) {
		checks := []struct{ name, script string }{
			{"tmpfs is writable", "touch /scratch/ok"},
			{"root is read-only", "! touch /root/x 2>/dev/null"},
			{"own pid namespace", "test $(ls /proc | grep -c '^[0-9]') -lt 5"},
			{"pid 1 is the container's", "test \"$(cat /proc/1/comm)\" = sh"},
			{"only Docker's devices", "test \"$(ls /dev | tr '\\n' ' ')\" = 'fd full mqueue null ptmx pts random shm stderr stdin stdout tty urandom zero '"},
			{"no net admin", "! ip link add x type dummy 2>/dev/null"},
			{"no host disks", "! test -e /dev/vda -o -e /dev/sda"},
			{"seccomp on", "grep -q '^Seccomp:.*2' /proc/self/status"},
			{"docker's capability set", "grep -q '^CapEff:.*00000000a80425fb' /proc/self/status"},
		}
		for _, ck := range checks {
			r := c.docker("run", "--rm", "--read-only", "--tmpfs", "/scratch", "busybox", "sh", "-c", ck.script)
			if r.ExitCode != 0 {
				t.Errorf("%s: exit %d %q", ck.name, r.ExitCode, r.Combined())
			}
		}
		// mknod is allowed (Docker keeps CAP_MKNOD) but the device cgroup
		// refuses to open what it makes.
		r := c.docker("run", "--rm", "busybox", "sh", "-c", "mknod /tmp/disk b 8 0 && head -c1 /tmp/disk")
		if r.ExitCode == 0 || !strings.Contains(r.Stderr, "Operation not permitted") {
			t.Errorf("a block device opened inside a pod: %d %q", r.ExitCode, r.Combined())
		}
	})

	t.Run("restart policy on-failure", func(t *testing.T) {
		c.must("run", "-d", "--name", "flaky", "--restart", "on-failure:2", "busybox", "sh", "-c", "exit 1")
		eventually(t, "two restarts", func() bool {
			return c.inspect("flaky")["RestartCount"].(float64) == 2 && c.state("flaky")["Status"] == "exited"
		})
		c.must("rm", "flaky")
	})

	t.Run("cp both ways, diff and export", func(t *testing.T) {
		c.must("run", "-d", "--name", "files", "busybox", "sh", "-c", "echo inside > /tmp/in.txt; sleep 60")
		defer c.docker("rm", "-f", "files")
		dir := t.TempDir()
		src := filepath.Join(dir, "up.txt")
		os.WriteFile(src, []byte("from host\n"), 0o644)
		c.must("cp", src, "files:/tmp/up.txt")
		if out := c.must("exec", "files", "cat", "/tmp/up.txt"); out != "from host" {
			t.Fatalf("cp in: %q", out)
		}
		eventually(t, "file written", func() bool { return c.docker("exec", "files", "test", "-f", "/tmp/in.txt").ExitCode == 0 })
		c.must("cp", "files:/tmp/in.txt", filepath.Join(dir, "down.txt"))
		if data, _ := os.ReadFile(filepath.Join(dir, "down.txt")); string(data) != "inside\n" {
			t.Fatalf("cp out: %q", data)
		}
		if out := c.must("diff", "files"); !strings.Contains(out, "A /tmp/in.txt") || !strings.Contains(out, "C /tmp") {
			t.Fatalf("diff: %q", out)
		}
		tarPath := filepath.Join(dir, "fs.tar")
		c.must("export", "-o", tarPath, "files")
		if fi, err := os.Stat(tarPath); err != nil || fi.Size() < 100000 {
			t.Fatalf("export: %v %v", fi, err)
		}
	})

	t.Run("stats and system info", func(t *testing.T) {
		c.must("run", "-d", "--name", "busy", "busybox", "sleep", "60")
		defer c.docker("rm", "-f", "busy")
		out := c.must("stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}", "busy")
		if !strings.HasPrefix(out, "busy ") || strings.Contains(out, " 0B /") {
			t.Fatalf("stats: %q", out)
		}
		if out := c.must("info", "--format", "{{.ContainersRunning}} {{.Driver}}"); !strings.HasSuffix(out, "overlay2") {
			t.Fatalf("info: %q", out)
		}
		if out := c.must("version", "--format", "{{.Server.APIVersion}}"); out != "1.50" {
			t.Fatalf("version: %q", out)
		}
		if out := c.must("system", "df"); !strings.Contains(out, "Images") {
			t.Fatalf("system df: %q", out)
		}
	})

	t.Run("errors have Docker's words", func(t *testing.T) {
		c.must("create", "--name", "dup", "busybox", "true")
		defer c.docker("rm", "dup")
		cases := []struct {
			args []string
			want string
		}{
			{[]string{"create", "--name", "dup", "busybox", "true"}, "is already in use by container"},
			{[]string{"start", "nosuchcontainer"}, "No such container: nosuchcontainer"},
			{[]string{"run", "--rm", "--restart", "always", "busybox", "true"}, "--restart"},
			{[]string{"run", "--rm", "-m", "1m", "busybox", "true"}, "Minimum memory limit allowed is 6MB"},
			{[]string{"kill", "-s", "NOPE", "dup"}, "Invalid signal"},
			{[]string{"run", "--rm", "nosuchimage:1"}, "nosuchimage"},
			{[]string{"exec", "dup", "true"}, "is not running"},
		}
		for _, tc := range cases {
			r := c.docker(tc.args...)
			if r.ExitCode == 0 || !strings.Contains(r.Stderr, tc.want) {
				t.Errorf("docker %v: exit %d stderr %q, want %q", tc.args, r.ExitCode, r.Stderr, tc.want)
			}
		}
	})

	t.Run("gvisor runtime", func(t *testing.T) {
		r := c.docker("run", "--rm", "--runtime", "gvisor", "busybox", "sh", "-c", "dmesg 2>/dev/null | head -1; echo under-gvisor")
		if r.ExitCode != 0 || !strings.Contains(r.Stdout, "under-gvisor") {
			t.Fatalf("gvisor run: %d %q %q", r.ExitCode, r.Stdout, r.Stderr)
		}
	})

	t.Run("container prune", func(t *testing.T) {
		c.must("create", "--name", "old", "busybox", "true")
		out := c.must("container", "prune", "-f")
		if !strings.Contains(out, "Total reclaimed space") {
			t.Fatalf("prune: %q", out)
		}
		if r := c.docker("inspect", "old"); r.ExitCode == 0 {
			t.Fatalf("old survived prune")
		}
	})
}

// TestRestartKeepsContainers stops macro with SIGTERM and kills it with
// SIGKILL: running containers keep running and every container is listed
// again with its state and logs.
func TestRestartKeepsContainers(t *testing.T) {
	c := newCloud(t)
	id := c.must("run", "-d", "--name", "keeper", "busybox", "sh", "-c", "echo started; sleep 300")
	c.must("create", "--name", "created-only", "busybox", "true")
	if r := c.docker("run", "--name", "finished", "busybox", "sh", "-c", "exit 4"); r.ExitCode != 4 {
		t.Fatalf("run exit 4: %d %q", r.ExitCode, r.Combined())
	}
	c.must("run", "-d", "--name", "always", "--restart", "always", "busybox", "sleep", "300")
	pid := c.state("keeper")["Pid"].(float64)

	for _, how := range []string{"SIGTERM", "SIGKILL"} {
		if how == "SIGTERM" {
			if err := c.srv.Stop(); err != nil {
				t.Fatal(err)
			}
		} else {
			c.srv.Kill()
		}
		c.srv.Start()
		st := c.state("keeper")
		if st["Status"] != "running" || st["Pid"].(float64) != pid {
			t.Fatalf("after %s keeper is %v (pid was %v)", how, st, pid)
		}
		if got := c.state("finished"); got["Status"] != "exited" || got["ExitCode"].(float64) != 4 {
			t.Fatalf("after %s finished is %v", how, got)
		}
		if got := c.state("created-only")["Status"]; got != "created" {
			t.Fatalf("after %s created-only is %v", how, got)
		}
		if out := c.must("logs", "keeper"); out != "started" {
			t.Fatalf("after %s logs are %q", how, out)
		}
		if out := c.must("exec", "keeper", "echo", "alive"); out != "alive" {
			t.Fatalf("after %s exec: %q", how, out)
		}
	}
	c.must("stop", "-t", "1", id)
	if st := c.state("keeper"); st["Status"] != "exited" {
		t.Fatalf("stop after restart: %v", st)
	}
	c.must("rm", "-f", "always")
}
