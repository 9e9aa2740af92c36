package reference

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// openDiffs lists the differences between dockerd and macro that were
// reported to the owners of api/docker and are not fixed yet, by subtest
// name. Their subtests are skipped with "DIFF: <what>" (they fail with
// MACRO_REFERENCE_STRICT=1). Remove an entry when its subtest passes.
var openDiffs = map[string]string{}

// newerWording lists the error messages where macro says what dockerd 25
// and later say (moby's ValidateRestartPolicy, ContainerRm) rather than
// dockerd 20.10's words: the subtest passes when macro prints exactly this
// (normalised) standard error, and says so.
var newerWording = map[string]string{
	"TestDifferential/errors/rm_running_container":        "Error response from daemon: cannot remove container \"/err-running\": container is running: stop the container before removing or force remove\n",
	"TestDifferential/errors/bad_restart_policy_name":     "Error response from daemon: invalid restart policy: unknown policy 'bogus'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'\n",
	"TestDifferential/errors/restart_always_with_count":   "Error response from daemon: invalid restart policy: maximum retry count can only be used with 'on-failure'\n",
	"TestDifferential/errors/restart_on-failure_negative": "Error response from daemon: invalid restart policy: maximum retry count cannot be negative\n",
}

// allowedFields are the fields of `docker inspect` of a container that may
// differ between dockerd and macro, and why.
var allowedFields = map[string]string{
	"HostConfig.Runtime": `the default runtime is named "runc" in dockerd and "sandbox" in macro, by design (runtime/sandbox)`,
}

// TestDifferential runs the same docker commands against dockerd 20.10 and
// macro and compares what the user sees.
func TestDifferential(t *testing.T) {
	p := newPair(t)

	t.Run("run", func(t *testing.T) { testRun(t, p) })
	t.Run("inspect", func(t *testing.T) { testInspect(t, p) })
	t.Run("ps", func(t *testing.T) { testPs(t, p) })
	t.Run("images", func(t *testing.T) { testImages(t, p) })
	t.Run("errors", func(t *testing.T) { testErrors(t, p) })
	t.Run("logs", func(t *testing.T) { testLogs(t, p) })
	t.Run("top", func(t *testing.T) { testTop(t, p) })
	t.Run("diff", func(t *testing.T) { testDiff(t, p) })
	t.Run("cp", func(t *testing.T) { testCp(t, p) })
	t.Run("wait", func(t *testing.T) { testWait(t, p) })
	t.Run("kill", func(t *testing.T) { testKill(t, p) })
	t.Run("events", func(t *testing.T) { testEvents(t, p) })
	t.Run("volumes", func(t *testing.T) { testVolumes(t, p) })
	t.Run("networks", func(t *testing.T) { testNetworks(t, p) })
	t.Run("info", func(t *testing.T) { testInfo(t, p) })
}

// run is `docker run --rm --network none` and the given arguments.
func run(args ...string) []string {
	return append([]string{"run", "--rm", "--network", "none"}, args...)
}

