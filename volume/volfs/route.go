package volfs

import (
	"net/http"
	"strconv"
	"strings"
)

// Route is where a volume's operations go: its primary, the epoch of that
// primary, and its replicas by state. A server sends it to the primary
// with each request (SetRoute, RouteOf).
type Route struct {
	Primary string `json:"primary"`
	Epoch   int64  `json:"epoch"`
	// InSync are the replicas that have every acknowledged write: the
	// primary sends each write to them. Others are stale or catching up.
	InSync []string `json:"inSync,omitempty"`
	Others []string `json:"others,omitempty"`
}

// Replicated tells whether the volume has replicas at all (then every
// acknowledged write must be on two nodes).
func (r Route) Replicated() bool { return len(r.InSync)+len(r.Others) > 0 }

// Headers of the replication: the route a server sends the primary with
// each request, and the epoch and sequence number of a write the primary
// sends a replica.
const (
	HeaderPrimary  = "X-Volfs-Primary"
	HeaderEpoch    = "X-Volfs-Epoch"
	HeaderReplicas = "X-Volfs-Replicas" // in-sync replicas, comma-separated
	HeaderOthers   = "X-Volfs-Others"   // replicas that are not in sync
	HeaderSeq      = "X-Volfs-Seq"
)

// ClearRoute removes replication headers a caller sent.
func ClearRoute(h http.Header) {
	for _, k := range []string{HeaderPrimary, HeaderEpoch, HeaderReplicas, HeaderOthers, HeaderSeq} {
		h.Del(k)
	}
}

// SetRoute puts the route in h.
func SetRoute(h http.Header, rt Route) {
	h.Set(HeaderPrimary, rt.Primary)
	h.Set(HeaderEpoch, strconv.FormatInt(rt.Epoch, 10))
	h.Set(HeaderReplicas, strings.Join(rt.InSync, ","))
	h.Set(HeaderOthers, strings.Join(rt.Others, ","))
}

// RouteOf reads the route from h.
func RouteOf(h http.Header) Route {
	split := func(s string) []string {
		if s == "" {
			return nil
		}
		return strings.Split(s, ",")
	}
	ep, _ := strconv.ParseInt(h.Get(HeaderEpoch), 10, 64)
	return Route{Primary: h.Get(HeaderPrimary), Epoch: ep, InSync: split(h.Get(HeaderReplicas)), Others: split(h.Get(HeaderOthers))}
}
