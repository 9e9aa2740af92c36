package e2e

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/macro-cloud/macro/internal/testenv"
)

// TestContainerVerbs drives every container verb and `docker run` flag of
// the docker CLI against one macro server, the way a user types them.
func TestContainerVerbs(t *testing.T) {
	c := newCloud(t)

	t.Run("run -t without -i has a terminal", func(t *testing.T) {
		r := c.docker("run", "--rm", "-t", "busybox", "tty")
		if r.ExitCode != 0 || strings.TrimSpace(r.Stdout) != "/dev/pts/0" {
			t.Fatalf("exit %d stdout %q stderr %q", r.ExitCode, r.Stdout, r.Stderr)
		}
	})

	t.Run("run -it is an interactive terminal session", func(t *testing.T) {
		term := c.terminal(t, "run", "-it", "--rm", "--name", "it", "busybox", "sh")
		// (ash asks the terminal where its cursor is before its first
		// prompt; a pty with no terminal emulator never answers, so type
		// after the banner instead)
		term.expect("Enter 'help'")
		term.send("echo $((6*7)) $(tty)\r")
		term.expect("42 /dev/pts/0")
		term.send("exit 5\r")
		if code := term.exitCode(); code != 5 {
			t.Fatalf("exit code %d, screen %q", code, term.out.String())
		}
	})

	t.Run("run -d, --name, -l, -e, --env-file, -w, -u, --entrypoint, --hostname", func(t *testing.T) {
		env := filepath.Join(t.TempDir(), "env")
		os.WriteFile(env, []byte("# comment\nFROM_FILE=yes\nEMPTY=\n"), 0o644)
		id := c.must("run", "-d", "--name", "flags", "-l", "team=red", "--label", "tier=db", "-e", "A=1", "--env-file", env,
			"-w", "/tmp", "-u", "1000:1000", "--hostname", "box", "--entrypoint", "sh", "busybox",
			"-c", `echo "$A $FROM_FILE [$EMPTY] $(pwd) $(id -u):$(id -g) $(hostname)"`)
		if len(id) != 64 {
			t.Fatalf("run -d printed %q", id)
		}
		if out := c.must("wait", "flags"); out != "0" {
			t.Fatalf("wait: %q", out)
		}
		if out := c.must("logs", "flags"); out != "1 yes [] /tmp 1000:1000 box" {
			t.Fatalf("logs: %q", out)
		}
		in := c.inspect("flags")
		cfg := in["Config"].(map[string]any)
		if cfg["User"] != "1000:1000" || cfg["WorkingDir"] != "/tmp" || cfg["Hostname"] != "box" ||
			cfg["Labels"].(map[string]any)["tier"] != "db" || !contains(cfg["Env"], "FROM_FILE=yes") ||
			!contains(cfg["Entrypoint"], "sh") {
			t.Fatalf("Config %v", cfg)
		}
		if in["Name"] != "/flags" || in["Path"] != "sh" {
			t.Fatalf("Name %v Path %v", in["Name"], in["Path"])
		}
		c.must("rm", "flags")
	})

	t.Run("run --rm removes the container and keeps the exit code", func(t *testing.T) {
		r := c.docker("run", "--rm", "--name", "gone", "busybox", "sh", "-c", "exit 12")
		if r.ExitCode != 12 {
			t.Fatalf("exit %d %q", r.ExitCode, r.Combined())
		}
		if r := c.docker("inspect", "gone"); r.ExitCode == 0 {
			t.Fatalf("--rm container still there")
		}
	})

	t.Run("read-only root, tmpfs, hostname", func(t *testing.T) {
		r := c.docker("run", "--rm", "--read-only", "--tmpfs", "/run:size=1m", "--hostname", "ro", "busybox", "sh", "-c",
			`hostname; grep ' /run ' /proc/mounts | grep -q size=1024k && echo tmpfs-1m; echo x > /run/ok && echo tmpfs-writable; echo x > /etc/x 2>/dev/null || echo root-read-only`)
		if r.ExitCode != 0 || r.Stdout != "ro\ntmpfs-1m\ntmpfs-writable\nroot-read-only\n" {
			t.Fatalf("exit %d %q", r.ExitCode, r.Combined())
		}
	})

	t.Run("pids-limit stops a fork loop", func(t *testing.T) {
		r := c.docker("run", "--rm", "--pids-limit", "8", "busybox", "sh", "-c", "i=0; while [ $i -lt 30 ]; do sleep 30 & i=$((i+1)); done; echo all-forked")
		if r.ExitCode == 0 || strings.Contains(r.Stdout, "all-forked") || !strings.Contains(r.Stderr, "can't fork") {
			t.Fatalf("exit %d %q", r.ExitCode, r.Combined())
		}
	})

	t.Run("memory and cpus reach inspect", func(t *testing.T) {
		c.must("create", "--name", "lim", "-m", "64m", "--cpus", "1.5", "--pids-limit", "50", "busybox", "true")
		defer c.docker("rm", "lim")
		hc := c.inspect("lim")["HostConfig"].(map[string]any)
		if hc["Memory"].(float64) != 64<<20 || hc["NanoCpus"].(float64) != 1.5e9 || hc["PidsLimit"].(float64) != 50 {
			t.Fatalf("HostConfig %v", hc)
		}
	})

	t.Run("stop-signal reaches the container", func(t *testing.T) {
		c.must("run", "-d", "--name", "usr1", "--stop-signal", "USR1", "busybox", "sh", "-c",
			"trap 'echo got-usr1; exit 42' USR1; echo ready; while true; do sleep 0.1; done")
		defer c.docker("rm", "-f", "usr1")
		eventually(t, "ready", func() bool { return c.must("logs", "usr1") == "ready" })
		c.must("stop", "usr1")
		st := c.state("usr1")
		if st["ExitCode"].(float64) != 42 || !strings.Contains(c.must("logs", "usr1"), "got-usr1") {
			t.Fatalf("state %v logs %q", st, c.must("logs", "usr1"))
		}
		if c.inspect("usr1")["Config"].(map[string]any)["StopSignal"] != "USR1" {
			t.Fatalf("Config.StopSignal not kept")
		}
		// stop --signal replaces the stop signal for that stop only; with a
		// 30 s timeout, a signal not delivered would end in SIGKILL (137).
		c.must("start", "usr1")
		eventually(t, "ready again", func() bool { return strings.Count(c.must("logs", "usr1"), "ready") == 2 })
		c.must("exec", "usr1", "sh", "-c", "true") // still USR1's container
		c.must("run", "-d", "--name", "hup", "busybox", "sh", "-c",
			"trap '' TERM; trap 'exit 7' HUP; echo ready; while true; do sleep 0.1; done")
		defer c.docker("rm", "-f", "hup")
		eventually(t, "hup ready", func() bool { return c.must("logs", "hup") == "ready" })
		c.must("stop", "--signal", "HUP", "-t", "30", "hup")
		if st := c.state("hup"); st["ExitCode"].(float64) != 7 {
			t.Fatalf("after stop --signal HUP: state %v, want exit code 7", st)
		}
	})

	t.Run("stop-timeout and stop -t kill a container that ignores TERM", func(t *testing.T) {
		c.must("run", "-d", "--name", "stubborn", "--stop-timeout", "1", "busybox", "sh", "-c",
			"trap '' TERM; echo ready; while true; do sleep 0.1; done")
		defer c.docker("rm", "-f", "stubborn")
		eventually(t, "ready", func() bool { return c.must("logs", "stubborn") == "ready" })
		// The container's own timeout is kept and shown; a process that
		// ignores TERM ends killed (137) once it passes.
		if got := c.inspect("stubborn")["Config"].(map[string]any)["StopTimeout"]; got != 1.0 {
			t.Fatalf("Config.StopTimeout %v, want 1", got)
		}
		c.must("stop", "stubborn")
		if st := c.state("stubborn"); st["ExitCode"].(float64) != 137 || st["Running"] != false {
			t.Fatalf("after stop: state %v", st)
		}
		c.must("start", "stubborn")
		eventually(t, "ready again", func() bool { return strings.Count(c.must("logs", "stubborn"), "ready") == 2 })
		c.must("stop", "-t", "1", "stubborn")
		if st := c.state("stubborn"); st["ExitCode"].(float64) != 137 || st["Running"] != false {
			t.Fatalf("after stop -t 1: state %v", st)
		}
	})

	t.Run("ps -a -q -s --filter --format", func(t *testing.T) {
		up := c.must("run", "-d", "--name", "ps-up", "-l", "ps=yes", "busybox", "sh", "-c", "head -c 100000 /dev/zero > /written; sleep 300")
		defer c.docker("rm", "-f", "ps-up")
		c.must("create", "--name", "ps-created", "-l", "ps=yes", "busybox", "true")
		defer c.docker("rm", "ps-created")
		if r := c.docker("run", "--name", "ps-exited", "-l", "ps=yes", "busybox", "sh", "-c", "exit 3"); r.ExitCode != 3 {
			t.Fatalf("run: %d %q", r.ExitCode, r.Combined())
		}
		defer c.docker("rm", "ps-exited")
		lines := func(s string) string { return strings.Join(strings.Fields(s), " ") }
		cases := []struct {
			args []string
			want string
		}{
			{[]string{"ps", "--filter", "label=ps", "--format", "{{.Names}}"}, "ps-up"},
			{[]string{"ps", "-a", "--filter", "label=ps=yes", "--format", "{{.Names}}"}, "ps-exited ps-created ps-up"},
			{[]string{"ps", "-a", "--filter", "status=exited", "--filter", "label=ps", "--format", "{{.Names}} {{.State}}"}, "ps-exited exited"},
			{[]string{"ps", "-a", "--filter", "status=created", "--filter", "label=ps", "--format", "{{.Names}} {{.Status}}"}, "ps-created Created"},
			{[]string{"ps", "-a", "--filter", "exited=3", "--format", "{{.Names}}"}, "ps-exited"},
			{[]string{"ps", "-a", "--filter", "name=ps-c", "--format", "{{.Names}}"}, "ps-created"},
			{[]string{"ps", "-q", "--filter", "id=" + up[:10]}, up[:12]},
			{[]string{"ps", "--filter", "ancestor=busybox", "--filter", "label=ps", "--format", "{{.Names}} {{.Image}}"}, "ps-up busybox"},
			{[]string{"ps", "-a", "--filter", "name=ps-exited", "--format", "{{.Command}}|{{.Labels}}"}, `"sh -c 'exit 3'"|ps=yes`},
		}
		for _, tc := range cases {
			if got := lines(c.must(tc.args...)); got != tc.want {
				t.Errorf("docker %v: got %q, want %q", tc.args, got, tc.want)
			}
		}
		eventually(t, "file written", func() bool { return c.docker("exec", "ps-up", "test", "-s", "/written").ExitCode == 0 })
		size := c.must("ps", "-s", "--filter", "name=ps-up", "--format", "{{.Size}}")
		if !strings.HasPrefix(size, "100kB (virtual ") {
			t.Fatalf("ps -s: %q", size)
		}
		var in []map[string]any
		json.Unmarshal([]byte(c.must("inspect", "-s", "ps-up")), &in)
		if len(in) != 1 || in[0]["SizeRw"].(float64) != 100000 || in[0]["SizeRootFs"].(float64) <= 100000 {
			t.Fatalf("inspect -s: %v %v", in[0]["SizeRw"], in[0]["SizeRootFs"])
		}
	})

	t.Run("healthchecks show in inspect and ps", func(t *testing.T) {
		c.must("run", "-d", "--name", "fine", "--health-cmd", "exit 0", "--health-interval", "200ms", "busybox", "sleep", "300")
		defer c.docker("rm", "-f", "fine")
		c.must("run", "-d", "--name", "sick", "--health-cmd", "echo nope; exit 1", "--health-interval", "200ms", "--health-retries", "2", "busybox", "sleep", "300")
		defer c.docker("rm", "-f", "sick")
		eventually(t, "healthy", func() bool {
			return strings.HasSuffix(c.must("ps", "--filter", "name=fine", "--format", "{{.Status}}"), "(healthy)")
		})
		eventually(t, "unhealthy", func() bool {
			return strings.HasSuffix(c.must("ps", "--filter", "name=sick", "--format", "{{.Status}}"), "(unhealthy)")
		})
		h := c.state("sick")["Health"].(map[string]any)
		logs := h["Log"].([]any)
		if h["Status"] != "unhealthy" || h["FailingStreak"].(float64) < 2 || len(logs) == 0 ||
			logs[0].(map[string]any)["Output"] != "nope\n" || logs[0].(map[string]any)["ExitCode"].(float64) != 1 {
			t.Fatalf("Health %v", h)
		}
		if out := c.must("ps", "--filter", "health=healthy", "--format", "{{.Names}}"); out != "fine" {
			t.Fatalf("ps --filter health=healthy: %q", out)
		}
	})

	t.Run("inspect State after exit", func(t *testing.T) {
		before := time.Now().Add(-time.Second)
		c.docker("run", "--name", "st", "busybox", "sh", "-c", "exit 9")
		defer c.docker("rm", "st")
		st := c.state("st")
		started, err1 := time.Parse(time.RFC3339Nano, st["StartedAt"].(string))
		finished, err2 := time.Parse(time.RFC3339Nano, st["FinishedAt"].(string))
		if err1 != nil || err2 != nil || started.Before(before) || finished.Before(started) ||
			st["Status"] != "exited" || st["ExitCode"].(float64) != 9 || st["Pid"].(float64) != 0 ||
			st["OOMKilled"] != false || st["Running"] != false {
			t.Fatalf("State %v", st)
		}
		in := c.inspect("st")
		if m, ok := in["Mounts"].([]any); !ok || len(m) != 0 {
			t.Fatalf("Mounts %v", in["Mounts"])
		}
		if rp := in["HostConfig"].(map[string]any)["RestartPolicy"].(map[string]any); rp["Name"] != "no" {
			t.Fatalf("RestartPolicy %v", rp)
		}
	})

	t.Run("logs -f, --tail, -t, --since, --until, streams apart", func(t *testing.T) {
		c.must("run", "-d", "--name", "talk", "busybox", "sh", "-c",
			"for i in 1 2 3; do echo out$i; echo err$i >&2; sleep 0.2; done")
		defer c.docker("rm", "-f", "talk")
		// -f ends when the container does.
		r := c.docker("logs", "-f", "talk")
		if r.Stdout != "out1\nout2\nout3\n" || r.Stderr != "err1\nerr2\nerr3\n" {
			t.Fatalf("logs -f: %q %q", r.Stdout, r.Stderr)
		}
		// The tail is of the whole log, both streams (which of out3 and
		// err3 came last is up to the kernel).
		r = c.docker("logs", "--tail", "2", "talk")
		if r.Stdout != "out3\n" || r.Stderr != "err3\n" {
			t.Fatalf("--tail 2: %q %q", r.Stdout, r.Stderr)
		}
		if r = c.docker("logs", "--tail", "1", "talk"); r.Stdout+r.Stderr != "out3\n" && r.Stdout+r.Stderr != "err3\n" {
			t.Fatalf("--tail 1: %q %q", r.Stdout, r.Stderr)
		}
		ts := c.must("logs", "-t", "--tail", "2", "talk")
		stamp, line, _ := strings.Cut(ts, " ")
		if _, err := time.Parse(time.RFC3339Nano, stamp); err != nil || line != "out3" {
			t.Fatalf("logs -t: %q", ts)
		}
		// The second line's own timestamp splits the log.
		all := strings.Split(strings.TrimSpace(testenv.MustDocker(t, c.host, "logs", "-t", "talk").Stdout), "\n")
		second, _, _ := strings.Cut(all[1], " ")
		if got := c.docker("logs", "--since", second, "talk").Stdout; got != "out2\nout3\n" {
			t.Fatalf("--since %s: %q", second, got)
		}
		if got := c.docker("logs", "--until", second, "talk").Stdout; got != "out1\nout2\n" {
			t.Fatalf("--until %s: %q", second, got)
		}
		if got := c.docker("logs", "--since", "1h", "--until", "1h", "talk").Stdout; got != "" {
			t.Fatalf("--until an hour ago: %q", got)
		}
	})

	t.Run("exec -i -t -e -u -w -d and its exit code", func(t *testing.T) {
		c.must("run", "-d", "--name", "host", "busybox", "sleep", "300")
		defer c.docker("rm", "-f", "host")
		if r := testenv.MustDockerIn(t, c.host, "piped\n", "exec", "-i", "host", "cat"); r.Stdout != "piped\n" {
			t.Fatalf("exec -i: %q", r.Stdout)
		}
		if out := c.must("exec", "-t", "host", "tty"); out != "/dev/pts/0" {
			t.Fatalf("exec -t: %q", out)
		}
		if out := c.must("exec", "-e", "X=y", "-u", "1000", "-w", "/home/app", "host", "sh", "-c", "echo $X $(id -u) $(pwd)"); out != "y 1000 /home/app" {
			t.Fatalf("exec -e -u -w: %q", out)
		}
		if r := c.docker("exec", "host", "sh", "-c", "echo bad >&2; exit 7"); r.ExitCode != 7 || r.Stderr != "bad\n" {
			t.Fatalf("exec exit %d %q", r.ExitCode, r.Stderr)
		}
		c.must("exec", "-d", "host", "sh", "-c", "sleep 0.2; echo detached > /tmp/marker")
		eventually(t, "detached exec", func() bool { return c.docker("exec", "host", "cat", "/tmp/marker").Stdout == "detached\n" })
		term := c.terminal(t, "exec", "-it", "host", "sh")
		term.expect("Enter 'help'")
		term.send("echo $((3*4)); exit 3\r")
		term.expect("12")
		if code := term.exitCode(); code != 3 {
			t.Fatalf("exec -it exit %d, screen %q", code, term.out.String())
		}
	})

	t.Run("attach with sig-proxy, start -a, start -ai", func(t *testing.T) {
		c.must("run", "-d", "--name", "chatty", "busybox", "sh", "-c",
			"trap 'echo got-int; exit 9' INT; i=0; while true; do echo line$i; i=$((i+1)); sleep 0.1; done")
		defer c.docker("rm", "-f", "chatty")
		a := c.startDocker(t, "attach", "chatty")
		eventually(t, "attached output", func() bool { return strings.Count(a.out.String(), "line") >= 3 })
		a.interrupt() // ^C: the CLI passes SIGINT to the container
		if code := a.wait(t); code != 9 || !strings.Contains(a.out.String(), "got-int") {
			t.Fatalf("attach exit %d, output %q", code, a.out.String())
		}
		if st := c.state("chatty"); st["ExitCode"].(float64) != 9 {
			t.Fatalf("state %v", st)
		}

		c.must("create", "--name", "later", "busybox", "sh", "-c", "echo from-start; exit 4")
		defer c.docker("rm", "later")
		if r := c.docker("start", "-a", "later"); r.ExitCode != 4 || r.Stdout != "from-start\n" {
			t.Fatalf("start -a: %d %q", r.ExitCode, r.Combined())
		}
		c.must("create", "-i", "--name", "reader", "busybox", "sh", "-c", "read x; echo got-$x; exit 6")
		defer c.docker("rm", "reader")
		if r := testenv.DockerIn(t, c.host, "abc\n", "start", "-ai", "reader"); r.ExitCode != 6 || r.Stdout != "got-abc\n" {
			t.Fatalf("start -ai: %d %q", r.ExitCode, r.Combined())
		}
	})

	t.Run("stop start kill restart pause unpause rename wait rm -f top stats", func(t *testing.T) {
		c.must("run", "-d", "--name", "verbs", "busybox", "sh", "-c", "trap 'echo hup' HUP; while true; do sleep 0.1; done")
		pid := c.state("verbs")["Pid"].(float64)
		c.must("kill", "-s", "HUP", "verbs")
		eventually(t, "HUP trapped", func() bool { return c.must("logs", "verbs") == "hup" })
		c.must("restart", "-t", "1", "verbs")
		if st := c.state("verbs"); st["Status"] != "running" || st["Pid"].(float64) == pid {
			t.Fatalf("after restart: %v", st)
		}
		c.must("pause", "verbs")
		if out := c.must("ps", "--filter", "name=verbs", "--format", "{{.Status}}"); !strings.HasSuffix(out, "(Paused)") {
			t.Fatalf("ps of a paused container: %q", out)
		}
		if r := c.docker("pause", "verbs"); r.ExitCode == 0 || !strings.Contains(r.Stderr, "is already paused") {
			t.Fatalf("pause twice: %q", r.Stderr)
		}
		c.must("unpause", "verbs")
		c.must("rename", "verbs", "verbs2")
		if out := c.must("ps", "--filter", "name=verbs2", "--format", "{{.Names}}"); out != "verbs2" {
			t.Fatalf("after rename: %q", out)
		}
		top := c.must("top", "verbs2")
		if !strings.Contains(top, "PID") || !strings.Contains(top, "sh -c") {
			t.Fatalf("top: %q", top)
		}
		stats := c.must("stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}", "verbs2")
		if !strings.HasPrefix(stats, "verbs2 ") || strings.HasSuffix(stats, " 0") {
			t.Fatalf("stats: %q", stats)
		}
		if out := c.must("port", "verbs2"); out != "" {
			t.Fatalf("port: %q", out)
		}
		w := c.startDocker(t, "wait", "verbs2")
		c.must("kill", "verbs2")
		if code := w.wait(t); code != 0 || strings.TrimSpace(w.out.String()) != "137" {
			t.Fatalf("wait: exit %d output %q", code, w.out.String())
		}
		c.must("start", "verbs2")
		c.must("rm", "-f", "verbs2")
		if r := c.docker("inspect", "verbs2"); r.ExitCode == 0 {
			t.Fatalf("rm -f left the container")
		}
	})

	t.Run("cp files, directories and tar streams both ways", func(t *testing.T) {
		c.must("run", "-d", "--name", "box", "busybox", "sh", "-c", "mkdir -p /data/sub; echo x > /data/sub/x.txt; echo y > /data/y.txt; sleep 300")
		defer c.docker("rm", "-f", "box")
		eventually(t, "files", func() bool { return c.docker("exec", "box", "test", "-f", "/data/y.txt").ExitCode == 0 })
		dir := t.TempDir()
		os.MkdirAll(filepath.Join(dir, "up", "deep"), 0o755)
		os.WriteFile(filepath.Join(dir, "up", "deep", "a.txt"), []byte("a\n"), 0o644)
		c.must("cp", filepath.Join(dir, "up"), "box:/tmp/")
		if out := c.must("exec", "box", "cat", "/tmp/up/deep/a.txt"); out != "a" {
			t.Fatalf("cp dir in: %q", out)
		}
		c.must("cp", "box:/data", filepath.Join(dir, "down"))
		for name, want := range map[string]string{"down/sub/x.txt": "x\n", "down/y.txt": "y\n"} {
			if data, _ := os.ReadFile(filepath.Join(dir, name)); string(data) != want {
				t.Fatalf("cp dir out: %s = %q", name, data)
			}
		}
		// docker cp box:/data - writes a tar stream...
		r := testenv.MustDocker(t, c.host, "cp", "box:/data/sub", "-")
		names := tarNames(t, []byte(r.Stdout))
		if strings.Join(names, " ") != "sub/ sub/x.txt" {
			t.Fatalf("cp to -: %v", names)
		}
		// ...and docker cp - box:/dir reads one.
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		tw.WriteHeader(&tar.Header{Name: "streamed.txt", Mode: 0o644, Size: 3, Typeflag: tar.TypeReg})
		tw.Write([]byte("st\n"))
		tw.Close()
		testenv.MustDockerIn(t, c.host, buf.String(), "cp", "-", "box:/tmp")
		if out := c.must("exec", "box", "cat", "/tmp/streamed.txt"); out != "st" {
			t.Fatalf("cp from -: %q", out)
		}
		if r := c.docker("cp", "box:/no/such", dir); r.ExitCode == 0 || !strings.Contains(r.Stderr, "Could not find the file /no/such") {
			t.Fatalf("cp of a missing path: %d %q", r.ExitCode, r.Stderr)
		}
		diff := c.must("diff", "box")
		if !strings.Contains(diff, "A /data") || !strings.Contains(diff, "A /tmp/streamed.txt") {
			t.Fatalf("diff: %q", diff)
		}
		exported := testenv.MustDocker(t, c.host, "export", "box").Stdout
		if names := tarNames(t, []byte(exported)); !containsString(names, "data/sub/x.txt") || !containsString(names, "bin/busybox") {
			t.Fatalf("export has %d entries", len(names))
		}
	})

	t.Run("events with --since, --until and filters", func(t *testing.T) {
		since := strconv.FormatInt(time.Now().Add(-time.Second).Unix(), 10)
		if r := c.docker("run", "--rm", "--name", "evt", "-l", "ev=1", "busybox", "sh", "-c", "exit 3"); r.ExitCode != 3 {
			t.Fatalf("run: %d %q", r.ExitCode, r.Combined())
		}
		until := time.Now().UTC().Format(time.RFC3339Nano)
		out := c.must("events", "--since", since, "--until", until, "--filter", "container=evt",
			"--format", "{{.Type}} {{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.image}} {{.Actor.Attributes.ev}} {{index .Actor.Attributes \"exitCode\"}}")
		var got []string
		for _, l := range strings.Split(out, "\n") {
			got = append(got, strings.TrimSpace(l))
		}
		// docker run attaches before it starts: dockerd logs "attach".
		want := "container create evt busybox 1|container attach evt busybox 1|container start evt busybox 1|container die evt busybox 1 3|container destroy evt busybox 1"
		if strings.Join(got, "|") != want {
			t.Fatalf("events:\n%s\nwant:\n%s", out, want)
		}
		// The words: --until 0s is "now" in whole seconds, so wait
		// for the next second to begin.
		time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second + 10*time.Millisecond)))
		out = c.must("events", "--since", "1m", "--until", "0s", "--filter", "container=evt", "--filter", "event=die", "--format", "{{.Action}} {{.Actor.Attributes.exitCode}}")
		if out != "die 3" {
			t.Fatalf("events --filter event=die: %q", out)
		}
		// A live stream sees what happens next.
		// (--since, so that what happens before the CLI subscribes counts)
		ev := c.startDocker(t, "events", "--since", strconv.FormatInt(time.Now().Unix()-1, 10), "--filter", "container=evt2", "--format", "{{.Action}}")
		c.must("run", "--rm", "--name", "evt2", "busybox", "true")
		eventually(t, "live events", func() bool { return strings.Contains(ev.out.String(), "destroy") })
		if got := strings.Fields(ev.out.String()); strings.Join(got, " ") != "create attach start die destroy" {
			t.Fatalf("live events %q", got)
		}
	})

	t.Run("container prune, system df, info, version", func(t *testing.T) {
		c.must("create", "--name", "prunable", "busybox", "true")
		c.must("run", "-d", "--name", "keep-running", "busybox", "sleep", "300")
		defer c.docker("rm", "-f", "keep-running")
		out := c.must("container", "prune", "-f")
		if !strings.Contains(out, "Deleted Containers:") || !strings.Contains(out, "Total reclaimed space") {
			t.Fatalf("prune: %q", out)
		}
		if c.docker("inspect", "prunable").ExitCode == 0 || c.docker("inspect", "keep-running").ExitCode != 0 {
			t.Fatalf("prune removed the wrong containers")
		}
		df := c.must("system", "df", "--format", "{{.Type}} {{.TotalCount}} {{.Active}}")
		if !strings.Contains(df, "Images 1 1") || !strings.Contains(df, "Containers ") {
			t.Fatalf("system df: %q", df)
		}
		if out := c.must("info", "--format", "{{.ContainersRunning}} {{.OSType}} {{.CgroupVersion}}"); !strings.HasSuffix(out, " linux 1") {
			t.Fatalf("info: %q", out)
		}
		if out := c.must("version", "--format", "{{.Client.Version}} {{.Server.APIVersion}} {{.Server.Os}}"); !strings.HasSuffix(out, " 1.50 linux") {
			t.Fatalf("version: %q", out)
		}
	})

	t.Run("API version 1.41 for docker-py", func(t *testing.T) {
		run := func(args ...string) testenv.Result {
			return testenv.RunDocker(t, testenv.DockerCmd{Host: c.host, Env: []string{"DOCKER_API_VERSION=1.41"}, Args: args})
		}
		if r := run("run", "--rm", "--name", "old-api", "busybox", "echo", "via 1.41"); r.ExitCode != 0 || r.Stdout != "via 1.41\n" {
			t.Fatalf("run: %d %q", r.ExitCode, r.Combined())
		}
		if r := run("ps", "-a"); r.ExitCode != 0 || !strings.Contains(r.Stdout, "CONTAINER ID") {
			t.Fatalf("ps: %d %q", r.ExitCode, r.Combined())
		}
		if r := run("version", "--format", "{{.Client.APIVersion}}"); r.ExitCode != 0 || strings.TrimSpace(r.Stdout) != "1.41" {
			t.Fatalf("version: %d %q", r.ExitCode, r.Combined())
		}
	})

	t.Run("gvisor runtime propagates the exit code", func(t *testing.T) {
		r := c.docker("run", "--rm", "--runtime", "gvisor", "busybox", "sh", "-c", "echo in-gvisor; exit 11")
		if r.ExitCode != 11 || r.Stdout != "in-gvisor\n" {
			t.Fatalf("exit %d %q", r.ExitCode, r.Combined())
		}
	})
}

