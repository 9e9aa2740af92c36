package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// TenantOrganization is the O= of every tenant's client certificate; a
// certificate without it is not a tenant's, whatever its CN says.
const TenantOrganization = "macro-tenant"

// Lifetimes of what the CA signs.
const (
	caLifetime     = 10 * 365 * 24 * time.Hour
	clientLifetime = 365 * 24 * time.Hour
	serverLifetime = 365 * 24 * time.Hour
	// backdate absorbs small clock differences between machines.
	backdate = 5 * time.Minute
)

// Files of the CA in its directory (DATA-DIR/ca).
const (
	CACertFile = "ca.pem"
	CAKeyFile  = "ca-key.pem"
)

// CA is the cluster's certificate authority: it signs the API port's
// server certificate and the tenants' client certificates. Its key is
// read from and written to its directory only (mode 0600).
type CA struct {
	Cert    *x509.Certificate
	CertPEM []byte
	key     *ecdsa.PrivateKey
}

// LoadOrCreateCA reads the CA from dir, or makes a new one there (ECDSA
// P-256, self-signed, named after cluster) when dir holds none; created
// says which. A directory with only half a CA is an error, never
// overwritten.
func LoadOrCreateCA(dir, cluster string) (ca *CA, created bool, err error) {
	certFile, keyFile := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	_, cerr := os.Stat(certFile)
	_, kerr := os.Stat(keyFile)
	switch {
	case cerr == nil && kerr == nil:
		ca, err := loadCA(certFile, keyFile)
		return ca, false, err
	case errors.Is(cerr, os.ErrNotExist) && errors.Is(kerr, os.ErrNotExist):
		ca, err := createCA(dir, cluster)
		return ca, err == nil, err
	case cerr != nil && !errors.Is(cerr, os.ErrNotExist):
		return nil, false, cerr
	case kerr != nil && !errors.Is(kerr, os.ErrNotExist):
		return nil, false, kerr
	default:
		return nil, false, fmt.Errorf("CA in %s is incomplete (one of %s and %s is missing): restore it, or remove both to make a new CA (every certificate issued so far then stops working)", dir, CACertFile, CAKeyFile)
	}
}

func loadCA(certFile, keyFile string) (*CA, error) {
	if fi, err := os.Stat(keyFile); err == nil && fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(keyFile, 0o600); err != nil {
			return nil, fmt.Errorf("CA key %s is readable by others and cannot be fixed: %w", keyFile, err)
		}
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no PEM certificate", certFile)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certFile, err)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, fmt.Errorf("%s: no PEM key", keyFile)
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyFile, err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("%s does not hold the key of %s", keyFile, certFile)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("%s is not a CA certificate", certFile)
	}
	return &CA{Cert: cert, CertPEM: certPEM, key: key}, nil
}

func createCA(dir, cluster string) (*CA, error) {
	// The directory is readable so that a user may pass ca.pem to kra
	// login --ca; the key file itself is the owner's only.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	name := "macro CA"
	if cluster != "" {
		name += " " + cluster
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"macro"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(caLifetime),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		SubjectKeyId:          keyID(&key.PublicKey),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
	// The key first, then the certificate: a crash in between leaves a
	// directory that LoadOrCreateCA refuses rather than a CA without key.
	if err := writeNew(filepath.Join(dir, CAKeyFile), keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := writeNew(filepath.Join(dir, CACertFile), certPEM, 0o644); err != nil {
		return nil, err
	}
	return &CA{Cert: cert, CertPEM: certPEM, key: key}, nil
}

// writeNew writes a file that must not exist yet, with mode perm from the
// start (never briefly readable by others), and syncs it.
func writeNew(name string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Pool is a pool holding the CA certificate alone.
func (c *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.Cert)
	return p
}

// ServerCert signs a certificate for the API port, valid for hosts (DNS
// names or IP addresses), with a fresh key.
func (c *CA) ServerCert(hosts []string, now time.Time) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "macro API", Organization: []string{"macro"}},
		NotBefore:    now.Add(-backdate),
		NotAfter:     now.Add(serverLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	seen := map[string]bool{}
	for _, h := range hosts {
		if h == "" || seen[h] {
			continue
		}
		seen[h] = true
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	if len(tmpl.DNSNames) > 0 {
		tmpl.Subject.CommonName = tmpl.DNSNames[0]
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.Cert, &key.PublicKey, c.key)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// ClientCert is a tenant's client certificate and its key, in PEM.
type ClientCert struct {
	CertPEM []byte
	KeyPEM  []byte
	Expires time.Time
	Serial  string // as Serial names it
}

// IssueClient signs a client certificate for tenant (CN=tenant,
// O=macro-tenant, client auth, one year) with a fresh ECDSA P-256 key.
func (c *CA) IssueClient(tenant string, now time.Time) (ClientCert, error) {
	if tenant == "" {
		return ClientCert{}, errors.New("issue client certificate: empty tenant")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return ClientCert{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: tenant, Organization: []string{TenantOrganization}},
		NotBefore:    now.Add(-backdate),
		NotAfter:     now.Add(clientLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if tmpl.NotAfter.After(c.Cert.NotAfter) {
		tmpl.NotAfter = c.Cert.NotAfter
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.Cert, &key.PublicKey, c.key)
	if err != nil {
		return ClientCert{}, err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return ClientCert{}, err
	}
	return ClientCert{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}),
		Expires: tmpl.NotAfter,
		Serial:  tmpl.SerialNumber.Text(16),
	}, nil
}

// TenantOfCert returns the tenant a verified client certificate names; ok
// is false for a certificate that is not a tenant's.
func TenantOfCert(cert *x509.Certificate) (string, bool) {
	for _, o := range cert.Subject.Organization {
		if o == TenantOrganization && cert.Subject.CommonName != "" {
			return cert.Subject.CommonName, true
		}
	}
	return "", false
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n.Add(n, big.NewInt(1))
}

func keyID(pub *ecdsa.PublicKey) []byte {
	b, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil
	}
	sum := sha1.Sum(b)
	return sum[:]
}
