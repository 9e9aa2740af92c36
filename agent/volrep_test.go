package agent

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestIsWrite: what the primary replicates (mutating operations and
// write-backs, with their bodies kept to send again), and what it serves
// alone (reads), its body left for the handler.
func TestIsWrite(t *testing.T) {
	for _, c := range []struct {
		method, path, body string
		write              bool
	}{
		{"POST", "/volfs/t/v/op", `{"op":"mkdir","path":"d"}`, true},
		{"POST", "/volfs/t/v/op", `{"op":"rename","path":"a","to":"b"}`, true},
		{"POST", "/volfs/t/v/op", `{"op":"setattr","path":"a","set":{}}`, true},
		{"POST", "/volfs/t/v/op", `{"op":"stat","path":"a"}`, false},
		{"POST", "/volfs/t/v/op", `{"op":"readdir","path":""}`, false},
		{"POST", "/volfs/t/v/op", `not json`, false},
		{"PUT", "/volfs/t/v/data?path=f", "contents", true},
		{"GET", "/volfs/t/v/data?path=f", "", false},
	} {
		r := httptest.NewRequest(c.method, c.path, strings.NewReader(c.body))
		write, body, err := isWrite(r, t.TempDir())
		if err != nil || write != c.write {
			t.Errorf("%s %s %s: write %v, %v", c.method, c.path, c.body, write, err)
			continue
		}
		var got []byte
		if write {
			got, _ = io.ReadAll(body.reader())
			again, _ := io.ReadAll(body.reader())
			body.Close()
			if string(again) != string(got) {
				t.Errorf("%s: the body read twice differs", c.body)
			}
		} else {
			got, _ = io.ReadAll(r.Body)
		}
		if string(got) != c.body {
			t.Errorf("%s %s: body %q, want %q", c.method, c.path, got, c.body)
		}
	}
}
