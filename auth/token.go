package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/macro-cloud/macro/types"
)

// Access tokens read "kr_<id>_<secret>": id is 16 hex digits and names the
// token in the store, secret is 64 hex digits (256 random bits) of which
// the store keeps only the SHA-256.
const (
	tokenPrefix    = "kr_"
	tokenIDLen     = 16
	tokenSecretLen = 64
)

// NewToken makes a new access token of tenant: the text to hand to the user
// once, and the record to store.
func NewToken(tenant string, now time.Time) (string, types.Token, error) {
	var b [8 + 32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", types.Token{}, fmt.Errorf("new token: %w", err)
	}
	id, secret := hex.EncodeToString(b[:8]), hex.EncodeToString(b[8:])
	return tokenPrefix + id + "_" + secret, types.Token{ID: id, Tenant: tenant, Hash: HashSecret(secret), Created: now}, nil
}

// ParseToken splits a token into its id and secret; ok is false when it
// does not have the shape of one.
func ParseToken(s string) (id, secret string, ok bool) {
	rest, ok := strings.CutPrefix(s, tokenPrefix)
	if !ok {
		return "", "", false
	}
	id, secret, ok = strings.Cut(rest, "_")
	if !ok || len(id) != tokenIDLen || len(secret) != tokenSecretLen || !isLowerHex(id) || !isLowerHex(secret) {
		return "", "", false
	}
	return id, secret, true
}

// IsToken reports whether s has the shape of an access token.
func IsToken(s string) bool {
	_, _, ok := ParseToken(s)
	return ok
}

// HashSecret is what the store keeps of a token's secret.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
