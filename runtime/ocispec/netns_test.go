package ocispec

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestJoinNetns(t *testing.T) {
	s := &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.MountNamespace}, {Type: specs.NetworkNamespace}}}}
	JoinNetns(s, "")
	if s.Linux.Namespaces[1].Path != "" {
		t.Fatalf("empty path changed the spec")
	}
	JoinNetns(s, "/x/ns/pod")
	if len(s.Linux.Namespaces) != 2 || s.Linux.Namespaces[1] != (specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: "/x/ns/pod"}) {
		t.Fatalf("%+v", s.Linux.Namespaces)
	}
}
