package ingress

import (
	"fmt"
	"strings"
)

// ValidHost checks a host name as routes and custom domains need it:
// lower case DNS labels of letters, digits and inner hyphens, 253
// characters at most.
func ValidHost(host string) error {
	if host == "" || len(host) > 253 {
		return fmt.Errorf("%q is not a host name", host)
	}
	for _, l := range strings.Split(host, ".") {
		if !validLabel(l) {
			return fmt.Errorf("%q is not a DNS label", l)
		}
	}
	return nil
}
