package main

import (
	"github.com/macro-cloud/macro/delta"
	"github.com/macro-cloud/macro/nodeproto"
)

// volumeNodes hands the native API the volume data of other nodes, through
// their tunnels to this server (kra volume copy, export and import of a
// volume that another node holds).
type volumeNodes struct {
	local    string
	hasAgent bool // this server runs the agent of node local
	tunnels  *nodeproto.Tunnels
}

func (v volumeNodes) RemoteVolume(node, tenant, name string) *delta.Remote {
	if node == "" || (v.hasAgent && node == v.local) {
		return nil
	}
	return v.tunnels.Remote(node).VolumeData(tenant, name)
}
