package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"
)

// PeerCN is the common name of the certificates that the servers' etcd
// members present to each other; the members accept no other (a tenant's
// client certificate, of the same CA, has the tenant's name, which never
// holds a space).
const PeerCN = "macro etcd peer"

// PeerCert signs a certificate for a server's etcd member, valid for hosts
// (its peer address), for both ends of the peer connections, with a fresh
// key; both in PEM.
func (c *CA) PeerCert(hosts []string, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: PeerCN, Organization: []string{"macro"}},
		NotBefore:    now.Add(-backdate),
		NotAfter:     now.Add(serverLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if tmpl.NotAfter.After(c.Cert.NotAfter) {
		tmpl.NotAfter = c.Cert.NotAfter
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.Cert, &key.PublicKey, c.key)
	if err != nil {
		return nil, nil, err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), nil
}

// KeyPEM is the CA's private key in PEM: handed only to a server that
// joins the cluster with a server join token, so that it can issue
// certificates too.
func (c *CA) KeyPEM() ([]byte, error) {
	kb, err := x509.MarshalECPrivateKey(c.key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), nil
}

// InstallCA writes the CA a server received when it joined the cluster to
// dir (as LoadOrCreateCA reads it), after checking that the key is the
// certificate's. A dir that holds the same CA already is left as it is;
// one that holds another is an error.
func InstallCA(dir string, certPEM, keyPEM []byte) error {
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".ca-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := os.WriteFile(filepath.Join(tmp, CACertFile), certPEM, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, CAKeyFile), keyPEM, 0o600); err != nil {
		return err
	}
	ca, err := loadCA(filepath.Join(tmp, CACertFile), filepath.Join(tmp, CAKeyFile))
	if err != nil {
		return fmt.Errorf("the cluster's CA: %w", err)
	}
	if old, _, err := loadCAIfPresent(dir); err != nil {
		return err
	} else if old != nil {
		if !old.Cert.Equal(ca.Cert) {
			return fmt.Errorf("%s holds the CA of another cluster (%s): use a new --data-dir to join this one", dir, old.Cert.Subject.CommonName)
		}
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return err
	}
	return os.Rename(tmp, dir)
}

// loadCAIfPresent loads the CA of dir; nil when dir holds none.
func loadCAIfPresent(dir string) (*CA, bool, error) {
	certFile := filepath.Join(dir, CACertFile)
	if _, err := os.Stat(certFile); errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	ca, _, err := LoadOrCreateCA(dir, "")
	return ca, false, err
}

// DeriveKey derives a 32-byte key for purpose from the CA's private key
// (HKDF-SHA256): every server of the cluster, and nothing else, derives
// the same one. The servers seal the ingress state they share in the store
// with it.
func (c *CA) DeriveKey(purpose string) ([]byte, error) {
	d, err := c.key.Bytes()
	if err != nil {
		return nil, err
	}
	return hkdf.Key(sha256.New, d, nil, "macro ca-derived key v1\x00"+purpose, 32)
}
