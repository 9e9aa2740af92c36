package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/macro-cloud/macro/api"
)

func TestPrintAdminNodes(t *testing.T) {
	var b bytes.Buffer
	err := printAdminNodes(&b, []api.AdminNode{
		{Node: api.Node{Name: "n1", Zone: "eu-1", Labels: map[string]string{"zone": "eu-1", "ssd": "yes", "gpu": "a10"}, Arch: "amd64", CPUs: 8, MemoryBytes: 16 << 30, Ready: true, Pods: 3},
			RequestedNanoCPUs: 25e8, RequestedMemoryBytes: 1536 << 20, Runtimes: []string{"sandbox", "gvisor"}},
		{Node: api.Node{Name: "n2", Arch: "arm64", CPUs: 2, MemoryBytes: 2 << 30}, Runtimes: []string{}},
	})
	want := `NAME   STATUS   ZONE   ARCH    CPUS    MEMORY           PODS   RUNTIMES         LABELS
n1     ready    eu-1   amd64   2.5/8   1.5GiB/16.0GiB   3      gvisor,sandbox   gpu=a10,ssd=yes
n2     down     -      arm64   0/2     0B/2.0GiB        0      -                -
`
	if err != nil || b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

func TestCPUsText(t *testing.T) {
	for _, c := range []struct {
		nano int64
		want string
	}{{0, "0"}, {1e9, "1"}, {15e8, "1.5"}, {25e7, "0.25"}, {1e6, "0"}, {123e7, "1.23"}, {16e9, "16"}} {
		if got := cpusText(c.nano); got != c.want {
			t.Errorf("cpusText(%d) = %q, want %q", c.nano, got, c.want)
		}
	}
}

func TestAdminNodesCommands(t *testing.T) {
	c := newAdminClient(adminServer(t))
	ctx := context.Background()
	run := func(words ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := runAdmin(ctx, c, words, adminOpts{}, &out, &errOut)
		return out.String(), err
	}
	if out, err := run("nodes", "ls"); err != nil || !strings.HasPrefix(out, "NAME ") || strings.Count(out, "\n") != 1 {
		t.Errorf("nodes ls without nodes: %q %v", out, err)
	}
	if _, err := run("nodes", "rm", "nope"); err == nil || err.Error() != `no node "nope"` {
		t.Errorf("nodes rm of an unknown node: %v", err)
	}
	for _, words := range [][]string{{"nodes"}, {"nodes", "rm"}, {"nodes", "frob"}, {"nodes", "ls", "x"}} {
		var ue usageError
		if _, err := run(words...); !errors.As(err, &ue) {
			t.Errorf("%q: %v, want a usage error", words, err)
		}
	}
}
