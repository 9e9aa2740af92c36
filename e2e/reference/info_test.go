package reference

import (
	"encoding/json"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
)

// infoFieldsOnlyDockerd are the fields of the Engine API's GET /info that
// dockerd answers and macro does not, and why.
var infoFieldsOnlyDockerd = map[string]string{}

// testInfo compares docker info. Both daemons run on this machine and
// macro's only node is this machine, so the CPUs and memory that macro
// sums over its ready nodes are dockerd's. macro answers every field
// dockerd does, with the same JSON type, and the docker CLI prints
// macro's answer without an error.
func testInfo(t *testing.T, p *pair) {
	ref, mac := rawInfo(t, p.dockerd.Client()), rawInfo(t, p.macro.Client())
	d := newDiffs(t)
	for _, k := range []string{"NCPU", "MemTotal", "OSType", "Architecture"} {
		d.equal("GET /info: "+k, ref[k], mac[k])
	}
	var missing, types []string
	for k, rv := range ref {
		mv, ok := mac[k]
		switch {
		case !ok:
			if _, known := infoFieldsOnlyDockerd[k]; !known {
				missing = append(missing, k)
			}
		case rv != nil && mv != nil && jsonType(rv) != jsonType(mv):
			types = append(types, k+": dockerd "+jsonType(rv)+", macro "+jsonType(mv))
		}
	}
	sort.Strings(missing)
	sort.Strings(types)
	d.equal("GET /info: fields dockerd answers and macro does not", []string(nil), missing)
	d.equal("GET /info: fields of another JSON type", []string(nil), types)
	r := runOne(t, p.mac, "info")
	if r.ExitCode != 0 || strings.Contains(r.Stderr, "error") {
		d.addf("docker info against macro: exit %d\n%s", r.ExitCode, r.Stderr)
	}
	if !strings.Contains(r.Stdout, "\n Nodes: 1 (1 ready)\n") {
		d.addf("docker info against macro does not print its node: %s", r.Stdout)
	}
	d.done()
}

func rawInfo(t *testing.T, c *http.Client) map[string]any {
	t.Helper()
	resp, err := c.Get("http://docker/info")
	if err != nil {
		t.Fatalf("GET /info: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /info: %d %v %s", resp.StatusCode, err, b)
	}
	return m
}

func jsonType(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "bool"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return "null"
}
