package agent

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/macro-cloud/macro/types"
	"github.com/macro-cloud/macro/volume/volfs"
)

// handlerTransport serves requests with a handler, as a server would.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

// TestResendUnderNewEpoch: a write that replicas refused because the
// leader moved the volume's epoch (a lost replica replaced) while this
// node stays primary goes again, with its number, to the replicas in sync
// under the new epoch, and counts; a replica that is no longer in sync
// needs no mark. When the epoch did not move, or another node is primary
// now, nothing is sent again.
func TestResendUnderNewEpoch(t *testing.T) {
	var mu sync.Mutex
	route := volfs.Route{Primary: "n3", Epoch: 2, InSync: []string{"n4"}, Others: []string{"n5"}}
	var got []string
	srv := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")
		switch {
		case r.Host == "volfs" && len(parts) == 3 && parts[2] == "route":
			json.NewEncoder(w).Encode(route)
		case r.Host == "volrep" && len(parts) == 4:
			if ep := r.Header.Get(volfs.HeaderEpoch); ep != fmt.Sprint(route.Epoch) {
				http.Error(w, "epoch "+ep+" is over", http.StatusConflict)
				return
			}
			got = append(got, parts[2]+" epoch "+r.Header.Get(volfs.HeaderEpoch)+" seq "+r.Header.Get(volfs.HeaderSeq))
			json.NewEncoder(w).Encode(volfs.Reply{})
		default:
			http.NotFound(w, r)
		}
	})
	a := &Agent{cfg: Config{Node: types.Node{Name: "n3"}, VolumeTransport: func() http.RoundTripper { return handlerTransport{srv} }}, log: slog.New(slog.DiscardHandler)}
	write := httptest.NewRequest("POST", "/volfs/default/ha/op", nil)
	body := &spooled{b: []byte(`{"op":"mkdir","path":"d"}`)}
	send := func(seq uint64) func(string, int64) error {
		return func(rep string, epoch int64) error { return a.sendWrite(write, rep, "default", "ha", epoch, seq, body) }
	}

	failed, copies, rt := a.resendUnderNewEpoch("default", "ha", volfs.Route{Primary: "n3", Epoch: 1, InSync: []string{"n2", "n4"}}, 7, send(7), []string{"n2", "n4"}, 1)
	if fmt.Sprint(failed, copies, rt.Epoch, got) != "[] 2 2 [n4 epoch 2 seq 7]" {
		t.Fatalf("after a replacement: failed %v, on %d copies, epoch %d, sent %v", failed, copies, rt.Epoch, got)
	}

	got = nil
	failed, copies, rt = a.resendUnderNewEpoch("default", "ha", volfs.Route{Primary: "n3", Epoch: 2, InSync: []string{"n4"}}, 8, send(8), []string{"n4"}, 1)
	if fmt.Sprint(failed, copies, rt.Epoch, got) != "[n4] 1 2 []" {
		t.Fatalf("the same epoch: failed %v, on %d copies, epoch %d, sent %v", failed, copies, rt.Epoch, got)
	}

	route = volfs.Route{Primary: "n4", Epoch: 3, InSync: []string{"n5"}}
	failed, copies, rt = a.resendUnderNewEpoch("default", "ha", volfs.Route{Primary: "n3", Epoch: 2, InSync: []string{"n4"}}, 8, send(8), []string{"n4"}, 1)
	if fmt.Sprint(failed, copies, rt.Epoch, got) != "[n4] 1 2 []" {
		t.Fatalf("deposed: failed %v, on %d copies, epoch %d, sent %v", failed, copies, rt.Epoch, got)
	}
}
