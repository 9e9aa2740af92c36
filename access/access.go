// Package access serves volumes without a pod: WebDAV at /dav/<volume>/
// on the API port (golang.org/x/net/webdav) and an S3-compatible endpoint
// where a bucket is a volume (its own listener, path-style requests). Both
// read and write the directory that holds a volume's files on this node
// through os.Root, so no path, ".." or symlink leads outside the volume.
//
// A caller is the tenant of an access token (WebDAV: bearer, or the
// password of basic auth; or a client certificate) or a per-volume access
// key (WebDAV: basic auth, key ID and secret; S3: Signature V4), read-only
// or read-write. Another tenant's volume, or one a key does not cover,
// answers as if it did not exist (404 / NoSuchBucket). docs/ACCESS.md
// describes both protocols and how keys are kept.
package access

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"golang.org/x/net/webdav"

	"github.com/macro-cloud/macro/auth"
	"github.com/macro-cloud/macro/store"
	"github.com/macro-cloud/macro/types"
)

// Volumes gives the directory that holds a volume's files on this node
// (agent.(*Agent).VolumeRoot). The caller has checked that the volume
// exists and belongs to tenant.
type Volumes interface {
	VolumeRoot(ctx context.Context, tenant, name string) (string, error)
}

// Store is what access reads of the state: volumes and their keys.
// *store.Store implements it; its ErrNotFound says "no such thing".
type Store interface {
	Volume(ctx context.Context, tenant, name string) (types.Volume, error)
	Volumes(ctx context.Context, tenant string) ([]types.Volume, error)
	VolumeKey(ctx context.Context, id string) (types.VolumeKey, error)
}

// Tokens authenticates a tenant's own credentials (*auth.Authenticator).
type Tokens interface {
	Authenticate(r *http.Request) (auth.Identity, error)
	TenantActive(ctx context.Context, name string) bool
}

var (
	_ Store  = (*store.Store)(nil)
	_ Tokens = (*auth.Authenticator)(nil)
)

// Config wires a Server to its backends.
type Config struct {
	Volumes Volumes
	Store   Store
	Tokens  Tokens
	Keys    *Keys
	// UploadDir keeps the parts of S3 multipart uploads until they
	// complete (DATA-DIR/s3-uploads).
	UploadDir string
	Log       *slog.Logger
	// Now is the clock (time.Now); S3 signatures must be within 15
	// minutes of it.
	Now func() time.Time
}

// Server serves WebDAV and S3 over volumes.
type Server struct {
	volumes   Volumes
	store     Store
	tokens    Tokens
	keys      *Keys
	uploadDir string
	log       *slog.Logger
	now       func() time.Time

	mu    sync.Mutex
	locks map[string]webdav.LockSystem // by tenant "/" volume
}

// New returns a Server.
func New(cfg Config) *Server {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Server{
		volumes: cfg.Volumes, store: cfg.Store, tokens: cfg.Tokens, keys: cfg.Keys,
		uploadDir: cfg.UploadDir, log: cfg.Log.With("subsystem", "access"), now: cfg.Now,
		locks: map[string]webdav.LockSystem{},
	}
}

// grant is what a caller may reach: the tenant's volumes, all of them
// (a token, or a key of all volumes) or the one of a key.
type grant struct {
	tenant   string
	key      *types.VolumeKey // nil: the tenant's own credentials
	readOnly bool
}

// errNoVolume: no such volume for this caller (another tenant's included).
var errNoVolume = errors.New("no such volume")

// errBadKey: an unknown key, a wrong secret, a revoked key or a tenant
// that is gone.
var errBadKey = errors.New("invalid or revoked access key")

// keyGrant checks a key ID and its secret.
func (s *Server) keyGrant(ctx context.Context, id, secret string) (grant, error) {
	k, err := s.lookupKey(ctx, id)
	if err != nil {
		return grant{}, err
	}
	if !hashMatches(secret, k.Hash) {
		return grant{}, errBadKey
	}
	return grant{tenant: k.Tenant, key: &k, readOnly: k.ReadOnly}, nil
}

// lookupKey reads key id and checks that this server derives the secret
// the key was made with, and that its tenant is active.
func (s *Server) lookupKey(ctx context.Context, id string) (types.VolumeKey, error) {
	if !IsKeyID(id) {
		return types.VolumeKey{}, errBadKey
	}
	k, err := s.store.VolumeKey(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return k, errBadKey
	}
	if err != nil {
		return k, fmt.Errorf("read volume key: %w", err)
	}
	if !hashMatches(s.keys.Secret(id), k.Hash) {
		s.log.Error("a volume key was made with another server key: copy "+KeyFile+" of the data directory to every server of the cell", "key", id)
		return k, errBadKey
	}
	if !s.tokens.TenantActive(ctx, k.Tenant) {
		return k, errBadKey
	}
	return k, nil
}

// volume is the caller's volume name: errNoVolume when the tenant has
// none of that name or the key is not for it.
func (s *Server) volume(ctx context.Context, g grant, name string) (types.Volume, error) {
	scoped := g.key != nil && g.key.Volume != "" // a key of one volume
	if scoped && g.key.Volume != name {
		return types.Volume{}, errNoVolume
	}
	v, err := s.store.Volume(ctx, g.tenant, name)
	if errors.Is(err, store.ErrNotFound) {
		return v, errNoVolume
	}
	if err != nil {
		return v, fmt.Errorf("read volume: %w", err)
	}
	if scoped && !v.Created.Equal(g.key.VolumeCreated) {
		return v, errNoVolume // removed and made again since the key
	}
	return v, nil
}

// visibleVolumes is what ListBuckets shows the caller.
func (s *Server) visibleVolumes(ctx context.Context, g grant) ([]types.Volume, error) {
	if g.key != nil && g.key.Volume != "" {
		v, err := s.volume(ctx, g, g.key.Volume)
		if errors.Is(err, errNoVolume) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return []types.Volume{v}, nil
	}
	return s.store.Volumes(ctx, g.tenant)
}

// root is the directory of the caller's volume.
func (s *Server) root(ctx context.Context, g grant, name string) (string, error) {
	if _, err := s.volume(ctx, g, name); err != nil {
		return "", err
	}
	dir, err := s.volumes.VolumeRoot(ctx, g.tenant, name)
	if err != nil {
		return "", fmt.Errorf("volume %s: %w", name, err)
	}
	return dir, nil
}

// lockSystem is the WebDAV lock table of one volume, kept as long as the
// server runs.
func (s *Server) lockSystem(tenant, volume string) webdav.LockSystem {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := tenant + "/" + volume
	ls, ok := s.locks[k]
	if !ok {
		ls = webdav.NewMemLS()
		s.locks[k] = ls
	}
	return ls
}
