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
	// Sequenced: the volume was made without replicas and is getting
	// its first (types.Volume.Replicating): its writes go through the
	// primary's write sequence, as a replicated volume's.
	Sequenced bool `json:"sequenced,omitempty"`
}

// Replicated tells whether the volume has replicas, or is getting its
// first: then every write goes through the primary's write sequence, and
// no pod or server writes its directory directly.
func (r Route) Replicated() bool { return r.Sequenced || len(r.InSync)+len(r.Others) > 0 }

// OneCopyEnough tells whether a write on the primary alone may be
// acknowledged: the volume is getting its first replica, none is in sync
// yet, so it has one copy as it had until now (no replica could be
// promoted without the write). Otherwise an acknowledged write is on two
// nodes.
func (r Route) OneCopyEnough() bool { return r.Sequenced && len(r.InSync) == 0 }

// Headers of the replication: the route a server sends the primary with
// each request, and the epoch and sequence number of a write the primary
// sends a replica.
const (
	HeaderPrimary  = "X-Volfs-Primary"
	HeaderEpoch    = "X-Volfs-Epoch"
	HeaderReplicas = "X-Volfs-Replicas" // in-sync replicas, comma-separated
	HeaderOthers   = "X-Volfs-Others"   // replicas that are not in sync
	HeaderSeq      = "X-Volfs-Seq"
	// HeaderSequenced is Route.Sequenced ("1").
	HeaderSequenced = "X-Volfs-Sequenced"
)

// ClearRoute removes replication headers a caller sent.
func ClearRoute(h http.Header) {
	for _, k := range []string{HeaderPrimary, HeaderEpoch, HeaderReplicas, HeaderOthers, HeaderSeq, HeaderSequenced} {
		h.Del(k)
	}
}

// SetRoute puts the route in h.
func SetRoute(h http.Header, rt Route) {
	h.Set(HeaderPrimary, rt.Primary)
	h.Set(HeaderEpoch, strconv.FormatInt(rt.Epoch, 10))
	h.Set(HeaderReplicas, strings.Join(rt.InSync, ","))
	h.Set(HeaderOthers, strings.Join(rt.Others, ","))
	if rt.Sequenced {
		h.Set(HeaderSequenced, "1")
	} else {
		h.Del(HeaderSequenced)
	}
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
	return Route{Primary: h.Get(HeaderPrimary), Epoch: ep, InSync: split(h.Get(HeaderReplicas)), Others: split(h.Get(HeaderOthers)), Sequenced: h.Get(HeaderSequenced) == "1"}
}
