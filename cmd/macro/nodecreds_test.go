package main

import (
	"context"
	"errors"
	"testing"

	"github.com/macro-cloud/macro/nodeproto"
	"github.com/macro-cloud/macro/store"
	"github.com/macro-cloud/macro/types"
)

// TestVolumeAdmit: which nodes the servers give a volume's data to. An
// lv2 or local volume goes to the node that holds it alone (a local
// volume's: the node of a container that mounts it, the first by name),
// never to a node whose pod names it elsewhere; an nfs or gfs volume to
// its primary, its replicas and the nodes of pods that mount it.
func TestVolumeAdmit(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, v := range []types.Volume{
		{Tenant: "t", Name: "fast", Driver: "lv2", Node: "n2"},
		{Tenant: "t", Name: "plain", Driver: "local"},
		{Tenant: "t", Name: "lonely", Driver: "local"},
		{Tenant: "t", Name: "shared", Driver: "gfs", Node: "n2", Replicas: []types.VolumeReplica{{Node: "n3", State: "in-sync"}}},
	} {
		if err := st.CreateVolume(ctx, &v); err != nil {
			t.Fatal(err)
		}
	}
	mount := func(vols ...string) types.PodSpec {
		var s types.PodSpec
		for _, v := range vols {
			s.Mounts = append(s.Mounts, types.Mount{Type: "volume", Source: v, Target: "/" + v})
		}
		return s
	}
	for _, p := range []types.Pod{
		{ID: "p1", Tenant: "t", Name: "p1", Node: "n3", Spec: mount("fast", "shared")},
		{ID: "p2", Tenant: "t", Name: "p2", Node: "n5", Spec: mount("plain")},
		{ID: "p3", Tenant: "t", Name: "p3", Node: "n4", Spec: mount("plain", "shared")},
	} {
		if err := st.CreatePod(ctx, &p); err != nil {
			t.Fatal(err)
		}
	}
	d := &volumeDirectory{st: st}
	for _, tc := range []struct {
		volume, node string
		ok           bool
	}{
		{"fast", "n2", true},
		{"fast", "n3", false}, // its pod names it, but it lives on n2
		{"fast", "n4", false},
		{"plain", "n4", true}, // the first node by name of its pods
		{"plain", "n5", false},
		{"lonely", "n2", false},
		{"shared", "n2", true},
		{"shared", "n3", true},
		{"shared", "n4", true},
		{"shared", "n5", false},
		{"nothing", "n2", false},
	} {
		err := d.Admit(ctx, "t", tc.volume, tc.node)
		if tc.ok && err != nil || !tc.ok && !errors.Is(err, nodeproto.ErrNoBusiness) {
			t.Errorf("volume %s to node %s: %v, want admitted %v", tc.volume, tc.node, err, tc.ok)
		}
	}
	for name, want := range map[string]string{"fast": "n2", "plain": "n4", "lonely": "", "shared": "n2"} {
		v, err := st.Volume(ctx, "t", name)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := volumeNode(ctx, st, v); err != nil || got != want {
			t.Errorf("the node of %s: %q %v, want %q", name, got, err, want)
		}
	}
}
