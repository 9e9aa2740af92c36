package router

import (
	"context"
	"fmt"
	"testing"

	"github.com/macro-cloud/macro/types"
)

// BenchmarkAttach times wiring one new pod (namespace, veth, addresses,
// routes, the nftables table replaced, DNS entry) with 0..N pods already
// attached, and its detach.
func BenchmarkAttach(b *testing.B) {
	if testing.Short() {
		b.Skip("real namespaces")
	}
	requireRoot(b)
	rp := openRouter(b, Config{})
	r := *rp
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		id := fmt.Sprintf("%064x", i+1)
		id = id[52:] + id[:52] // distinct first 12 digits: veth names
		p := types.Pod{ID: id, Tenant: "bench", Namespace: "ns", Name: fmt.Sprint("p", i)}
		if _, err := r.Attach(ctx, p); err != nil {
			b.Fatal(err)
		}
	}
}
