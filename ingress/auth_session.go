package ingress

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Cookies of authenticated ingress. The __Host- prefix makes browsers keep
// them to the exact host, over HTTPS, for the whole path: no other host of
// the cluster domain can set or read them.
const (
	sessionCookie = "__Host-macro-session"
	// loginCookie+<state prefix> carries one login in progress.
	loginCookie = "__Host-macro-login-"
)

// Reserved paths on a host with an OIDC route.
const (
	CallbackPath = "/.macro/oidc/callback"
	LogoutPath   = "/.macro/logout"
)

// sealer encrypts and authenticates cookie values with AES-256-GCM under a
// key derived per host (HKDF-SHA256) from the ingress's secret: a cookie
// of one host opens on no other, and one made without the secret on none.
type sealer struct {
	secret []byte
}

var errBadCookie = errors.New("cookie does not open")

func (s sealer) aead(host, purpose string) (cipher.AEAD, error) {
	key, err := hkdf.Key(sha256.New, s.secret, nil, "macro ingress cookie v1\x00"+purpose+"\x00"+host, 32)
	if err != nil {
		return nil, err
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// seal encrypts v as JSON for a cookie named name of host.
func (s sealer) seal(host, name string, v any) (string, error) {
	plain, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	a, err := s.aead(host, name)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, a.NonceSize(), a.NonceSize()+len(plain)+a.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(a.Seal(nonce, nonce, plain, []byte(name))), nil
}

// open decrypts a cookie value made by seal for the same host and name.
func (s sealer) open(host, name, value string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil {
		return errBadCookie
	}
	a, err := s.aead(host, name)
	if err != nil {
		return err
	}
	if len(b) < a.NonceSize()+a.Overhead() {
		return errBadCookie
	}
	plain, err := a.Open(nil, b[:a.NonceSize()], b[a.NonceSize():], []byte(name))
	if err != nil {
		return errBadCookie
	}
	if err := json.Unmarshal(plain, v); err != nil {
		return fmt.Errorf("%w: %v", errBadCookie, err)
	}
	return nil
}

// session is what the session cookie holds once a user logged in.
type session struct {
	Host    string    `json:"h"`
	Subject string    `json:"s"`
	Email   string    `json:"e,omitempty"` // verified, lower case
	Expires time.Time `json:"x"`
}

// loginState is what the login cookie holds between the redirect to the
// provider and its callback.
type loginState struct {
	State    string    `json:"s"`
	Nonce    string    `json:"n"`
	Verifier string    `json:"v"` // PKCE
	Return   string    `json:"r"` // path and query on this host
	Expires  time.Time `json:"x"`
}
