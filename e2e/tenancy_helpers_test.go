package e2e

import "strings"

// newTenant makes a tenant with macro admin (createArgs are more flags of
// tenant create), a token, and client certificates; it returns the token
// and the certificates' directory.
func (c *tenantCloud) newTenant(name string, createArgs ...string) (token, certDir string) {
	c.t.Helper()
	c.mustAdmin(append([]string{"tenant", "create", name}, createArgs...)...)
	token = strings.TrimSpace(c.mustAdmin("token", "create", "--tenant", name))
	certDir, status, msg := c.certs(token)
	if certDir == "" {
		c.t.Fatalf("certs of %s: %d %s", name, status, msg)
	}
	return token, certDir
}

// mustDocker runs the docker CLI as the tenant of certDir and fails the
// test when it fails.
func (c *tenantCloud) mustDocker(certDir string, args ...string) string {
	c.t.Helper()
	r := c.docker(certDir, args...)
	if r.ExitCode != 0 {
		c.t.Fatalf("docker %s: exit %d\n%s", strings.Join(args, " "), r.ExitCode, r.Combined())
	}
	return strings.TrimSpace(r.Stdout)
}

// containers lists the names of the tenant's containers, running or not.
func (c *tenantCloud) containers(certDir string) []string {
	c.t.Helper()
	out := c.mustDocker(certDir, "ps", "-a", "--format", "{{.Names}}")
	if out == "" {
		return nil
	}
	return strings.Fields(out)
}
