package auth

import (
	"context"
	"crypto/x509"
	"log/slog"
	"sync"
	"time"

	"github.com/macro-cloud/macro/store"
	"github.com/macro-cloud/macro/types"
)

// RevocationSource is where the revocation list of client certificates
// lives; *store.Store implements it.
type RevocationSource interface {
	RevokedCerts(ctx context.Context) ([]types.RevokedCert, int64, error)
	WatchRevoked(ctx context.Context, from int64) <-chan types.RevokedCert
}

var _ RevocationSource = (*store.Store)(nil)

// Revocations is the revocation list of client certificates, in memory:
// Load reads it from the store, Run follows its changes with a watch, and
// Add takes what this server revoked itself at once (its peers see it
// through their watches). A certificate is checked on every request, so a
// revoked one stops working on connections that are already open too.
type Revocations struct {
	src RevocationSource
	log *slog.Logger

	mu      sync.RWMutex
	serials map[string]time.Time // serial (hex) → the certificate's expiry
	loaded  bool
}

// NewRevocations returns an empty list over src; Load it before serving.
func NewRevocations(src RevocationSource, log *slog.Logger) *Revocations {
	if log == nil {
		log = slog.Default()
	}
	return &Revocations{src: src, log: log.With("subsystem", "auth"), serials: map[string]time.Time{}}
}

// Serial is how the revocation list names a certificate: its serial
// number in lowercase hex.
func Serial(c *x509.Certificate) string { return c.SerialNumber.Text(16) }

// Load reads the whole list and returns the revision to watch from.
func (r *Revocations) Load(ctx context.Context) (int64, error) {
	list, rev, err := r.src.RevokedCerts(ctx)
	if err != nil {
		return 0, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rc := range list {
		r.serials[rc.Serial] = rc.Expires
	}
	r.loaded = true
	return rev, nil
}

// Run follows the list from revision from until ctx ends, reading it
// again whenever the watch breaks.
func (r *Revocations) Run(ctx context.Context, from int64) {
	for ctx.Err() == nil {
		for rc := range r.src.WatchRevoked(ctx, from+1) {
			r.Add(rc)
		}
		if ctx.Err() != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
		rev, err := r.Load(ctx)
		if err != nil {
			r.log.Warn("cannot read the revocation list; retrying", "err", err)
			continue
		}
		from = rev
	}
}

// Add puts certificates on the list, and drops entries that expired.
func (r *Revocations) Add(rcs ...types.RevokedCert) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rc := range rcs {
		r.serials[rc.Serial] = rc.Expires
	}
	for s, exp := range r.serials {
		if now.After(exp) {
			delete(r.serials, s)
		}
	}
}

// Revoked says whether the certificate is on the list; ok is false while
// the list has not been loaded (refuse then: fail closed).
func (r *Revocations) Revoked(c *x509.Certificate) (revoked, ok bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, revoked = r.serials[Serial(c)]
	return revoked, r.loaded
}
