package volfs

import (
	"net/http"
	"reflect"
	"testing"
)

// TestRouteHeaders: a route survives its headers, a caller's own headers
// are cleared, and a volume getting its first replica is replicated (its
// writes go through the sequence) with one copy enough until a replica is
// in sync.
func TestRouteHeaders(t *testing.T) {
	for _, c := range []struct {
		rt                  Route
		replicated, oneCopy bool
	}{
		{Route{Primary: "n1"}, false, false},
		{Route{Primary: "n1", Sequenced: true}, true, true},
		{Route{Primary: "n1", Epoch: 2, Others: []string{"n2"}, Sequenced: true}, true, true},
		{Route{Primary: "n1", Epoch: 2, InSync: []string{"n2"}, Others: []string{"n3"}, Sequenced: true}, true, false},
		{Route{Primary: "n1", Epoch: 3, InSync: []string{"n2", "n3"}}, true, false},
		{Route{Primary: "n1", Others: []string{"n2"}}, true, false},
	} {
		h := http.Header{}
		h.Set(HeaderSequenced, "1") // a caller's, cleared
		ClearRoute(h)
		SetRoute(h, c.rt)
		got := RouteOf(h)
		if !reflect.DeepEqual(got, c.rt) {
			t.Errorf("%+v: read back %+v", c.rt, got)
		}
		if got.Replicated() != c.replicated || got.OneCopyEnough() != c.oneCopy {
			t.Errorf("%+v: replicated %v, one copy enough %v", c.rt, got.Replicated(), got.OneCopyEnough())
		}
	}
}
