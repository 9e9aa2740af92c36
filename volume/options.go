package volume

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Options are a volume's driver options (docker volume create -o,
// compose driver_opts), parsed.
//
//	size=10G            lv2: the filesystem's size (required); nfs, gfs: a
//	                    btrfs quota (writes past it fail with EDQUOT)
//	zone=Z              the zone of the node that holds the volume
//	snapshot=hourly     nfs, gfs: take a snapshot every hour (also daily,
//	                    weekly, off, or a Go duration of 1m or more: 30m);
//	                    nfs volumes are hourly unless told otherwise
//	snapshots.keep=24   nfs, gfs: how many automatic snapshots to keep (24)
//	redundancy=reduced  nfs, gfs: 2 copies on different nodes, not 3 (full)
type Options struct {
	Size  int64
	Zone  string
	Every time.Duration // 0: no automatic snapshots
	Keep  int
	// Reduced: redundancy=reduced (Kraud's "red" volumes).
	Reduced bool
}

// DefaultKeep is how many automatic snapshots a schedule keeps unless told.
const DefaultKeep = 24

// MinLV2Size is the smallest lv2 volume: ext4 needs room for its journal.
const MinLV2Size = 16 << 20

// Drivers are the names of the volume drivers, in the order docs list them.
var Drivers = []string{"local", "lv2", "nfs", "gfs"}

// ParseOptions checks a driver's name and its options, as a tenant gave
// them; the error says what is wrong in the tenant's words.
func ParseOptions(driver string, opts map[string]string) (Options, error) {
	var o Options
	keys := make([]string, 0, len(opts))
	for k := range opts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	switch driver {
	case "", "local":
		if len(keys) > 0 {
			return o, fmt.Errorf("local volume options are not supported (%s): they mount host devices and shares; use -o size with the lv2 or nfs driver", strings.Join(keys, ", "))
		}
		return o, nil
	case "lv2", "nfs", "gfs":
	default:
		return o, fmt.Errorf("unknown volume driver %q: use one of %s", driver, strings.Join(Drivers, ", "))
	}
	for _, k := range keys {
		v := opts[k]
		var err error
		switch k {
		case "size":
			o.Size, err = ParseSize(v)
		case "zone":
			if v == "" || len(v) > 63 || strings.ContainsAny(v, "/ \x00") {
				err = fmt.Errorf("invalid zone %q", v)
			}
			o.Zone = v
		case "snapshot", "snapshots":
			if driver == "lv2" {
				return o, fmt.Errorf("lv2 volumes have no snapshots (option %s): use an nfs or gfs volume", k)
			}
			o.Every, err = parseEvery(v)
		case "snapshots.keep", "snapshot.keep":
			if driver == "lv2" {
				return o, fmt.Errorf("lv2 volumes have no snapshots (option %s): use an nfs or gfs volume", k)
			}
			o.Keep, err = strconv.Atoi(v)
			if err != nil || o.Keep < 1 || o.Keep > 1000 {
				err = fmt.Errorf("want a number from 1 to 1000, not %q", v)
			}
		case "redundancy":
			if driver == "lv2" {
				return o, fmt.Errorf("lv2 volumes live on one node (option redundancy): use an nfs or gfs volume")
			}
			switch v {
			case "full":
			case "reduced":
				o.Reduced = true
			default:
				err = fmt.Errorf("want full (3 copies) or reduced (2), not %q", v)
			}
		default:
			return o, fmt.Errorf("unknown option %q for volume driver %s: known are size, zone, snapshot, snapshots.keep, redundancy", k, driver)
		}
		if err != nil {
			return o, fmt.Errorf("volume option %s: %w", k, err)
		}
	}
	if driver == "lv2" {
		if o.Size == 0 {
			return o, fmt.Errorf("an lv2 volume needs a size: -o size=10G")
		}
		if o.Size < MinLV2Size {
			return o, fmt.Errorf("volume option size: an lv2 volume has at least %dM", MinLV2Size>>20)
		}
	}
	if _, set := opts["snapshot"]; driver == "nfs" && !set {
		if _, set := opts["snapshots"]; !set {
			o.Every = time.Hour // nfs volumes snapshot themselves unless told not to
		}
	}
	if o.Every > 0 && o.Keep == 0 {
		o.Keep = DefaultKeep
	}
	return o, nil
}

// ParseSize reads a size: bytes, or a number with k, m, g, t (powers of
// 1024, as Docker's units.RAMInBytes), with an optional b or ib.
func ParseSize(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "b"), "i")
	mult := int64(1)
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'k':
			mult = 1 << 10
		case 'm':
			mult = 1 << 20
		case 'g':
			mult = 1 << 30
		case 't':
			mult = 1 << 40
		}
		if mult > 1 {
			t = t[:n-1]
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f <= 0 || math.IsInf(f, 0) || math.IsNaN(f) || f*float64(mult) > 1<<60 {
		return 0, fmt.Errorf("invalid size %q: want a size such as 512M or 10G", s)
	}
	return int64(f * float64(mult)), nil
}

func parseEvery(s string) (time.Duration, error) {
	switch s {
	case "off", "none", "":
		return 0, nil
	case "hourly":
		return time.Hour, nil
	case "daily":
		return 24 * time.Hour, nil
	case "weekly":
		return 7 * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < time.Minute {
		return 0, fmt.Errorf("want hourly, daily, weekly, off or a duration of 1m or more, not %q", s)
	}
	return d, nil
}
