package sched

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/macro-cloud/macro/types"
)

// Labels the scheduler reads on pods.
const (
	// ZoneLabel (Kraud's convention) names the zone a pod must run in; it
	// is matched against the node label NodeZoneLabel.
	ZoneLabel = "kr.zone"
	// NodeZoneLabel is the node label naming the node's zone.
	NodeZoneLabel = "zone"
	// MemLabel (Kraud's convention) is the memory a pod needs ("512M",
	// "4G"), when it is larger than its --memory limit or there is none.
	MemLabel = "kr.res.mem"
	// ServiceLabel is docker compose's label naming a pod's service; the
	// replicas of one service (of one tenant and namespace) are spread
	// across nodes.
	ServiceLabel = "com.docker.compose.service"
)

// maxSize bounds a kr.res.mem value (1 PiB), so that sums of requests
// cannot overflow.
const maxSize = 1 << 50

// clampReq bounds a request read from a stored spec (docker's --memory or
// --cpus, any int64) so that subtracting it from a free amount never
// overflows.
const clampReq = 1 << 56

// Request is what a pod needs of a node: memory in bytes and CPU in
// billionths of a CPU.
type Request struct {
	MemoryBytes int64
	NanoCPUs    int64
}

// PodRequest is what the scheduler reserves for a pod: memory is the
// larger of its --memory limit and its kr.res.mem label; a pod with
// neither counts as types.DefaultPodMemory, as in the tenant's memory
// quota (types.PodMemory). CPU is its --cpus. A kr.res.mem that is not a
// size is an error that says so.
func PodRequest(spec types.PodSpec) (Request, error) {
	r := Request{MemoryBytes: types.PodMemory(spec), NanoCPUs: max(spec.Resources.NanoCPUs, 0)}
	if v, ok := spec.Labels[MemLabel]; ok {
		n, err := ParseSize(v)
		if err != nil {
			return Request{}, fmt.Errorf("label %s=%q: %w", MemLabel, v, err)
		}
		r.MemoryBytes = max(n, spec.Resources.MemoryBytes)
	}
	r.MemoryBytes = min(r.MemoryBytes, clampReq)
	r.NanoCPUs = min(r.NanoCPUs, clampReq)
	return r, nil
}

// PodMemory is the memory the scheduler reserves for a pod (PodRequest),
// or, when its kr.res.mem label is not a size, what it would reserve
// without the label. A tenant's memory quota should count the same.
func PodMemory(spec types.PodSpec) int64 { return placedRequest(spec).MemoryBytes }

// placedRequest is what a pod already on a node uses: its request, or,
// for a label that does not parse (written before it was checked), what
// it would use without the label.
func placedRequest(spec types.PodSpec) Request {
	r, err := PodRequest(spec)
	if err != nil {
		r = Request{MemoryBytes: min(types.PodMemory(spec), clampReq), NanoCPUs: min(max(spec.Resources.NanoCPUs, 0), clampReq)}
	}
	return r
}

var errSize = errors.New("want a size with a unit, such as 512M or 4G (binary units: K, M, G, T)")

// ParseSize reads a memory size as Kraud's kr.res.mem label writes it: a
// number with a binary unit, K, M, G or T, optionally followed by i and
// B, in either case ("512M", "4G", "1.5GiB", "256mb"). A bare number is
// refused (bytes or MiB? the writer should say), as are zero, signs,
// spaces, more than three decimals and sizes above 1 PiB.
func ParseSize(s string) (int64, error) {
	num, unit := s, ""
	if i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' }); i >= 0 {
		num, unit = s[:i], s[i:]
	}
	var shift uint
	switch strings.ToLower(unit) {
	case "k", "kb", "ki", "kib":
		shift = 10
	case "m", "mb", "mi", "mib":
		shift = 20
	case "g", "gb", "gi", "gib":
		shift = 30
	case "t", "tb", "ti", "tib":
		shift = 40
	default:
		return 0, errSize
	}
	whole, frac, dot := strings.Cut(num, ".")
	if whole == "" || (dot && (frac == "" || len(frac) > 3)) || strings.Contains(frac, ".") {
		return 0, errSize
	}
	w, err := strconv.ParseUint(whole, 10, 64)
	if err != nil || w > maxSize>>shift {
		return 0, fmt.Errorf("more than 1 PiB")
	}
	n := int64(w) << shift
	if frac != "" {
		f, err := strconv.ParseUint(frac, 10, 64)
		if err != nil {
			return 0, errSize
		}
		scale := uint64(1)
		for range frac {
			scale *= 10
		}
		n += int64((f << shift) / scale)
	}
	if n > maxSize {
		return 0, fmt.Errorf("more than 1 PiB")
	}
	if n <= 0 {
		return 0, errors.New("must be more than zero")
	}
	return n, nil
}

// humanBytes writes a size in binary units, with at most two decimals
// ("4 GiB", "1.5 GiB").
func humanBytes(b int64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	div, exp := int64(unit), 0
	for n := b / unit; n >= unit && exp < 5; n /= unit {
		div *= unit
		exp++
	}
	return trimDecimals(float64(b)/float64(div)) + " " + string("KMGTPE"[exp]) + "iB"
}

// humanCPUs writes a CPU count from billionths ("1 CPU", "0.5 CPUs").
func humanCPUs(nano int64) string {
	s := trimDecimals(float64(nano) / 1e9)
	if s == "1" {
		return "1 CPU"
	}
	return s + " CPUs"
}

func trimDecimals(v float64) string {
	s := strconv.FormatFloat(v, 'f', 2, 64)
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}
