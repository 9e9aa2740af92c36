package nodeproto

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/macro-cloud/macro/types"
)

// tenantsBackend follows a fixed set of tenants' settings.
type tenantsBackend struct {
	Backend
	msgs []types.TenantNets
}

func (b *tenantsBackend) FollowTenantNets(ctx context.Context) <-chan types.TenantNets {
	ch := make(chan types.TenantNets, len(b.msgs))
	for _, m := range b.msgs {
		ch <- m
	}
	go func() { <-ctx.Done(); close(ch) }()
	return ch
}

// TestTenantsStreamKeyed: a node gets the tenants' settings with their
// names keyed: no name crosses, and the name of a tenant the node knows
// (from its pods) is found under the stream's key.
func TestTenantsStreamKeyed(t *testing.T) {
	be := &tenantsBackend{msgs: []types.TenantNets{
		{Sync: true, Tenants: []types.TenantNet{{Name: "acme-corp", NoEgress: true}, {Name: "globex"}}},
		{Tenants: []types.TenantNet{{Name: "globex", NoEgress: true}}},
	}}
	cli := openClient(t, be)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	msgs := cli.FollowTenantNets(ctx)
	var got []types.TenantNets
	for len(got) < 2 {
		select {
		case m := <-msgs:
			got = append(got, m)
		case <-ctx.Done():
			t.Fatalf("%d messages of 2", len(got))
		}
	}
	key := got[0].Key
	if len(key) != 16 || !got[0].Sync || len(got[0].Tenants) != 2 {
		t.Fatalf("first message: %+v", got[0])
	}
	for _, m := range got {
		for _, tn := range m.Tenants {
			if strings.Contains(tn.Name, "acme") || strings.Contains(tn.Name, "globex") {
				t.Fatalf("a tenant's name crossed: %q", tn.Name)
			}
		}
	}
	if n := got[0].Tenants[0]; n.Name != KeyedName(key, "acme-corp") || !n.NoEgress {
		t.Fatalf("acme-corp is not found under the stream's key: %+v", n)
	}
	if n := got[1].Tenants[0]; n.Name != KeyedName(key, "globex") || !n.NoEgress {
		t.Fatalf("globex's change is not found under the stream's key: %+v", n)
	}
	if KeyedName(key, "acme-corp") == KeyedName(make([]byte, 16), "acme-corp") {
		t.Fatal("the key does not change the keyed name")
	}
}