func testRun(t *testing.T, p *pair) {
	cases := []struct {
		name  string
		args  []string
		stdin string
	}{
		{"exit code and both streams", run("busybox", "sh", "-c", "echo out; echo err >&2; exit 3"), ""},
		{"exit code of a signal", run("busybox", "sh", "-c", "kill -9 $$"), ""},
		{"env", run("-e", "A=1", "-e", "EMPTY=", "busybox", "sh", "-c", "env | sort"), ""},
		{"env from the client", run("-e", "HOME", "-e", "UNSET_IN_CLIENT", "busybox", "sh", "-c", "echo home=$HOME unset=${UNSET_IN_CLIENT-unset}"), ""},
		{"workdir", run("-w", "/tmp", "busybox", "pwd"), ""},
		{"workdir created", run("-w", "/new/dir", "busybox", "sh", "-c", "pwd; ls -ld /new/dir | cut -c1-10"), ""},
		{"user uid:gid", run("-u", "1000:1000", "busybox", "id"), ""},
		{"user by name", run("-u", "app", "busybox", "sh", "-c", "id; echo $HOME"), ""},
		{"user uid not in passwd", run("-u", "4242", "busybox", "sh", "-c", "id; echo $HOME"), ""},
		{"user unknown name", run("-u", "nosuchuser", "busybox", "id"), ""},
		{"default user and home", run("busybox", "sh", "-c", "id; echo $HOME; echo $PATH"), ""},
		{"entrypoint", run("--entrypoint", "echo", "busybox", "hello", "world"), ""},
		{"empty entrypoint", run("--entrypoint", "", "busybox", "echo", "hi"), ""},
		{"missing binary", run("busybox", "/no/such/binary"), ""},
		{"missing command in PATH", run("busybox", "nosuchcommand"), ""},
		{"not executable", run("busybox", "/etc/passwd"), ""},
		{"hostname", run("--hostname", "box", "busybox", "sh", "-c", "hostname; cat /etc/hostname"), ""},
		{"stdin", run("-i", "busybox", "cat"), "through stdin\n"},
		{"read-only rootfs", run("--read-only", "busybox", "touch", "/x"), ""},
		{"tmpfs", run("--read-only", "--tmpfs", "/scratch", "busybox", "sh", "-c", "touch /scratch/x && echo ok"), ""},
		{"relative workdir", run("-w", "rel", "busybox", "pwd"), ""},
		{"no command", []string{"run", "--rm", "--network", "none", "--entrypoint", "", "busybox"}, ""},
		{"create with no command", []string{"create", "--network", "none", "--name", "no-cmd", "--entrypoint", "", "busybox"}, ""},
		{"labels", run("-l", "a=b", "busybox", "true"), ""},
	}
	p.cleanupBoth(t, "no-cmd")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := newDiffs(t)
			r, m := p.bothIn(t, tc.stdin, tc.args...)
			d.result(p, "docker "+strings.Join(tc.args, " "), r, m)
			d.done()
		})
	}

	t.Run("--rm removes the container", func(t *testing.T) {
		d := newDiffs(t)
		r, m := p.both(t, "run", "--rm", "--network", "none", "--name", "rm-me", "busybox", "true")
		d.result(p, "docker run --rm --name rm-me", r, m)
		r, m = p.both(t, "ps", "-a", "-q", "--filter", "name=rm-me")
		d.result(p, "docker ps -a -q --filter name=rm-me", r, m)
		d.done()
	})
}

// inspectFields are the fields of a container's inspect that are compared.
var inspectFields = []string{
	"Path", "Args", "Name", "RestartCount", "Platform", "Image",
	"State.Status", "State.Running", "State.Paused", "State.Restarting", "State.OOMKilled", "State.Dead",
	"State.ExitCode", "State.Error",
	"Config.Env", "Config.Cmd", "Config.Entrypoint", "Config.WorkingDir", "Config.User", "Config.Labels",
	"Config.StopSignal", "Config.Image", "Config.Tty", "Config.OpenStdin",
	"Config.AttachStdin", "Config.AttachStdout", "Config.AttachStderr", "Config.StdinOnce", "Config.Domainname",
	"Config.ExposedPorts", "Config.Volumes", "Config.OnBuild", "Config.StopTimeout",
	"HostConfig.Memory", "HostConfig.MemorySwap", "HostConfig.NanoCpus", "HostConfig.CpuShares",
	"HostConfig.PidsLimit", "HostConfig.RestartPolicy", "HostConfig.ReadonlyRootfs", "HostConfig.Tmpfs",
	"HostConfig.AutoRemove", "HostConfig.Runtime", "HostConfig.NetworkMode", "HostConfig.Privileged",
	"HostConfig.Init", "HostConfig.ShmSize", "HostConfig.CapAdd", "HostConfig.CapDrop", "HostConfig.Binds",
	"HostConfig.PortBindings", "HostConfig.LogConfig", "HostConfig.OomKillDisable", "HostConfig.IpcMode",
	"HostConfig.PidMode", "HostConfig.UsernsMode", "HostConfig.Dns", "HostConfig.ExtraHosts",
	"Mounts",
}

