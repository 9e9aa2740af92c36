package access

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/macro-cloud/macro/types"
)

// Per-volume keys. An S3 client signs each request with its secret (AWS
// Signature V4), so the server must hold the secret itself, not just a
// hash of it. It does not store it: the secret of key ID is
// HMAC-SHA256(server key, "macro volume key v1\x00" + ID), cut to 20
// bytes (40 hex digits), and the server key is a 32-byte file in the data
// directory (0600) that never enters the store. The store keeps the
// SHA-256 of the secret: a copy of the store alone gives no access, and a
// server whose key file differs from the one that made a key (a server of
// the same cell set up without copying it) tells so instead of refusing
// every signature in silence.
const (
	keyIDPrefix = "MK"
	keyIDLen    = 20 // "MK" and 18 hex digits
	secretLen   = 40
	keyFileLen  = 32
)

// KeyFile is the name of the server key file in the data directory.
const KeyFile = "volume-keys.key"

// Keys makes and checks per-volume access keys.
type Keys struct {
	key []byte
}

// LoadOrCreateKeys reads the server key at file, making it (32 random
// bytes, 0600) when there is none.
func LoadOrCreateKeys(file string) (*Keys, error) {
	b, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		b = make([]byte, keyFileLen)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			if errors.Is(err, os.ErrExist) {
				return LoadOrCreateKeys(file) // another process was first
			}
			return nil, fmt.Errorf("volume key file: %w", err)
		}
		if _, err := f.Write(b); err != nil {
			f.Close()
			os.Remove(file)
			return nil, fmt.Errorf("volume key file: %w", err)
		}
		if err := f.Close(); err != nil {
			return nil, fmt.Errorf("volume key file: %w", err)
		}
		return &Keys{key: b}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("volume key file: %w", err)
	}
	if len(b) != keyFileLen {
		return nil, fmt.Errorf("volume key file %s: %d bytes, want %d", file, len(b), keyFileLen)
	}
	return &Keys{key: b}, nil
}

// NewKeys returns Keys over a server key of 32 bytes (tests).
func NewKeys(key []byte) *Keys { return &Keys{key: key} }

// New makes an access key of volume v: the secret to show once, and the
// record to store.
func (k *Keys) New(v types.Volume, readOnly bool, description string, now time.Time) (string, types.VolumeKey, error) {
	var b [9]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", types.VolumeKey{}, fmt.Errorf("new volume key: %w", err)
	}
	id := keyIDPrefix + strings.ToUpper(hex.EncodeToString(b[:]))
	secret := k.Secret(id)
	return secret, types.VolumeKey{
		ID: id, Tenant: v.Tenant, Volume: v.Name, VolumeCreated: v.Created,
		ReadOnly: readOnly, Hash: hashSecret(secret), Description: description, Created: now,
	}, nil
}

// Secret is the secret of key ID.
func (k *Keys) Secret(id string) string {
	m := hmac.New(sha256.New, k.key)
	m.Write([]byte("macro volume key v1\x00" + id))
	return hex.EncodeToString(m.Sum(nil)[:secretLen/2])
}

// IsKeyID reports whether s has the shape of a volume key's ID.
func IsKeyID(s string) bool {
	if len(s) != keyIDLen || !strings.HasPrefix(s, keyIDPrefix) {
		return false
	}
	for _, c := range s[len(keyIDPrefix):] {
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

func hashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// hashMatches compares the SHA-256 of secret with wantHex in constant time.
func hashMatches(secret, wantHex string) bool {
	got := hashSecret(secret)
	return subtle.ConstantTimeCompare([]byte(got), []byte(wantHex)) == 1
}
