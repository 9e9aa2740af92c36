// Package types holds the plain resource types that every other package
// shares: pods, nodes and events. It imports nothing of the project, so the
// arrows of the dependency graph all point here. One file per resource.
package types
