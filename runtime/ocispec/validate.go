package ocispec

import (
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/macro-cloud/macro/types"
)

// MinMemory is Docker's smallest memory limit, 6 MiB.
const MinMemory = 6 << 20

// InvalidError is a tenant's mistake in a pod spec: an API answers it with
// 400 and its message, which is dockerd's for the same mistake.
type InvalidError struct{ Msg string }

func (e *InvalidError) Error() string { return e.Msg }

func invalid(format string, a ...any) error {
	return &InvalidError{Msg: fmt.Sprintf(format, a...)}
}

// IsInvalid reports whether err is (or wraps) an InvalidError.
func IsInvalid(err error) bool {
	var ie *InvalidError
	return errors.As(err, &ie)
}

// Validate checks what dockerd checks at create, with its messages: memory
// and swap limits, CPUs, pids, restart policy, AutoRemove, environment,
// working directory, stop signal and tmpfs mounts. Every error it returns
// is an *InvalidError. It does not check the CPU count against a machine:
// the scheduler places pods where they fit.
func Validate(spec types.PodSpec) error {
	r := spec.Resources
	switch {
	case r.MemoryBytes != 0 && r.MemoryBytes < MinMemory:
		return invalid("Minimum memory limit allowed is 6MB")
	case r.MemoryBytes > 0 && r.MemorySwapBytes > 0 && r.MemorySwapBytes < r.MemoryBytes:
		return invalid("Minimum memoryswap limit should be larger than memory limit, see usage")
	case r.MemoryBytes == 0 && r.MemorySwapBytes > 0:
		return invalid("You should always set the Memory limit when using Memoryswap limit, see usage")
	case r.MemorySwapBytes < -1:
		return invalid("invalid memory swap limit %d: use -1 for unlimited", r.MemorySwapBytes)
	// Quotas under 1ms per 100ms period (0.01 CPUs) are refused by the
	// kernel; dockerd lets runc fail on them, we refuse them up front.
	case r.NanoCPUs < 0 || (r.NanoCPUs > 0 && r.NanoCPUs < 1e7):
		return invalid("range of CPUs is from 0.01 to the number of CPUs available")
	case r.CPUShares < 0:
		return invalid("invalid CPU shares (%d): value must be a positive integer", r.CPUShares)
	}

	rp := spec.Restart
	switch rp.Policy {
	case "", "no", "always", "unless-stopped":
		if rp.MaxRetries != 0 {
			msg := "invalid restart policy: maximum retry count can only be used with 'on-failure'"
			if rp.MaxRetries < 0 {
				msg += " and cannot be negative"
			}
			return invalid("%s", msg)
		}
	case "on-failure":
		if rp.MaxRetries < 0 {
			return invalid("invalid restart policy: maximum retry count cannot be negative")
		}
	default:
		return invalid("invalid restart policy: unknown policy '%s'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'", rp.Policy)
	}
	if spec.AutoRemove && rp.Policy != "" && rp.Policy != "no" {
		return invalid("can't create 'AutoRemove' container with restart policy")
	}

	for _, e := range spec.Env {
		if k, _, _ := strings.Cut(e, "="); k == "" {
			return invalid("invalid environment variable: %s", e)
		}
	}
	if spec.WorkingDir != "" && !strings.HasPrefix(spec.WorkingDir, "/") {
		return invalid("the working directory '%s' is invalid, it needs to be an absolute path", spec.WorkingDir)
	}
	if spec.StopSignal != "" {
		if _, err := ParseSignal(spec.StopSignal); err != nil {
			return invalid("%s", err.Error())
		}
	}
	for dest, opts := range spec.Tmpfs {
		if !strings.HasPrefix(dest, "/") {
			return invalid("invalid mount path: '%s' mount path must be absolute", dest)
		}
		if path.Clean(dest) == "/" {
			return invalid("invalid specification: destination can't be '/'")
		}
		if _, err := ParseTmpfsOptions(opts); err != nil {
			return invalid("%s", err.Error())
		}
	}
	return nil
}
