package volume

import "github.com/macro-cloud/macro/types"

// QuotaSize is what a volume counts for in its tenant's volume quota
// (types.Quota.VolumeBytes): its size option, or types.DefaultVolumeSize
// without one (a local volume always: nothing bounds it).
func QuotaSize(v types.Volume) int64 {
	if v.Driver == "" || v.Driver == "local" {
		return types.DefaultVolumeSize
	}
	o, err := ParseOptions(v.Driver, v.Options)
	if err != nil || o.Size <= 0 {
		return types.DefaultVolumeSize
	}
	return o.Size
}
