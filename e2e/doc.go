// Package e2e holds the end-to-end tests of the single-machine cloud: they
// start a real `macro server` (embedded etcd, runc, runsc) and drive it with
// the real docker CLI, as a user would.
package e2e
