package main

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/macro-cloud/macro/internal/atomicfile"
)

// config is what `kra login` stores: the host and the token, in
// $XDG_CONFIG_HOME/kra/config.json (or ~/.config/kra/config.json), mode
// 0600. Per-host state sits beside it under hosts/HOST_PORT/: the pinned CA
// (ca.pem) and kra's own client certificate for the Docker API (cert.pem,
// key.pem, and token.sha256 naming the token it was issued for).
//
// No OS keyring is used: servers have none (no D-Bus session, no Secret
// Service), and a keyring library would drag D-Bus in; the file's mode
// keeps the token to its owner, as docker's and kubectl's config files do.
type config struct {
	Host  string `json:"host,omitempty"`
	Token string `json:"token,omitempty"`
}

// configDir is where kra keeps its files.
func configDir() (string, error) {
	if d := os.Getenv("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(d, "kra"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no configuration directory: set XDG_CONFIG_HOME or HOME: %w", err)
	}
	return filepath.Join(home, ".config", "kra"), nil
}

func configPath() (string, error) {
	d, err := configDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "config.json"), nil
}

// loadConfig reads the config file; a missing file is an empty config.
func loadConfig() (config, error) {
	var c config
	p, err := configPath()
	if err != nil {
		return c, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("%s: %w (remove it and log in again)", p, err)
	}
	return c, nil
}

// saveConfig writes the config file with mode 0600, atomically.
func saveConfig(c config) error {
	p, err := configPath()
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(p, append(b, '\n'), 0o600)
}

// writeFileAtomic writes data to p whole (internal/atomicfile), making its
// directory (0700) if missing.
func writeFileAtomic(p string, data []byte, perm os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	return atomicfile.Write(p, data, perm)
}

// hostDir is the directory of a host's pinned CA and client certificate.
func hostDir(host string) (string, error) {
	d, err := configDir()
	if err != nil {
		return "", err
	}
	u, err := url.Parse(host)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("invalid host %q", host)
	}
	name := strings.NewReplacer(":", "_", "/", "_", "[", "", "]", "").Replace(u.Host)
	return filepath.Join(d, "hosts", name), nil
}

// parseCABundle returns the certificates of a PEM bundle, and an error when
// it holds none.
func parseCABundle(pemData []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := pemData
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("invalid certificate in CA bundle: %w", err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate found")
	}
	return certs, nil
}

func certPool(certs []*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

// fingerprint is the SHA-256 of a certificate's DER, as openssl x509
// -fingerprint -sha256 prints it.
func fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}

func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// cachedCert returns kra's client certificate for host when it was issued
// for token and is valid for at least another hour.
func cachedCert(host, token string) (*tls.Certificate, bool) {
	dir, err := hostDir(host)
	if err != nil {
		return nil, false
	}
	h, err := os.ReadFile(filepath.Join(dir, "token.sha256"))
	if err != nil || strings.TrimSpace(string(h)) != tokenHash(token) {
		return nil, false
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	if err != nil || cert.Leaf == nil || time.Now().Add(time.Hour).After(cert.Leaf.NotAfter) {
		return nil, false
	}
	return &cert, true
}

// saveCert stores kra's client certificate for host, issued for token.
func saveCert(host, token string, certPEM, keyPEM []byte) error {
	dir, err := hostDir(host)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(dir, "key.pem"), keyPEM, 0o600); err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(dir, "cert.pem"), certPEM, 0o600); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, "token.sha256"), []byte(tokenHash(token)+"\n"), 0o600)
}

// forgetCert removes kra's client certificate for host.
func forgetCert(host string) error {
	dir, err := hostDir(host)
	if err != nil {
		return err
	}
	for _, f := range []string{"cert.pem", "key.pem", "token.sha256"} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}
