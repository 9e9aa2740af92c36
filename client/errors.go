package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
)

var (
	// ErrNoToken is returned by calls that need an access token when the
	// client has none.
	ErrNoToken = errors.New("no access token")
	// ErrNoClientCert is returned by Docker API calls when the client has
	// no client certificate.
	ErrNoClientCert = errors.New("no client certificate for the Docker API")
	// ErrUnauthorized matches an *Error with status 401: the token (or the
	// client certificate) was refused.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrForbidden matches an *Error with status 403: the credentials are
	// good but may not do this (a certificate of a tenant that is gone).
	ErrForbidden = errors.New("forbidden")
	// ErrNotFound matches an *Error with status 404.
	ErrNotFound = errors.New("not found")
	// ErrConflict matches an *Error with status 409.
	ErrConflict = errors.New("conflict")
)

// Error is an answer with an error status. Its text is the server's
// message, as the server wrote it.
type Error struct {
	Status  int
	Message string // the server's message; may be empty
	Method  string
	Path    string
	Host    string
	// RetryAfter is the server's Retry-After in seconds (with 429), else 0.
	RetryAfter int
}

func (e *Error) Error() string {
	if e.Message != "" {
		return e.Message
	}
	return fmt.Sprintf("%s %s%s: %d %s", e.Method, e.Host, e.Path, e.Status, http.StatusText(e.Status))
}

// Is lets errors.Is match ErrUnauthorized, ErrForbidden, ErrNotFound and
// ErrConflict.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrUnauthorized:
		return e.Status == http.StatusUnauthorized
	case ErrForbidden:
		return e.Status == http.StatusForbidden
	case ErrNotFound:
		return e.Status == http.StatusNotFound
	case ErrConflict:
		return e.Status == http.StatusConflict
	}
	return false
}

// UnreachableError says that nothing answered at Host.
type UnreachableError struct {
	Host   string
	Reason string // "connection refused", "no such host", "timed out", ...
	Err    error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot reach %s: %s", e.Host, e.Reason)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// UntrustedError says that the server's certificate is not signed by a CA
// the client trusts (or does not name the host).
type UntrustedError struct {
	Host   string
	Reason string
	Err    error
}

func (e *UntrustedError) Error() string {
	return fmt.Sprintf("%s presents a certificate that is not trusted: %s", e.Host, e.Reason)
}

func (e *UntrustedError) Unwrap() error { return e.Err }

// CertRefusedError says that the server ended the TLS handshake because it
// did not accept the client certificate (or got none).
type CertRefusedError struct {
	Host string
	Err  error
}

func (e *CertRefusedError) Error() string {
	return fmt.Sprintf("%s refused the client certificate: %v", e.Host, e.Err)
}

func (e *CertRefusedError) Unwrap() error { return e.Err }

// transportError classifies an error of http.Client.Do.
func (c *Client) transportError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var unknown x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var verify *tls.CertificateVerificationError
	switch {
	case errors.As(err, &unknown):
		return &UntrustedError{Host: c.host, Reason: "signed by an unknown authority", Err: err}
	case errors.As(err, &hostname):
		return &UntrustedError{Host: c.host, Reason: hostname.Error(), Err: err}
	case errors.As(err, &invalid):
		return &UntrustedError{Host: c.host, Reason: invalid.Error(), Err: err}
	case errors.As(err, &verify):
		return &UntrustedError{Host: c.host, Reason: verify.Err.Error(), Err: err}
	}
	var alert tls.AlertError
	if errors.As(err, &alert) {
		switch alert {
		case 42, 43, 44, 45, 46, 48, 116: // bad/unsupported/revoked/expired/unknown certificate, unknown CA, certificate required
			return &CertRefusedError{Host: c.host, Err: err}
		}
	}
	var rec tls.RecordHeaderError
	if errors.As(err, &rec) || strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") {
		return &UnreachableError{Host: c.host, Reason: "it does not speak TLS (is KR_HOST the API port?)", Err: err}
	}
	var dns *net.DNSError
	switch {
	case errors.Is(err, context.Canceled):
		return err
	case errors.Is(err, context.DeadlineExceeded):
		return &UnreachableError{Host: c.host, Reason: "timed out", Err: err}
	case errors.Is(err, syscall.ECONNREFUSED):
		return &UnreachableError{Host: c.host, Reason: "connection refused", Err: err}
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return &UnreachableError{Host: c.host, Reason: "no route to host", Err: err}
	case errors.Is(err, syscall.ECONNRESET):
		return &UnreachableError{Host: c.host, Reason: "connection reset", Err: err}
	case errors.As(err, &dns):
		reason := "cannot resolve " + dns.Name
		if dns.IsNotFound {
			reason = "no such host " + dns.Name
		}
		return &UnreachableError{Host: c.host, Reason: reason, Err: err}
	case errors.Is(err, os.ErrDeadlineExceeded):
		return &UnreachableError{Host: c.host, Reason: "timed out", Err: err}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return &UnreachableError{Host: c.host, Reason: "timed out", Err: err}
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return &UnreachableError{Host: c.host, Reason: strings.TrimPrefix(op.Err.Error(), "connect: "), Err: err}
	}
	return fmt.Errorf("%s: %w", c.host, err)
}
