package mesh

import (
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// NewPrivateKey makes a Curve25519 private key.
func NewPrivateKey() (Key, error) {
	var k Key
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return k, err
	}
	copy(k[:], priv.Bytes())
	return k, nil
}

// Public is the public key of private key k.
func (k Key) Public() Key {
	var pub Key
	priv, err := ecdh.X25519().NewPrivateKey(k[:])
	if err != nil {
		return pub // cannot happen: every 32 bytes are an X25519 scalar
	}
	copy(pub[:], priv.PublicKey().Bytes())
	return pub
}

// KeyStore keeps a node's private key in DIR/key (mode 0600) and the key
// generation it last made in DIR/generation (see types.MeshView.RotateKey).
type KeyStore struct{ Dir string }

// Load returns the node's key, made on first use, and its generation.
func (s KeyStore) Load() (Key, int64, error) {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return Key{}, 0, err
	}
	gen := int64(0)
	if b, err := os.ReadFile(filepath.Join(s.Dir, "generation")); err == nil {
		gen, _ = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	}
	b, err := os.ReadFile(filepath.Join(s.Dir, "key"))
	if errors.Is(err, os.ErrNotExist) {
		k, err := s.Rotate(gen)
		return k, gen, err
	}
	if err != nil {
		return Key{}, 0, err
	}
	k, ok := ParseKey(strings.TrimSpace(string(b)))
	if !ok {
		return Key{}, 0, fmt.Errorf("%s: not a WireGuard key", filepath.Join(s.Dir, "key"))
	}
	return k, gen, nil
}

// Rotate makes and keeps a new key of generation gen.
func (s KeyStore) Rotate(gen int64) (Key, error) {
	k, err := NewPrivateKey()
	if err != nil {
		return Key{}, err
	}
	return k, s.Save(k, gen)
}

// Save keeps k as the key of generation gen.
func (s KeyStore) Save(k Key, gen int64) error {
	if err := writeFile(filepath.Join(s.Dir, "key"), []byte(k.String()+"\n")); err != nil {
		return err
	}
	return writeFile(filepath.Join(s.Dir, "generation"), []byte(strconv.FormatInt(gen, 10)+"\n"))
}

func writeFile(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
