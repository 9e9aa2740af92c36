package delta

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// Source is where a sync reads a tree from.
type Source interface {
	// Manifest is the tree as it is now.
	Manifest(ctx context.Context) (*Manifest, error)
	// Chunks streams the chunks refs name, as frames, in any order.
	Chunks(ctx context.Context, refs []Ref) (io.ReadCloser, error)
}

// Receiver is where a sync writes a tree to.
type Receiver interface {
	// Want answers which chunks of m the receiver lacks.
	Want(ctx context.Context, m *Manifest) ([]ID, error)
	// Put keeps the chunks of a stream of frames (for m, which Want saw).
	Put(ctx context.Context, frames io.Reader) error
	// Commit makes m the receiver's tree, verified, all at once. It
	// fails with a *MissingError when chunks are still missing.
	Commit(ctx context.Context, m *Manifest) error
}

// MissingError says which chunks a receiver still lacks at Commit (a
// sync that was cut short, or an old file that changed since Want).
type MissingError struct{ IDs []ID }

func (e *MissingError) Error() string {
	return fmt.Sprintf("%d chunks are still missing (first %s): run the sync again", len(e.IDs), e.IDs[0])
}

// Stats say what a sync did.
type Stats struct {
	Files, Chunks int   // files and distinct chunks in the manifest
	Bytes         int64 // size of the tree's files
	SentChunks    int   // chunks the receiver lacked
	SentBytes     int64 // their size (frames without overhead)
}

// batchBytes bounds one Chunks call: a sync cut short loses at most this
// much (the receiver keeps what came before).
const batchBytes = 64 << 20

// Sync makes dst hold what src holds, sending only the chunks dst lacks.
// Run it again after an interruption: chunks dst already kept are not
// sent again.
func Sync(ctx context.Context, src Source, dst Receiver) (Stats, error) {
	var st Stats
	var m *Manifest
	var err error
	cs, ok1 := src.(CompactSource)
	gk, ok2 := dst.(GroupKnower)
	if ok1 && ok2 {
		var known map[ID][]Chunk
		if known, err = gk.KnownGroups(ctx); err == nil {
			m, err = cs.CompactManifest(ctx, known)
		}
		if errors.Is(err, ErrNotExpanded) {
			// A group taken for another (compact.go).
			m, err = src.Manifest(ctx)
		}
	} else {
		m, err = src.Manifest(ctx)
	}
	if err != nil {
		return st, fmt.Errorf("manifest: %w", err)
	}
	distinct := newIDSet(m.chunkCount())
	for _, e := range m.Entries {
		if e.Kind == File {
			st.Files++
		}
		for _, c := range e.Chunks {
			distinct.add(c.ID)
		}
	}
	st.Chunks, st.Bytes = len(distinct), m.Size()
	var want []ID
	if r, ok := dst.(*Remote); ok {
		want, err = r.wantFrom(ctx, m, groupsBefore(src))
	} else {
		want, err = dst.Want(ctx, m)
	}
	if err != nil {
		return st, fmt.Errorf("want: %w", err)
	}
	for attempt := 0; ; attempt++ {
		if err := send(ctx, src, dst, m, want, &st); err != nil {
			return st, err
		}
		err := dst.Commit(ctx, m)
		var missing *MissingError
		if errors.As(err, &missing) && attempt < 2 {
			want = missing.IDs // old files that changed under the sync
			continue
		}
		if err != nil {
			return st, fmt.Errorf("commit: %w", err)
		}
		return st, nil
	}
}

// groupsBefore are the source's groups of before when it knows them
// (TreeSource with a State): a compact manifest names runs of their
// chunks.
func groupsBefore(src Source) map[ID][]Chunk {
	if gb, ok := src.(interface{ groupsBefore() map[ID][]Chunk }); ok {
		return gb.groupsBefore()
	}
	return nil
}

func send(ctx context.Context, src Source, dst Receiver, m *Manifest, want []ID, st *Stats) error {
	refs := Refs(m, want)
	for len(refs) > 0 {
		var n int
		var size int64
		for n < len(refs) && (n == 0 || size+int64(refs[n].Size) <= batchBytes) {
			size += int64(refs[n].Size)
			n++
		}
		rc, err := src.Chunks(ctx, refs[:n])
		if err != nil {
			return fmt.Errorf("chunks: %w", err)
		}
		err = dst.Put(ctx, rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("put: %w", err)
		}
		st.SentChunks += n
		st.SentBytes += size
		refs = refs[n:]
	}
	return nil
}
