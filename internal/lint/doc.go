// Package lint holds tests that check the project's own conventions across
// every package, such as a doc comment on each (as Tailscale's pkgdoc test).
package lint