func tarNames(t *testing.T, data []byte) []string {
	t.Helper()
	var names []string
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatalf("tar: %v after %v", err, names)
		}
		names = append(names, h.Name)
	}
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// contains reports whether a decoded JSON list holds s.
func contains(list any, s string) bool {
	l, _ := list.([]any)
	for _, v := range l {
		if v == s {
			return true
		}
	}
	return false
}

// TestRestartPolicies checks --restart always and unless-stopped, with
// Docker's rules across a restart of macro: a stopped "always" container
// comes back, a stopped "unless-stopped" one does not.
func TestRestartPolicies(t *testing.T) {
	c := newCloud(t)
	c.must("run", "-d", "--name", "always", "--restart", "always", "busybox", "sh", "-c", "sleep 0.2; exit 0")
	c.must("run", "-d", "--name", "unless", "--restart", "unless-stopped", "busybox", "sh", "-c", "sleep 0.2; exit 1")
	c.must("run", "-d", "--name", "none", "busybox", "sleep", "300")
	for _, name := range []string{"always", "unless"} {
		eventually(t, name+" restarted twice", func() bool { return c.inspect(name)["RestartCount"].(float64) >= 2 })
	}
	if rp := c.inspect("unless")["HostConfig"].(map[string]any)["RestartPolicy"].(map[string]any); rp["Name"] != "unless-stopped" {
		t.Fatalf("RestartPolicy %v", rp)
	}
	c.must("update", "--restart", "always", "none")
	c.must("update", "--restart", "no", "none")
	c.must("stop", "-t", "1", "always", "unless", "none")
	for _, name := range []string{"always", "unless", "none"} {
		if st := c.state(name)["Status"]; st != "exited" {
			t.Fatalf("%s after stop: %v", name, st)
		}
	}
	if err := c.srv.Stop(); err != nil {
		t.Fatal(err)
	}
	restarted := strconv.FormatInt(time.Now().Unix(), 10)
	c.srv.Start()
	eventually(t, "always running after the restart", func() bool { return c.state("always")["Status"] == "running" })
	for _, name := range []string{"unless", "none"} {
		if st := c.state(name)["Status"]; st != "exited" {
			t.Fatalf("%s after a restart of macro: %v", name, st)
		}
	}
	// An exit recorded before the restart is not counted again.
	if n := strings.Count(c.must("events", "--since", restarted, "--until", time.Now().UTC().Format(time.RFC3339Nano), "--filter", "container=none", "--filter", "event=die", "--format", "{{.Action}}"), "die"); n != 0 {
		t.Fatalf("%d die events after the restart for an exit before it", n)
	}
	// docker kill is a manual stop whatever the policy. (A container of
	// its own that stays up: "always" exits every 0.2 s, and a kill that
	// lands between two of its runs finds nothing to kill.)
	c.must("run", "-d", "--name", "killed", "--restart", "always", "busybox", "sleep", "300")
	eventually(t, "killed running", func() bool { return c.state("killed")["Status"] == "running" })
	c.must("kill", "killed")
	if st := c.state("killed"); st["Status"] != "exited" || st["ExitCode"].(float64) != 137 {
		t.Fatalf("an always container after kill: %v", st)
	}
	c.must("rm", "-f", "always", "unless", "none", "killed")
}
