package store

// Join tokens: what admits a server or a node into the cluster.
//
// Keys:
//
//	/macro/jointokens/<id>   types.JoinToken (the secret's hash only)

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/macro-cloud/macro/types"
)

func joinTokenKey(id string) string { return prefix + "jointokens/" + id }

// CreateJoinToken stores a join token; ErrExists when its ID is taken.
func (s *Store) CreateJoinToken(ctx context.Context, t *types.JoinToken) error {
	if keyPart("join token", t.ID) != nil || t.Hash == "" || (t.Kind != types.JoinServer && t.Kind != types.JoinNode) {
		return errors.New("create join token: id, hash and a kind (server or node) are required")
	}
	if err := s.createJSON(ctx, joinTokenKey(t.ID), t); err != nil {
		return fmt.Errorf("create join token: %w", err)
	}
	return nil
}

// JoinToken reads one join token by ID; ErrNotFound when there is none.
func (s *Store) JoinToken(ctx context.Context, id string) (types.JoinToken, error) {
	var t types.JoinToken
	if keyPart("join token", id) != nil {
		return t, ErrNotFound
	}
	_, err := s.getJSON(ctx, joinTokenKey(id), &t)
	return t, err
}

// JoinTokens lists every join token, oldest first.
func (s *Store) JoinTokens(ctx context.Context) ([]types.JoinToken, error) {
	ts, err := listJSON[types.JoinToken](ctx, s, prefix+"jointokens/")
	if err != nil {
		return nil, fmt.Errorf("list join tokens: %w", err)
	}
	sort.Slice(ts, func(i, j int) bool {
		if !ts[i].Created.Equal(ts[j].Created) {
			return ts[i].Created.Before(ts[j].Created)
		}
		return ts[i].ID < ts[j].ID
	})
	return ts, nil
}

// DeleteJoinToken removes a join token; ErrNotFound when there is none.
func (s *Store) DeleteJoinToken(ctx context.Context, id string) error {
	if keyPart("join token", id) != nil {
		return ErrNotFound
	}
	resp, err := s.cli.Delete(ctx, joinTokenKey(id))
	if err != nil {
		return fmt.Errorf("delete join token: %w", err)
	}
	if resp.Deleted == 0 {
		return ErrNotFound
	}
	return nil
}
