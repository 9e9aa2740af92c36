package registry

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

const (
	// tokenPrefix marks the registry's own bearer tokens (a tenant's
	// access token is handed to Config.Authenticate instead).
	tokenPrefix  = "mrt1."
	tokenService = "macro"
)

// tokenSigner signs and checks the registry's bearer tokens:
// "mrt1.<base64url claims>.<base64url HMAC-SHA256 of both>".
type tokenSigner struct{ key []byte }

type tokenClaims struct {
	Tenant  string `json:"t"`
	Expires int64  `json:"e"` // unix seconds
	// Scoped tokens allow Access only (scope.go); others, the tenant's
	// whole namespace.
	Scoped bool          `json:"s,omitempty"`
	Access []tokenAccess `json:"x,omitempty"`
}

// newTokenSigner loads the key from file, creating it (0600) when missing;
// with no file, the key lives as long as the process.
func newTokenSigner(file string) (*tokenSigner, error) {
	if file == "" {
		key := make([]byte, 32)
		rand.Read(key)
		return &tokenSigner{key: key}, nil
	}
	key, err := os.ReadFile(file)
	if err == nil {
		if len(key) < 32 {
			return nil, fmt.Errorf("token key %s is too short", file)
		}
		return &tokenSigner{key: key}, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	key = make([]byte, 32)
	rand.Read(key)
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return nil, err
	}
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, key, 0o600); err != nil {
		return nil, err
	}
	if err := os.Link(tmp, file); err != nil {
		os.Remove(tmp)
		if errors.Is(err, os.ErrExist) {
			return newTokenSigner(file) // made by another process meanwhile
		}
		return nil, err
	}
	os.Remove(tmp)
	return &tokenSigner{key: key}, nil
}

func (s *tokenSigner) mac(payload string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(tokenPrefix + payload))
	return m.Sum(nil)
}

func (s *tokenSigner) sign(tenant string, expires time.Time) string {
	return s.signClaims(tokenClaims{Tenant: tenant, Expires: expires.Unix()})
}

func (s *tokenSigner) signClaims(c tokenClaims) string {
	b, _ := json.Marshal(c)
	payload := base64.RawURLEncoding.EncodeToString(b)
	return tokenPrefix + payload + "." + base64.RawURLEncoding.EncodeToString(s.mac(payload))
}

// verify returns the tenant of a valid, unexpired token.
func (s *tokenSigner) verify(tok string, now time.Time) (string, bool) {
	c, ok := s.verifyClaims(tok, now)
	return c.Tenant, ok
}

// verifyClaims returns the claims of a valid, unexpired token.
func (s *tokenSigner) verifyClaims(tok string, now time.Time) (tokenClaims, bool) {
	rest, ok := strings.CutPrefix(tok, tokenPrefix)
	if !ok {
		return tokenClaims{}, false
	}
	payload, sig, ok := strings.Cut(rest, ".")
	if !ok {
		return tokenClaims{}, false
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, s.mac(payload)) {
		return tokenClaims{}, false
	}
	b, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return tokenClaims{}, false
	}
	var c tokenClaims
	if json.Unmarshal(b, &c) != nil || c.Tenant == "" || now.Unix() >= c.Expires {
		return tokenClaims{}, false
	}
	return c, true
}
