package sched

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestExplanationsGolden keeps what users read about pods that fit
// nowhere, over the benchmark's workload on clusters too small for it:
// each distinct reason with the number of pods that got it. Run with
// -update after a deliberate change and read the diff.
func TestExplanationsGolden(t *testing.T) {
	var b strings.Builder
	for _, tt := range []struct {
		pods, nodes, keep int
	}{
		{3000, 12, 12}, // full: the last pods meet full nodes
		{4000, 20, 9},  // half the cluster gone: zones, arm64 and gvisor run out
		{2000, 10, 3},  // three nodes left, one of them arm64, none not ready
	} {
		pods, nodes := workload(tt.pods, tt.nodes)
		plan := Place(pods, nodes[:tt.keep], nil)
		count := map[string]int{}
		for _, r := range plan.Unschedulable {
			count[r]++
		}
		reasons := make([]string, 0, len(count))
		for r := range count {
			reasons = append(reasons, r)
		}
		sort.Slice(reasons, func(i, j int) bool {
			a, b := reasons[i], reasons[j]
			return count[a] > count[b] || count[a] == count[b] && a < b
		})
		fmt.Fprintf(&b, "# %d pods onto %d of the %d nodes of workload(%d, %d): %d placed, %d explained\n",
			tt.pods, tt.keep, tt.nodes, tt.pods, tt.nodes, len(plan.Assign), len(plan.Unschedulable))
		for _, r := range reasons {
			fmt.Fprintf(&b, "%6d %s\n", count[r], r)
		}
	}
	golden := filepath.Join("testdata", "explanations.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to write it)", err)
	}
	if b.String() != string(want) {
		t.Errorf("explanations differ from %s (run with -update to accept):\n%s", golden, b.String())
	}
}
