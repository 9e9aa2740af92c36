package docker

import (
	"slices"
	"testing"
)

// TestRoutes checks that Routes lists what handle registered, once each,
// however often Handler is called.
func TestRoutes(t *testing.T) {
	s := New(Config{})
	s.Handler()
	routes := s.Routes()
	for _, want := range []string{"GET /containers/{id}/json", "POST /exec/{id}/start", "GET /images/{name...}", "GET /events", "/"} {
		if !slices.Contains(routes, want) {
			t.Errorf("Routes lacks %q: %q", want, routes)
		}
	}
	seen := map[string]bool{}
	for _, r := range routes {
		if seen[r] {
			t.Errorf("Routes lists %q twice", r)
		}
		seen[r] = true
	}
	if again := s.Routes(); !slices.Equal(again, routes) {
		t.Errorf("Routes changed between calls:\n%q\n%q", routes, again)
	}
}
