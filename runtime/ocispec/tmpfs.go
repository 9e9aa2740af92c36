package ocispec

import (
	"fmt"
	"strings"
)

// Flag keys of tmpfs options, so that an option and its opposite collide
// (later wins), as moby/sys/mount.MergeTmpfsOptions does.
const (
	keyRdonly = iota + 1
	keyNosuid
	keyNodev
	keyNoexec
	keySync
	keyDirsync
	keyMand
	keyNoatime
	keyNodiratime
	keyRelatime
	keyStrictatime
	keyPropagation
)

var tmpfsFlags = map[string]int{
	"ro": keyRdonly, "rw": keyRdonly,
	"nosuid": keyNosuid, "suid": keyNosuid,
	"nodev": keyNodev, "dev": keyNodev,
	"noexec": keyNoexec, "exec": keyNoexec,
	"sync": keySync, "async": keySync,
	"dirsync": keyDirsync,
	"mand":    keyMand, "nomand": keyMand,
	"noatime": keyNoatime, "atime": keyNoatime,
	"nodiratime": keyNodiratime, "diratime": keyNodiratime,
	"relatime": keyRelatime, "norelatime": keyRelatime,
	"strictatime": keyStrictatime, "nostrictatime": keyStrictatime,
	"private": keyPropagation, "rprivate": keyPropagation,
	"shared": keyPropagation, "rshared": keyPropagation,
	"slave": keyPropagation, "rslave": keyPropagation,
	"unbindable": keyPropagation, "runbindable": keyPropagation,
}

// tmpfsData are the tmpfs mount data keys Docker accepts, with a check of
// their value.
var tmpfsData = map[string]func(string) bool{
	"size":      func(v string) bool { return isMemSize(v, true) },
	"nr_blocks": func(v string) bool { return isMemSize(v, false) },
	"nr_inodes": func(v string) bool { return isMemSize(v, false) },
	"mode":      isOctal,
	"uid":       isDecimal,
	"gid":       isDecimal,
	"mpol":      isMpol,
}

// defaultTmpfsOptions are the options of every --tmpfs mount before the
// tenant's own, as Docker has them.
var defaultTmpfsOptions = []string{"noexec", "nosuid", "nodev", "rprivate"}

// ParseTmpfsOptions turns the option string of a tmpfs mount as `docker run
// --tmpfs /path:<options>` takes it ("size=64m,exec") into mount options:
// Docker's defaults (noexec, nosuid, nodev, rprivate) with the tenant's
// options merged over them, later options overriding earlier ones and their
// opposites. Options that would make the mount something other than a tmpfs
// (bind, rbind, remount) and malformed values are refused.
func ParseTmpfsOptions(data string) ([]string, error) {
	opts := append([]string(nil), defaultTmpfsOptions...)
	if data != "" {
		opts = append(opts, strings.Split(data, ",")...)
	}
	flagSeen := map[int]bool{}
	dataSeen := map[string]bool{}
	var out []string
	for i := len(opts) - 1; i >= 0; i-- {
		o := opts[i]
		if o == "defaults" {
			continue
		}
		if key, ok := tmpfsFlags[o]; ok {
			if !flagSeen[key] {
				out = append(out, o)
				flagSeen[key] = true
			}
			continue
		}
		k, v, ok := strings.Cut(o, "=")
		check := tmpfsData[k]
		if !ok || check == nil || !check(v) {
			return nil, fmt.Errorf("invalid tmpfs option %q", o)
		}
		if !dataSeen[k] {
			out = append(out, o)
			dataSeen[k] = true
		}
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

func isDecimal(v string) bool { return isDigits(v, 10) }

func isDigits(v string, max int) bool {
	if v == "" || len(v) > max {
		return false
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func isOctal(v string) bool {
	if v == "" || len(v) > 5 {
		return false
	}
	for _, c := range v {
		if c < '0' || c > '7' {
			return false
		}
	}
	return true
}

// isMemSize accepts what the kernel's memparse does for tmpfs: digits with
// an optional k, m, g, t, p or e suffix (any case), or a percentage of RAM.
func isMemSize(v string, percent bool) bool {
	if v == "" {
		return false
	}
	last := v[len(v)-1]
	switch {
	case strings.IndexByte("kKmMgGtTpPeE", last) >= 0:
		v = v[:len(v)-1]
	case last == '%' && percent:
		v = v[:len(v)-1]
	}
	return isDigits(v, 19)
}

// isMpol accepts the tmpfs memory policies: default, prefer:N, bind:LIST,
// interleave[:LIST], local, with an optional =static or =relative flag.
func isMpol(v string) bool {
	mode, nodes, hasNodes := strings.Cut(v, ":")
	mode, flag, hasFlag := strings.Cut(mode, "=")
	if hasFlag && flag != "static" && flag != "relative" {
		return false
	}
	switch mode {
	case "default", "local":
		if hasNodes {
			return false
		}
	case "prefer", "bind", "interleave":
	default:
		return false
	}
	if !hasNodes {
		return true
	}
	if nodes == "" || len(nodes) > 64 {
		return false
	}
	for _, c := range nodes {
		if (c < '0' || c > '9') && c != ',' && c != '-' {
			return false
		}
	}
	return true
}
