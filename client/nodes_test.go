package client_test

import (
	"context"
	"errors"
	"testing"

	"github.com/macro-cloud/macro/client"
)

func TestNodes(t *testing.T) {
	s := newServer(t)
	ctx := context.Background()
	for _, c := range []struct {
		token string
		pods  map[string]int
	}{{"alice-token", map[string]int{"n1": 1, "n2": 0}}, {"bob-token", map[string]int{"n1": 0, "n2": 0}}} {
		list, err := newClient(t, s, c.token).Nodes(ctx)
		if err != nil || len(list) != 2 {
			t.Fatalf("Nodes = %+v, %v", list, err)
		}
		for _, n := range list {
			if n.Pods != c.pods[n.Name] || n.Ready != (n.Name == "n1") || n.Zone == "" || n.CPUs == 0 || n.MemoryBytes == 0 {
				t.Errorf("%s: node %+v", c.token, n)
			}
		}
	}
	if _, err := newClient(t, s, "nobody").Nodes(ctx); !errors.Is(err, client.ErrUnauthorized) {
		t.Errorf("Nodes with a refused token: %v", err)
	}
}
