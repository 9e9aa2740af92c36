package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/macro-cloud/macro/auth"
)

func TestAdminJoinTokens(t *testing.T) {
	dir := adminServer(t)
	c := newAdminClient(dir)
	ctx := context.Background()
	run := func(ttl string, words ...string) (string, string, error) {
		var out, errOut bytes.Buffer
		err := runAdmin(ctx, c, words, adminOpts{ttl: ttl}, &out, &errOut)
		return out.String(), errOut.String(), err
	}
	out, errOut, err := run("24h", "join-token", "server")
	if err != nil {
		t.Fatal(err)
	}
	id, _, ok := auth.ParseJoinToken(strings.TrimSpace(out))
	if !ok || !strings.Contains(errOut, "--ca-hash sha256:") || !strings.Contains(errOut, "server join token "+id) {
		t.Fatalf("join-token server: %q %q", out, errOut)
	}
	if _, errOut, err := run("0", "join-token", "node"); err != nil || !strings.Contains(errOut, "never expires") {
		t.Fatalf("join-token node: %q %v", errOut, err)
	}
	for _, c := range []struct{ ttl, want string }{{"soon", `ttl "soon"`}, {"-1h", `ttl "-1h"`}} {
		if _, _, err := run(c.ttl, "join-token", "server"); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ttl %s: %v", c.ttl, err)
		}
	}
	if _, _, err := run("1h", "join-token", "agent"); err == nil {
		t.Error("join-token agent accepted")
	}
	out, _, err = run("", "join-token", "ls")
	if err != nil || !strings.Contains(out, id+"   server") || strings.Count(out, "\n") != 3 || !strings.Contains(out, "never") {
		t.Fatalf("ls: %q %v", out, err)
	}
	if out, _, err := run("", "join-token", "rm", id); err != nil || out != "join token "+id+" removed\n" {
		t.Fatalf("rm: %q %v", out, err)
	}
	if _, _, err := run("", "join-token", "rm", id); err == nil || !strings.Contains(err.Error(), "no join token") {
		t.Fatalf("rm again: %v", err)
	}
	if out, _, _ := run("", "join-token", "ls"); strings.Contains(out, id) {
		t.Fatalf("ls after rm: %q", out)
	}
}
