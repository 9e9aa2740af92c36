package testenv

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/macro-cloud/macro/net/router"
	"github.com/macro-cloud/macro/types"
)

// A node network left behind as a killed server leaves it (router
// namespace, a pod's namespace and veth, the host's veth and nftables
// table): cleanupDataDir removes all of it.
func TestCleanupNodeNetwork(t *testing.T) {
	needRoot(t)
	dir, err := os.MkdirTemp("", dataDirPrefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cleanupDataDir(dir, true, t.Logf) })
	if err := writeOwner(dir); err != nil {
		t.Fatal(err)
	}
	netDir := filepath.Join(dir, "net")
	r, err := router.Open(context.Background(), router.Config{Dir: netDir, Cluster: "t"})
	if err != nil {
		t.Fatal(err)
	}
	att, err := r.Attach(context.Background(), types.Pod{ID: strings.Repeat("ab", 32), Tenant: "t", Namespace: "n", Name: "p"})
	if err != nil {
		t.Fatal(err)
	}
	r.Close() // as a killed process would: no Destroy
	hs := router.HostShareOf(netDir)
	exists := func() []string {
		var left []string
		if _, err := os.Stat(filepath.Join("/sys/class/net", hs.Link)); err == nil {
			left = append(left, "link "+hs.Link)
		}
		if out, _ := exec.Command("nft", "list", "tables", "inet").Output(); strings.Contains(string(out), " "+hs.NftTable+"\n") {
			left = append(left, "table "+hs.NftTable)
		}
		mps, _ := mountsUnder(dir)
		for _, mp := range mps {
			left = append(left, "mount "+mp)
		}
		return left
	}
	if left := exists(); len(left) != 4 {
		t.Fatalf("before cleanup: %v, want link, table and two namespace mounts (%s)", left, att.Netns)
	}
	if err := cleanupDataDir(dir, true, t.Logf); err != nil {
		t.Fatal(err)
	}
	if left := exists(); len(left) != 0 {
		t.Fatalf("left after cleanup: %v", left)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("data dir still there: %v", err)
	}
}
