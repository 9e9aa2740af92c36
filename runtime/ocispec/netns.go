package ocispec

import specs "github.com/opencontainers/runtime-spec/specs-go"

// JoinNetns makes the container join the network namespace at path (one
// the node's network prepared, with the pod's interfaces in it) instead of
// getting a new one with loopback only. An empty path changes nothing.
func JoinNetns(s *specs.Spec, path string) {
	if path == "" || s.Linux == nil {
		return
	}
	for i, ns := range s.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			s.Linux.Namespaces[i].Path = path
			return
		}
	}
	s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: path})
}
