package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/macro-cloud/macro/types"
)

func TestJoinTokens(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	now := time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC)
	a := types.JoinToken{ID: "00000000000000a1", Kind: types.JoinServer, Hash: "h1", Created: now.Add(time.Minute)}
	b := types.JoinToken{ID: "00000000000000b1", Kind: types.JoinNode, Hash: "h2", Created: now, Expires: now.Add(time.Hour)}
	for _, jt := range []types.JoinToken{a, b} {
		if err := s.CreateJoinToken(ctx, &jt); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateJoinToken(ctx, &a); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate: %v", err)
	}
	for _, bad := range []types.JoinToken{
		{ID: "x", Kind: "agent", Hash: "h"},
		{ID: "x", Kind: types.JoinNode},
		{ID: "a/b", Kind: types.JoinNode, Hash: "h"},
	} {
		if err := s.CreateJoinToken(ctx, &bad); err == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
	got, err := s.JoinToken(ctx, b.ID)
	if err != nil || got.Kind != types.JoinNode || !got.Expires.Equal(b.Expires) {
		t.Fatalf("get: %+v %v", got, err)
	}
	list, err := s.JoinTokens(ctx)
	if err != nil || len(list) != 2 || list[0].ID != b.ID || list[1].ID != a.ID {
		t.Fatalf("list: %+v %v", list, err)
	}
	if err := s.DeleteJoinToken(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{a.ID, "", "../x"} {
		if _, err := s.JoinToken(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("get %q: %v", id, err)
		}
		if err := s.DeleteJoinToken(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("delete %q: %v", id, err)
		}
	}
}
