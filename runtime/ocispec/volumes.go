package ocispec

import (
	"fmt"
	"path"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// VolumeMount is a directory of the node bound into the container: a
// volume's data (or a sub-path of it) or, for the machine's own callers, a
// host path. The node resolved Source; the spec only binds it.
type VolumeMount struct {
	Source      string
	Destination string
	ReadOnly    bool
}

// volumeMounts are the binds of in.Volumes. A read-only rootfs leaves them
// writable, as Docker does.
func volumeMounts(in Input) ([]specs.Mount, error) {
	var out []specs.Mount
	for _, v := range in.Volumes {
		if !filepath.IsAbs(v.Source) {
			return nil, fmt.Errorf("volume source %q is not an absolute path", v.Source)
		}
		if !path.IsAbs(v.Destination) || path.Clean(v.Destination) == "/" {
			return nil, fmt.Errorf("invalid mount destination %q", v.Destination)
		}
		opts := []string{"rbind"}
		if v.ReadOnly {
			opts = append(opts, "ro")
		}
		opts = append(opts, "rprivate")
		out = append(out, specs.Mount{Destination: path.Clean(v.Destination), Type: "bind", Source: v.Source, Options: opts})
	}
	return out, nil
}