func testInspect(t *testing.T, p *pair) {
	create := []string{"create", "--network", "none", "-e", "A=1", "-l", "team=blue", "-w", "/tmp", "-u", "1000",
		"--hostname", "hh", "--stop-signal", "SIGUSR1", "-m", "64m", "--cpus", "0.5", "--pids-limit", "50",
		"--restart", "on-failure:3", "--read-only", "--tmpfs", "/run:size=1m"}
	p.cleanupBoth(t, "insp-created", "insp-running", "insp-exited", "insp-autorm")
	p.mustBoth(t, append(append([]string{}, create...), "--name", "insp-created", "busybox", "sleep", "1000")...)
	p.mustBoth(t, append(append([]string{}, create...), "--name", "insp-running", "busybox", "sleep", "1000")...)
	p.mustBoth(t, "start", "insp-running")
	p.both(t, "run", "--network", "none", "--name", "insp-exited", "--entrypoint", "sh", "busybox", "-c", "exit 2")
	p.mustBoth(t, "create", "--network", "none", "--rm", "--name", "insp-autorm", "busybox")

	for _, name := range []string{"insp-created", "insp-running", "insp-exited", "insp-autorm"} {
		t.Run(strings.TrimPrefix(name, "insp-"), func(t *testing.T) {
			d := newDiffs(t)
			r, m := p.inspect(t, name)
			for _, f := range inspectFields {
				rv, rok := field(r, f)
				mv, mok := field(m, f)
				if why, ok := allowedFields[f]; ok {
					t.Logf("%s may differ (%s): dockerd %s, macro %s", f, why, show(rv), show(mv))
					continue
				}
				if rok != mok {
					d.addf("%s: present in dockerd %v, in macro %v (dockerd %s, macro %s)", f, rok, mok, show(rv), show(mv))
					continue
				}
				d.equal(f, rv, mv)
			}
			// The hostname: the one given, or the short container ID.
			d.equal("Config.Hostname", hostname(r), hostname(m))
			// Times and PIDs: set or not set, the same way.
			for _, f := range []string{"State.Pid", "State.StartedAt", "State.FinishedAt", "Created"} {
				rv, _ := field(r, f)
				mv, _ := field(m, f)
				d.equal(f+" is set", isSet(rv), isSet(mv))
			}
			// Every key of dockerd's answer is in macro's (a --format
			// template that works on one works on the other).
			mk := map[string]bool{}
			for _, k := range keys(m, "", 2) {
				mk[k] = true
			}
			var missing []string
			for _, k := range keys(r, "", 2) {
				if !mk[k] && !removedInNewerAPI[k] {
					missing = append(missing, k)
				}
			}
			if len(missing) > 0 {
				d.addf("fields of dockerd's inspect missing in macro's: %s", strings.Join(missing, ", "))
			}
			d.done()
		})
	}
}

// removedInNewerAPI are fields that dockerd 20.10 (API 1.41) prints and
// that API 1.50 no longer has, so macro rightly leaves them out.
var removedInNewerAPI = map[string]bool{
	"HostConfig.KernelMemory":                true, // removed in API 1.42 (ignored since 1.42)
	"HostConfig.KernelMemoryTCP":             true,
	"Config.MacAddress":                      true, // moved to the networks in API 1.44
	"NetworkSettings.LinkLocalIPv6Address":   true, // deprecated, removed in API 1.44+
	"NetworkSettings.LinkLocalIPv6PrefixLen": true,
	"NetworkSettings.SecondaryIPAddresses":   true,
	"NetworkSettings.SecondaryIPv6Addresses": true,
	"NetworkSettings.HairpinMode":            true,
	"NetworkSettings.Bridge":                 true,
	"NetworkSettings.EndpointID":             true, // deprecated top-level copies of the default network's fields
	"NetworkSettings.Gateway":                true,
	"NetworkSettings.GlobalIPv6Address":      true,
	"NetworkSettings.GlobalIPv6PrefixLen":    true,
	"NetworkSettings.IPAddress":              true,
	"NetworkSettings.IPPrefixLen":            true,
	"NetworkSettings.IPv6Gateway":            true,
	"NetworkSettings.MacAddress":             true,
}

