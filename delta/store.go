package delta

import (
	"bufio"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/macro-cloud/macro/internal/atomicfile"
	"github.com/zeebo/blake3"
	"golang.org/x/crypto/argon2"
)

// Store is an encrypted chunk store in a directory, for export to and
// import from a removable drive. It holds one tree: its chunks and its
// manifest, every one sealed with AES-256-GCM under a key derived
// (Argon2id) from what the user's key file holds. Chunk files are named
// by a keyed BLAKE3 hash of their ID, so names reveal nothing of content
// hashes; only sizes show. Layout:
//
//	DIR/macro-delta.json        KDF parameters, salt, and a key check
//	DIR/manifest                the sealed manifest (written last)
//	DIR/chunks/ab/cd/abcd...    sealed chunks (two levels: at most 65536
//	                            directories, few files in each)
//
// A Store is a Receiver (export: only chunks it lacks are written, then
// the manifest; chunks the new manifest no longer names are removed) and
// a Source (import: every chunk is opened, authenticated and hashed).
type Store struct {
	dir     string
	aead    cipher.AEAD
	nameKey []byte
	// header of a new store, written by the first Want: a sync that
	// fails before it (no such volume) leaves nothing in dir.
	header []byte

	// Written counts the chunks and bytes (plain) Put wrote.
	written, writtenBytes atomic.Int64
}

var (
	_ Source   = (*Store)(nil)
	_ Receiver = (*Store)(nil)
)

// ErrWrongKey is the error of a key that did not make the store.
var ErrWrongKey = errors.New("wrong key: this export was made with another key file")

// ErrNoStore is the error of a directory that holds no export.
var ErrNoStore = errors.New("no export here")

const storeHeader = "macro-delta.json"

type storeParams struct {
	Format  string `json:"format"`
	KDF     string `json:"kdf"`
	Salt    string `json:"salt"`
	Time    uint32 `json:"time"`
	Memory  uint32 `json:"memoryKiB"`
	Threads uint8  `json:"threads"`
	Cipher  string `json:"cipher"`
	Check   string `json:"check"`
}

// OpenStore opens the store in dir with key (the bytes of the user's key
// file). With create, a directory without a store gets a new one.
func OpenStore(dir string, key []byte, create bool) (*Store, error) {
	if len(key) < 8 {
		return nil, errors.New("the key is too short: use a key file of at least 8 bytes (head -c 32 /dev/urandom > KEYFILE)")
	}
	var p storeParams
	b, err := os.ReadFile(filepath.Join(dir, storeHeader))
	switch {
	case errors.Is(err, fs.ErrNotExist) && create:
		salt := make([]byte, 16)
		rand.Read(salt)
		p = storeParams{Format: "macro-delta-store-1", KDF: "argon2id", Salt: hex.EncodeToString(salt), Time: 3, Memory: 64 << 10, Threads: 2, Cipher: "aes-256-gcm"}
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%s: %w (no %s)", dir, ErrNoStore, storeHeader)
	case err != nil:
		return nil, err
	default:
		if err := json.Unmarshal(b, &p); err != nil || p.Format != "macro-delta-store-1" || p.KDF != "argon2id" || p.Cipher != "aes-256-gcm" {
			return nil, fmt.Errorf("%s: %w: unknown format in %s", dir, ErrCorrupt, storeHeader)
		}
		if p.Time == 0 || p.Time > 16 || p.Memory < 8<<10 || p.Memory > 1<<20 || p.Threads == 0 || p.Threads > 16 {
			return nil, fmt.Errorf("%s: %w: key derivation parameters out of bounds", dir, ErrCorrupt)
		}
	}
	salt, err := hex.DecodeString(p.Salt)
	if err != nil || len(salt) < 16 {
		return nil, fmt.Errorf("%s: %w: bad salt", dir, ErrCorrupt)
	}
	master := argon2.IDKey(key, salt, p.Time, p.Memory, p.Threads, 32)
	var encKey, nameKey, checkKey [32]byte
	blake3.DeriveKey("macro delta store 2026-12 chunk encryption", master, encKey[:])
	blake3.DeriveKey("macro delta store 2026-12 chunk names", master, nameKey[:])
	blake3.DeriveKey("macro delta store 2026-12 key check", master, checkKey[:])
	check := hex.EncodeToString(checkKey[:16])
	var header []byte
	if p.Check == "" {
		p.Check = check
		b, _ := json.MarshalIndent(p, "", "  ")
		header = append(b, '\n')
	} else if subtle.ConstantTimeCompare([]byte(check), []byte(p.Check)) != 1 {
		return nil, fmt.Errorf("%s: %w", dir, ErrWrongKey)
	}
	block, err := aes.NewCipher(encKey[:])
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Store{dir: dir, aead: aead, nameKey: nameKey[:], header: header}, nil
}

// Written is what Put wrote: chunks and their plain bytes.
func (s *Store) Written() (chunks, bytes int64) { return s.written.Load(), s.writtenBytes.Load() }

func (s *Store) name(id ID) string {
	h, _ := blake3.NewKeyed(s.nameKey)
	h.Write(id[:])
	return hex.EncodeToString(h.Sum(nil))
}

