package docker

import (
	"github.com/macro-cloud/macro/ingress"
)

// checkMacroLabels refuses a create whose labels for macro's own features
// (kr.ingress.*, kr.suspend) cannot be read, rather than let the feature
// ignore them later without a word.
func checkMacroLabels(labels map[string]string) error {
	// The cluster's domain does not matter for the syntax: any stands in.
	if _, _, err := ingress.ParseLabels("tenant", "domain.invalid", labels); err != nil {
		return badRequest("invalid ingress label: %v", err)
	}
	if _, err := ingress.ParseSuspend(labels, 0); err != nil {
		return badRequest("invalid suspend label: %v", err)
	}
	return nil
}