// hostname returns Config.Hostname of a container's inspect, "<id12>" when
// it is the short container ID.
func hostname(c map[string]any) string {
	h, _ := field(c, "Config.Hostname")
	id, _ := c["Id"].(string)
	if hs, _ := h.(string); len(id) >= 12 && hs == id[:12] {
		return "<id12>"
	}
	return fmt.Sprint(h)
}

func isSet(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case string:
		return x != "" && !strings.HasPrefix(x, "0001-01-01")
	case float64:
		return x != 0
	}
	return true
}

func testPs(t *testing.T, p *pair) {
	p.cleanupBoth(t, "ps-created", "ps-running", "ps-exited")
	p.mustBoth(t, "create", "--network", "none", "--name", "ps-created", "-l", "k=v", "busybox", "sleep", "1000")
	p.mustBoth(t, "run", "-d", "--network", "none", "--name", "ps-running", "busybox", "sleep", "1000")
	p.both(t, "run", "--network", "none", "--name", "ps-exited", "busybox", "sh", "-c", "exit 3")
	for _, name := range []string{"ps-created", "ps-running", "ps-exited"} {
		t.Run(strings.TrimPrefix(name, "ps-"), func(t *testing.T) {
			p.compare(t, "ps", "-a", "--no-trunc", "--filter", "name="+name, "--format", "{{json .}}")
		})
	}
	t.Run("table", func(t *testing.T) {
		p.compare(t, "ps", "-a", "--filter", "name=ps-", "--format", "table {{.Names}}\t{{.Image}}\t{{.Command}}\t{{.Status}}\t{{.Ports}}")
	})
	t.Run("name filter is a regexp", func(t *testing.T) {
		p.compare(t, "ps", "-a", "--filter", "name=^ps-(created|exited)$", "--format", "{{.Names}}")
	})
	t.Run("quiet filter status", func(t *testing.T) {
		d := newDiffs(t)
		for _, st := range []string{"created", "running", "exited"} {
			r, m := p.both(t, "ps", "-a", "--filter", "name=ps-", "--filter", "status="+st, "--format", "{{.Names}}")
			d.result(p, "ps --filter status="+st, r, m)
		}
		d.done()
	})
}

func testImages(t *testing.T, p *pair) {
	t.Run("image inspect", func(t *testing.T) {
		d := newDiffs(t)
		r, m := p.mustBoth(t, "image", "inspect", "busybox")
		ri, mi := decodeOne(t, "dockerd", r), decodeOne(t, "macro", m)
		for _, f := range []string{"Id", "RepoTags", "RepoDigests", "Parent", "Comment", "Created", "Author",
			"Architecture", "Variant", "Os", "Size", "RootFS", "Config.Cmd", "Config.Env", "Config.Entrypoint",
			"Config.WorkingDir", "Config.User", "Config.Labels", "Config.Volumes", "Config.ExposedPorts"} {
			rv, _ := field(ri, f)
			mv, _ := field(mi, f)
			d.equal(f, rv, mv)
		}
		d.done()
	})
	t.Run("images format", func(t *testing.T) {
		p.compare(t, "images", "--format", "{{.Repository}} {{.Tag}} {{.ID}} {{.CreatedSince}} {{.Size}} {{.Digest}}")
	})
	t.Run("images table", func(t *testing.T) {
		p.compare(t, "images")
	})
	t.Run("images quiet", func(t *testing.T) {
		p.compare(t, "images", "-q", "--no-trunc")
	})
}