func (s *Store) chunkPath(name string) string {
	return filepath.Join(s.dir, "chunks", name[:2], name[2:4], name)
}

func (s *Store) seal(plain []byte, aad string) []byte {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	rand.Read(nonce)
	return s.aead.Seal(nonce, nonce, plain, []byte(aad))
}

func (s *Store) open(sealed []byte, aad string) ([]byte, error) {
	ns := s.aead.NonceSize()
	if len(sealed) < ns+s.aead.Overhead() {
		return nil, fmt.Errorf("%w: too short", ErrCorrupt)
	}
	plain, err := s.aead.Open(nil, sealed[:ns], sealed[ns:], []byte(aad))
	if err != nil {
		return nil, fmt.Errorf("%w: does not authenticate", ErrCorrupt)
	}
	return plain, nil
}

// Manifest opens the store's manifest.
func (s *Store) Manifest(ctx context.Context) (*Manifest, error) {
	b, err := os.ReadFile(filepath.Join(s.dir, "manifest"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w (no manifest: the export did not finish)", s.dir, ErrNoStore)
	}
	if err != nil {
		return nil, err
	}
	plain, err := s.open(b, "manifest")
	if err != nil {
		return nil, fmt.Errorf("%s: manifest: %w", s.dir, err)
	}
	return DecodeManifest(plain)
}

// Chunks opens the chunks of refs (by ID) as frames.
func (s *Store) Chunks(ctx context.Context, refs []Ref) (io.ReadCloser, error) {
	pr, pw := io.Pipe()
	go func() {
		bw := bufio.NewWriterSize(pw, 256<<10)
		var frame []byte
		for _, r := range refs {
			if err := ctx.Err(); err != nil {
				pw.CloseWithError(err)
				return
			}
			name := s.name(r.ID)
			b, err := os.ReadFile(s.chunkPath(name))
			if err != nil {
				pw.CloseWithError(fmt.Errorf("chunk %s: %w", name, err))
				return
			}
			plain, err := s.open(b, name)
			if err == nil && Sum(plain) != r.ID {
				err = fmt.Errorf("%w: wrong content", ErrCorrupt)
			}
			if err != nil {
				pw.CloseWithError(fmt.Errorf("chunk %s of the export: %w", name, err))
				return
			}
			frame = AppendFrame(frame[:0], r.ID, plain)
			if _, err := bw.Write(frame); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		pw.CloseWithError(bw.Flush())
	}()
	return pr, nil
}

// KnownGroups are the groups of the store's current manifest (none before
// the first export).
func (s *Store) KnownGroups(ctx context.Context) (map[ID][]Chunk, error) {
	m, err := s.Manifest(ctx)
	if errors.Is(err, ErrNoStore) {
		return map[ID][]Chunk{}, nil
	}
	if err != nil {
		return nil, err
	}
	return m.Groups(), nil
}

// Want answers which chunks of m the store lacks.
func (s *Store) Want(ctx context.Context, m *Manifest) ([]ID, error) {
	if s.header != nil {
		if err := os.MkdirAll(filepath.Join(s.dir, "chunks"), 0o700); err != nil {
			return nil, err
		}
		if err := writeFileAtomic(filepath.Join(s.dir, storeHeader), s.header, 0o600); err != nil {
			return nil, err
		}
		s.header = nil
	}
	seen := map[ID]bool{}
	var want []ID
	for _, e := range m.Entries {
		for _, c := range e.Chunks {
			if seen[c.ID] {
				continue
			}
			seen[c.ID] = true
			if _, err := os.Stat(s.chunkPath(s.name(c.ID))); err != nil {
				want = append(want, c.ID)
			}
		}
	}
	return want, nil
}

// Put seals and writes the frames' chunks.
func (s *Store) Put(ctx context.Context, frames io.Reader) error {
	fr := NewFrameReader(frames)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		id, data, err := fr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := s.name(id)
		p := s.chunkPath(name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		if err := writeFileAtomic(p, s.seal(data, name), 0o600); err != nil {
			return err
		}
		s.written.Add(1)
		s.writtenBytes.Add(int64(len(data)))
	}
}

// Commit checks that every chunk of m is there, flushes the drive, writes
// the sealed manifest in one rename, then removes the chunks m does not
// name (those of the previous export only).
func (s *Store) Commit(ctx context.Context, m *Manifest) error {
	names := map[string]bool{}
	var missing []ID
	for _, e := range m.Entries {
		for _, c := range e.Chunks {
			n := s.name(c.ID)
			if names[n] {
				continue
			}
			names[n] = true
			if _, err := os.Stat(s.chunkPath(n)); err != nil {
				missing = append(missing, c.ID)
			}
		}
	}
	if len(missing) > 0 {
		return &MissingError{IDs: missing}
	}
	if err := syncfs(s.dir); err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(s.dir, "manifest"), s.seal(m.Encode(), "manifest"), 0o600); err != nil {
		return err
	}
	// Prune what only the previous export needed (and what an earlier,
	// interrupted export left).
	return filepath.WalkDir(filepath.Join(s.dir, "chunks"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if !names[d.Name()] {
			os.Remove(p)
		}
		return nil
	})
}
