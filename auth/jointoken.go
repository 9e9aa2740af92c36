package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/macro-cloud/macro/store"
	"github.com/macro-cloud/macro/types"
)

// Join tokens read "kj_<id>_<secret>", with the id and secret shaped as an
// access token's; the store keeps only the SHA-256 of the secret.
const joinTokenPrefix = "kj_"

// Errors of CheckJoinToken. Each reads well on its own; callers answer
// them with 401 (ErrJoinTokenShape with 400 where they like).
var (
	ErrJoinTokenShape   = errors.New(`not a join token: it reads "kj_<id>_<secret>"; make one with macro admin join-token server|node`)
	ErrJoinTokenUnknown = errors.New("join token not valid: unknown or removed (macro admin join-token ls lists the valid ones)")
	ErrJoinTokenExpired = errors.New("join token expired: make a new one with macro admin join-token")
	ErrJoinTokenKind    = errors.New("join token of the wrong kind")
)

// NewJoinToken makes a join token of kind (types.JoinServer or
// types.JoinNode) that expires after ttl (0: never): the text to hand out
// once, and the record to store.
func NewJoinToken(kind string, ttl time.Duration, now time.Time) (string, types.JoinToken, error) {
	if kind != types.JoinServer && kind != types.JoinNode {
		return "", types.JoinToken{}, fmt.Errorf("join token kind %q: want server or node", kind)
	}
	if ttl < 0 {
		return "", types.JoinToken{}, fmt.Errorf("join token ttl %s: cannot be negative", ttl)
	}
	var b [8 + 32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", types.JoinToken{}, fmt.Errorf("new join token: %w", err)
	}
	id, secret := hex.EncodeToString(b[:8]), hex.EncodeToString(b[8:])
	t := types.JoinToken{ID: id, Kind: kind, Hash: HashSecret(secret), Created: now}
	if ttl > 0 {
		t.Expires = now.Add(ttl)
	}
	return joinTokenPrefix + id + "_" + secret, t, nil
}

// NodeCredentialID is the ID of the credential of node: one per name, so
// that the store refuses a second (ErrExists) at once.
func NodeCredentialID(node string) string {
	sum := sha256.Sum256([]byte("macro node credential\x00" + node))
	return hex.EncodeToString(sum[:tokenIDLen/2])
}

// NewNodeCredential makes the credential of node: a node token bound to
// it, with the ID NodeCredentialID(node), that never expires.
func NewNodeCredential(node string, now time.Time) (string, types.JoinToken, error) {
	if node == "" {
		return "", types.JoinToken{}, errors.New("node credential: no node name")
	}
	raw, t, err := NewJoinToken(types.JoinNode, 0, now)
	if err != nil {
		return "", t, err
	}
	_, secret, _ := ParseJoinToken(raw)
	t.ID, t.Node = NodeCredentialID(node), node
	return joinTokenPrefix + t.ID + "_" + secret, t, nil
}

// ParseJoinToken splits a join token into its id and secret; ok is false
// when it does not have the shape of one.
func ParseJoinToken(s string) (id, secret string, ok bool) {
	rest, ok := strings.CutPrefix(s, joinTokenPrefix)
	if !ok {
		return "", "", false
	}
	id, secret, ok = strings.Cut(rest, "_")
	if !ok || len(id) != tokenIDLen || len(secret) != tokenSecretLen || !isLowerHex(id) || !isLowerHex(secret) {
		return "", "", false
	}
	return id, secret, true
}

// CheckJoinToken returns the stored join token that token is, when it is
// valid for kind at this moment: the right shape, known to the store, the
// secret's hash equal (compared in constant time), not expired, of kind.
func CheckJoinToken(ctx context.Context, st *store.Store, kind, token string) (types.JoinToken, error) {
	return checkJoinToken(ctx, st, kind, token, time.Now())
}

func checkJoinToken(ctx context.Context, st *store.Store, kind, token string, now time.Time) (types.JoinToken, error) {
	id, secret, ok := ParseJoinToken(strings.TrimSpace(token))
	if !ok {
		return types.JoinToken{}, ErrJoinTokenShape
	}
	t, err := st.JoinToken(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		// Spend the time of a hash compare all the same.
		secretMatches(secret, strings.Repeat("0", 64))
		return types.JoinToken{}, ErrJoinTokenUnknown
	}
	if err != nil {
		return types.JoinToken{}, fmt.Errorf("check join token: %w", err)
	}
	if !secretMatches(secret, t.Hash) {
		return types.JoinToken{}, ErrJoinTokenUnknown
	}
	if !t.Expires.IsZero() && !now.Before(t.Expires) {
		return types.JoinToken{}, fmt.Errorf("%w at %s", ErrJoinTokenExpired, t.Expires.UTC().Format(time.RFC3339))
	}
	if t.Kind != kind {
		return types.JoinToken{}, fmt.Errorf("%w: it admits a %s, not a %s", ErrJoinTokenKind, t.Kind, kind)
	}
	return t, nil
}

// CAHash is how a joining machine pins the cluster's CA:
// "sha256:<hex of the certificate's DER>" (kubeadm's discovery hash).
func CAHash(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return "sha256:" + hex.EncodeToString(sum[:])
}