func testErrors(t *testing.T, p *pair) {
	p.cleanupBoth(t, "err-dup", "err-running", "err-stopped", "err-other")
	p.mustBoth(t, "create", "--network", "none", "--name", "err-dup", "busybox", "true")
	p.mustBoth(t, "run", "-d", "--network", "none", "--name", "err-running", "busybox", "sleep", "1000")
	p.mustBoth(t, "run", "--network", "none", "--name", "err-stopped", "busybox", "true")
	p.mustBoth(t, "create", "--network", "none", "--name", "err-other", "busybox", "true")

	cases := []struct {
		name string
		args []string
	}{
		{"inspect no such container", []string{"inspect", "nosuchbox"}},
		{"container inspect no such container", []string{"container", "inspect", "nosuchbox"}},
		{"rm no such container", []string{"rm", "nosuchbox"}},
		{"start no such container", []string{"start", "nosuchbox"}},
		{"stop no such container", []string{"stop", "nosuchbox"}},
		{"logs no such container", []string{"logs", "nosuchbox"}},
		{"exec no such container", []string{"exec", "nosuchbox", "true"}},
		{"name conflict", []string{"create", "--network", "none", "--name", "err-dup", "busybox"}},
		{"rm running container", []string{"rm", "err-running"}},
		{"run missing image without pull", []string{"run", "--rm", "--pull", "never", "--network", "none", "nosuchimage"}},
		{"create missing image without pull", []string{"create", "--pull", "never", "--network", "none", "nosuchimage:v1"}},
		{"run image from unreachable registry", []string{"run", "--rm", "--network", "none", "127.0.0.1:1/nosuch:v1"}},
		{"bad restart policy name", []string{"create", "--network", "none", "--restart", "bogus", "busybox"}},
		{"restart always with count", []string{"create", "--network", "none", "--restart", "always:3", "busybox"}},
		{"restart on-failure negative", []string{"create", "--network", "none", "--restart", "on-failure:-1", "busybox"}},
		{"rm with restart", []string{"run", "--rm", "--restart", "always", "--network", "none", "busybox", "true"}},
		{"memory below 6MB", []string{"create", "--network", "none", "-m", "4m", "busybox"}},
		{"invalid stop signal", []string{"create", "--network", "none", "--stop-signal", "BOGUS", "busybox"}},
		{"kill invalid signal", []string{"kill", "-s", "BOGUS", "err-running"}},
		{"kill stopped container", []string{"kill", "err-stopped"}},
		{"exec in stopped container", []string{"exec", "err-stopped", "true"}},
		{"rename to existing name", []string{"rename", "err-stopped", "err-other"}},
		{"rename no such container", []string{"rename", "nosuchbox", "whatever"}},
		{"start running container", []string{"start", "err-running"}},
		{"pause stopped container", []string{"pause", "err-stopped"}},
		{"unpause running container", []string{"unpause", "err-running"}},
		{"invalid container name", []string{"create", "--network", "none", "--name", "bad/name", "busybox"}},
		{"exec missing binary", []string{"exec", "err-running", "/no/such"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p.compare(t, tc.args...)
		})
	}
	t.Run("host network", func(t *testing.T) {
		t.Skip("known difference: macro refuses --network host (and container:*, --pid/--ipc host) by design: " +
			"pods never share the host's namespaces (api/docker/translate.go); dockerd accepts it")
	})
}

func testLogs(t *testing.T, p *pair) {
	p.cleanupBoth(t, "logs-both")
	// stdout and stderr are two pipes: lines written to both at the same
	// moment reach the log in either order, in dockerd too. The pause
	// keeps the order the same for both engines.
	p.mustBoth(t, "run", "--network", "none", "--name", "logs-both", "busybox", "sh", "-c",
		"echo out1; echo err1 >&2; sleep 0.3; echo out2; printf 'no newline'")
	for _, tc := range [][]string{
		{"logs", "logs-both"},
		{"logs", "--tail", "1", "logs-both"},
		{"logs", "--tail", "0", "logs-both"},
		{"logs", "-t", "logs-both"},
		{"logs", "--since", "1h", "logs-both"},
	} {
		t.Run(strings.Join(tc[1:], " "), func(t *testing.T) {
			p.compare(t, tc...)
		})
	}
}

