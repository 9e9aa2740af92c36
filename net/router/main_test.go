package router

import (
	"os"
	"testing"
)

// TestMain lets the test binary be the mesh's device process: a router
// of these tests starts it as `router.test mesh-device STATEDIR` (this
// binary, MeshDeviceCommand), as a node starts `macro mesh-device`.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == MeshDeviceCommand {
		os.Exit(MeshDeviceMain(os.Args[2:]))
	}
	os.Exit(m.Run())
}
