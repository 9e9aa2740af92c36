package docker

import (
	"testing"

	"github.com/macro-cloud/macro/types"
)

// TestDegraded: inspect says how many copies of a replicated volume are in
// sync when fewer than its redundancy asks for, and nothing otherwise.
func TestDegraded(t *testing.T) {
	rep := func(node, state string) types.VolumeReplica { return types.VolumeReplica{Node: node, State: state} }
	for _, c := range []struct {
		name string
		v    types.Volume
		want string
	}{
		{"all in sync", types.Volume{Driver: "gfs", Replicas: []types.VolumeReplica{rep("b", "in-sync"), rep("c", "in-sync")}}, ""},
		{"a replica lost, none to replace it", types.Volume{Driver: "gfs", Replicas: []types.VolumeReplica{rep("b", "in-sync"), rep("c", "stale")}}, "2 of 3 copies in sync"},
		{"a new replica filling itself", types.Volume{Driver: "nfs", Replicas: []types.VolumeReplica{rep("b", "syncing"), rep("c", "catching-up")}}, "1 of 3 copies in sync"},
		{"reduced", types.Volume{Driver: "nfs", Options: map[string]string{"redundancy": "reduced"}, Replicas: []types.VolumeReplica{rep("b", "in-sync")}}, ""},
		{"reduced, its replica stale", types.Volume{Driver: "nfs", Options: map[string]string{"redundancy": "reduced"}, Replicas: []types.VolumeReplica{rep("b", "stale")}}, "1 of 2 copies in sync"},
		{"made on one node: no replicas", types.Volume{Driver: "nfs"}, ""},
		{"made on one node, to get replicas, bound directly", types.Volume{Driver: "nfs", Replicating: true, DirectPods: []string{"db", "web"}},
			"1 of 3 copies in sync: replicas are added once no container binds it directly; restart db, web"},
		{"made on one node, to get replicas, a WebDAV request", types.Volume{Driver: "gfs", Replicating: true, DirectPods: []string{"WebDAV/S3"}},
			"1 of 3 copies in sync: replicas are added once the WebDAV/S3 requests that use it directly end"},
		{"made on one node, its first replica coming", types.Volume{Driver: "nfs", Replicating: true},
			"1 of 3 copies in sync: its first replica is being added"},
		{"made on one node, its first replica filling", types.Volume{Driver: "nfs", Replicating: true, Replicas: []types.VolumeReplica{rep("b", "syncing")}},
			"1 of 3 copies in sync"},
	} {
		if got := degraded(c.v); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}
