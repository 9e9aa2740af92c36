package ingress

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"

	"github.com/macro-cloud/macro/internal/atomicfile"
)

// State keeps what the ingress must not lose on a restart and what every
// ingress of a cluster must share: the ACME account key and certificates,
// the answers to challenges in progress (the CA may ask any ingress). A
// cluster keeps it in the store, sealed (cmd/macro); DirState keeps it in
// files for a single process.
type State interface {
	// Get reads a value; ErrNoState when there is none.
	Get(ctx context.Context, name string) ([]byte, error)
	Put(ctx context.Context, name string, data []byte) error
	// Create writes data unless name holds a value already, and returns
	// the value that holds.
	Create(ctx context.Context, name string, data []byte) ([]byte, error)
	// Delete removes a value; a missing one is no error.
	Delete(ctx context.Context, name string) error
}

// ErrNoState is State.Get's answer for a name that holds nothing.
var ErrNoState = errors.New("no such ingress state")

// DirState is a State in files under a directory (0700, files 0600).
// Names are slash-separated paths of clean segments.
type DirState string

func (d DirState) path(name string) (string, error) {
	for _, seg := range strings.Split(name, "/") {
		if seg == "" || seg == "." || seg == ".." || strings.ContainsAny(seg, "\\\x00") {
			return "", errors.New("ingress state: bad name " + name)
		}
	}
	return filepath.Join(string(d), filepath.FromSlash(name)), nil
}

func (d DirState) Get(_ context.Context, name string) ([]byte, error) {
	p, err := d.path(name)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNoState
	}
	return b, err
}

func (d DirState) Put(_ context.Context, name string, data []byte) error {
	p, err := d.path(name)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	return atomicfile.Write(p, data, 0o600)
}

func (d DirState) Create(ctx context.Context, name string, data []byte) ([]byte, error) {
	p, err := d.path(name)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".tmp-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return nil, err
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	// A hard link fails when the name exists: whole and first, or not at all.
	if err := os.Link(tmp.Name(), p); err != nil {
		if errors.Is(err, os.ErrExist) {
			return d.Get(ctx, name)
		}
		return nil, err
	}
	return data, nil
}

func (d DirState) Delete(_ context.Context, name string) error {
	p, err := d.path(name)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
