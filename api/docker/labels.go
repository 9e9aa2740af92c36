package docker

import (
	"github.com/macro-cloud/macro/ingress"
	"github.com/macro-cloud/macro/sched"
	"github.com/macro-cloud/macro/types"
)

// checkMacroLabels refuses a create whose labels for macro's own features
// (kr.ingress.*, kr.suspend, kr.res.mem) cannot be read, rather than let
// the feature ignore them later without a word (or, for kr.res.mem, leave
// the pod unschedulable for that reason).
func checkMacroLabels(labels map[string]string) error {
	// The cluster's domain does not matter for the syntax: any stands in.
	if _, _, err := ingress.ParseLabels("tenant", "domain.invalid", labels); err != nil {
		return badRequest("invalid ingress label: %v", err)
	}
	if _, err := ingress.ParseSuspend(labels, 0); err != nil {
		return badRequest("invalid suspend label: %v", err)
	}
	if _, err := sched.PodRequest(types.PodSpec{Labels: labels}); err != nil {
		return badRequest("invalid %v", err)
	}
	return nil
}