func testTop(t *testing.T, p *pair) {
	p.cleanupBoth(t, "top-box")
	p.mustBoth(t, "run", "-d", "--network", "none", "--name", "top-box", "busybox", "sleep", "1000")
	d := newDiffs(t)
	for _, args := range [][]string{{"top", "top-box"}, {"top", "top-box", "-o", "pid,comm"}} {
		r, m := p.both(t, args...)
		d.equal(strings.Join(args, " ")+": exit code", r.ExitCode, m.ExitCode)
		d.equal(strings.Join(args, " ")+": titles", titles(r.Stdout), titles(m.Stdout))
		d.equal(strings.Join(args, " ")+": last column", lastColumn(r.Stdout), lastColumn(m.Stdout))
		d.equal(strings.Join(args, " ")+": stderr", r.Stderr, m.Stderr)
	}
	d.done()
}

func titles(out string) []string {
	lines := strings.SplitN(out, "\n", 2)
	return strings.Fields(lines[0])
}

func lastColumn(out string) []string {
	var cmds []string
	for i, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(l); i > 0 && len(f) > 0 {
			cmds = append(cmds, f[len(f)-1])
		}
	}
	return cmds
}

func testDiff(t *testing.T, p *pair) {
	p.cleanupBoth(t, "diff-box")
	p.mustBoth(t, "run", "--network", "none", "--name", "diff-box", "busybox", "sh", "-c",
		"mkdir -p /newdir/sub && echo x > /newdir/sub/f && rm /etc/group && echo more >> /etc/passwd && rm /bin/vi && touch /tmp/t")
	d := newDiffs(t)
	r, m := p.both(t, "diff", "diff-box")
	d.equal("exit code", r.ExitCode, m.ExitCode)
	d.equal("docker diff (sorted)", sortedLines(r.Stdout), sortedLines(m.Stdout))
	// The order is not compared: dockerd prints the changes in the order
	// of its walk of the layer (readdir order), which means nothing.
	d.equal("stderr", r.Stderr, m.Stderr)
	d.done()
}

func sortedLines(s string) []string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	sort.Strings(l)
	return l
}

