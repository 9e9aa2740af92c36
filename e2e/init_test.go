package e2e

import (
	"os"
	"strings"
	"testing"
)

// TestInit runs a pod with --init: tini is PID 1 and reaps for the command.
func TestInit(t *testing.T) {
	if _, err := os.Stat("/usr/bin/tini-static"); err != nil {
		t.Skip("tini-static is not installed (scripts/setup.sh installs it)")
	}
	c := newCloud(t)
	out := c.must("run", "--rm", "--init", "busybox", "cat", "/proc/1/cmdline")
	if !strings.HasPrefix(out, "/sbin/docker-init\x00--\x00cat") {
		t.Fatalf("PID 1 is %q, want docker-init", out)
	}
	if r := c.docker("run", "--rm", "--init", "busybox", "sh", "-c", "exit 6"); r.ExitCode != 6 {
		t.Fatalf("exit code through tini: %d", r.ExitCode)
	}
}
