package nodeproto

import (
	"context"
	"net/http"
	"net/url"

	"github.com/macro-cloud/macro/delta"
)

// A volume's data through the node's tunnel: the delta-sync engine's HTTP
// transport (delta.Serve) at /volume-data/{tenant}/{name}/{op}, so that a
// server moves a volume of a remote node (kra volume copy, export,
// import) with only the chunks the other end lacks crossing. The server
// checked the tenant's rights before; the node serves what it is asked.

// VolumeDataOps is what a node needs to serve its volumes' data (the
// agent does it; Ops that do not are answered 501).
type VolumeDataOps interface {
	VolumeData(ctx context.Context, tenant, name string) (*delta.TreeSource, *delta.TreeReceiver, error)
}

func (o *opsServer) volumeData(w http.ResponseWriter, r *http.Request) {
	vd, ok := o.ops.(VolumeDataOps)
	if !ok {
		writeJSONError(w, http.StatusNotImplemented, errString("this node serves no volume data"))
		return
	}
	src, recv, err := vd.VolumeData(r.Context(), r.PathValue("tenant"), r.PathValue("name"))
	if err != nil {
		writeJSONError(w, http.StatusConflict, err)
		return
	}
	delta.Serve(w, r, r.PathValue("op"), src, recv)
}

type errString string

func (e errString) Error() string { return string(e) }

// VolumeData is a volume of the node as a delta.Source and a
// delta.Receiver.
func (n *Remote) VolumeData(tenant, name string) *delta.Remote {
	return &delta.Remote{
		URL:    "http://node/volume-data/" + url.PathEscape(tenant) + "/" + url.PathEscape(name),
		Client: n.hc,
	}
}
