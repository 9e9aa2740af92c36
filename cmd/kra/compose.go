package main

import (
	"path/filepath"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
)

// composeProject is a loaded compose project.
type composeProject struct{ *types.Project }

// files names the compose files, relative to the current directory when
// they are below it.
func (p *composeProject) files() string {
	wd, _ := filepath.Abs(".")
	var out []string
	for _, f := range p.ComposeFiles {
		if rel, err := filepath.Rel(wd, f); err == nil && !strings.HasPrefix(rel, "..") {
			f = rel
		}
		out = append(out, f)
	}
	return strings.Join(out, ", ")
}