func testCp(t *testing.T, p *pair) {
	p.cleanupBoth(t, "cp-box")
	p.mustBoth(t, "create", "--network", "none", "--name", "cp-box", "busybox", "true")
	dir := t.TempDir()
	src := filepath.Join(dir, "up.txt")
	if err := os.WriteFile(src, []byte("from host\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	d := newDiffs(t)
	r, m := p.both(t, "cp", src, "cp-box:/tmp/up.txt")
	d.result(p, "docker cp up.txt cp-box:/tmp/up.txt", r, m)
	refOut, macOut := filepath.Join(dir, "ref.txt"), filepath.Join(dir, "mac.txt")
	r = runOne(t, p.ref, "cp", "cp-box:/tmp/up.txt", refOut)
	m = runOne(t, p.mac, "cp", "cp-box:/tmp/up.txt", macOut)
	d.result(p, "docker cp cp-box:/tmp/up.txt OUT", r, m)
	rb, _ := os.ReadFile(refOut)
	mb, _ := os.ReadFile(macOut)
	d.equal("content copied back", string(rb), string(mb))
	rs, re := os.Stat(refOut)
	ms, me := os.Stat(macOut)
	if re == nil && me == nil {
		d.equal("mode copied back", rs.Mode().String(), ms.Mode().String())
	}
	// A tar stream to standard output: names, modes, sizes, owners.
	r, m = p.both(t, "cp", "cp-box:/etc/passwd", "-")
	d.equal("cp to stdout: exit code", r.ExitCode, m.ExitCode)
	t.Logf("cp to stdout: tar entries: dockerd %q, macro %q", tarList(t, r.Stdout), tarList(t, m.Stdout))
	d.equal("cp to stdout: entries", tarList(t, r.Stdout), tarList(t, m.Stdout))
	// A missing path.
	r, m = p.both(t, "cp", "cp-box:/no/such", dir)
	d.result(p, "docker cp cp-box:/no/such DIR", r, m)
	// A directory.
	r, m = p.both(t, "cp", "cp-box:/home", "-")
	d.equal("cp dir to stdout: entries", tarList(t, r.Stdout), tarList(t, m.Stdout))
	d.done()
}

func testWait(t *testing.T, p *pair) {
	p.cleanupBoth(t, "wait-box", "wait-created")
	p.mustBoth(t, "run", "-d", "--network", "none", "--name", "wait-box", "busybox", "sh", "-c", "sleep 0.2; exit 5")
	p.mustBoth(t, "create", "--network", "none", "--name", "wait-created", "busybox", "true")
	t.Run("exit code", func(t *testing.T) { p.compare(t, "wait", "wait-box") })
	t.Run("again after exit", func(t *testing.T) { p.compare(t, "wait", "wait-box") })
	t.Run("no such container", func(t *testing.T) { p.compare(t, "wait", "nosuchbox") })
}

// testKill checks that a kill with any signal is a manual stop: no restart
// whatever the policy, the process deciding whether it exits. (docker stop
// --signal needs API 1.42, newer than the reference: e2e tests it.)
func testKill(t *testing.T, p *pair) {
	p.cleanupBoth(t, "kill-term", "kill-hup")
	loop := `i=0; while [ $i -lt 20 ]; do sleep 0.1; i=$((i+1)); done; exit 5`
	p.mustBoth(t, "run", "-d", "--network", "none", "--restart", "always", "--name", "kill-term", "busybox", "sh", "-c", `trap "exit 3" TERM; while true; do sleep 0.1; done`)
	p.mustBoth(t, "run", "-d", "--network", "none", "--restart", "always", "--name", "kill-hup", "busybox", "sh", "-c", `trap "echo hup" HUP; `+loop)
	p.mustBoth(t, "kill", "-s", "TERM", "kill-term")
	p.mustBoth(t, "kill", "-s", "HUP", "kill-hup")
	d := newDiffs(t)
	for _, name := range []string{"kill-term", "kill-hup"} {
		r, m := p.mustBoth(t, "wait", name)
		d.equal("wait "+name, r, m)
	}
	// Long enough for a restart by policy (its first back-off is 100 ms)
	// to show in both daemons if either made one.
	time.Sleep(time.Second)
	for _, name := range []string{"kill-term", "kill-hup"} {
		r, m := p.mustBoth(t, "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}} {{.RestartCount}}", name)
		d.equal("state of "+name, r, m)
	}
	r, m := p.mustBoth(t, "logs", "kill-hup")
	d.equal("logs kill-hup", r, m)
	d.done()
}

func testEvents(t *testing.T, p *pair) {
	since := time.Now().Add(-time.Second).Unix()
	p.mustBoth(t, "run", "--rm", "--network", "none", "--name", "ev-run", "busybox", "true")
	p.cleanupBoth(t, "ev-kill")
	p.mustBoth(t, "create", "--network", "none", "--name", "ev-kill", "busybox", "sleep", "1000")
	p.mustBoth(t, "start", "ev-kill")
	p.mustBoth(t, "kill", "ev-kill")
	p.mustBoth(t, "rm", "ev-kill")
	until := time.Now().Add(time.Second).Unix()
	format := "{{.Type}} {{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.image}} {{.Actor.Attributes.exitCode}} {{.Actor.Attributes.signal}}"
	for _, tc := range []struct{ name, filter string }{
		{"run --rm", "container=ev-run"},
		{"create start kill rm", "container=ev-kill"},
		{"container filter is a name prefix", "container=ev-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p.compare(t, "events", "--since", fmt.Sprint(since), "--until", fmt.Sprint(until), "--filter", tc.filter, "--format", format)
		})
	}
}
