package docker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/macro-cloud/macro/store"
	"github.com/macro-cloud/macro/types"
)

// TestCreateFullNamespace: a create in a namespace whose /24 is full is
// refused with 503 and a message that says what to do; the pod is not
// stored, and the namespace has room again after a removal.
func TestCreateFullNamespace(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s := New(Config{Store: st})
	pod := func(i int) *types.Pod {
		return &types.Pod{ID: fmt.Sprintf("%064x", i+1), Name: fmt.Sprintf("p%d", i), Tenant: types.DefaultTenant, Namespace: "big"}
	}
	for i := range 253 {
		if err := s.createPod(ctx, pod(i), nil); err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
	}
	err = s.createPod(ctx, pod(253), nil)
	var ae *apiError
	if !errors.As(err, &ae) || ae.status != http.StatusServiceUnavailable || !strings.Contains(ae.msg, "no available IPv4 addresses in the default network of namespace big") {
		t.Fatalf("254th create: %#v", err)
	}
	if _, err := st.Pod(ctx, types.DefaultTenant, pod(253).ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("refused pod stored: %v", err)
	}
	if err := st.DeletePod(ctx, types.DefaultTenant, pod(3).ID); err != nil {
		t.Fatal(err)
	}
	p := pod(253)
	if err := s.createPod(ctx, p, nil); err != nil || p.VPC == nil || p.VPC.IPv4.As4()[3] != 5 {
		t.Fatalf("after a removal: %v %+v", err, p.VPC)
	}
}
