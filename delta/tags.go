package delta

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
)

// Where the filesystem cannot say what changed in a file (ext4, xfs, a
// nodatacow file), a source still need not cut and hash all of a changed
// file again: it keeps, beside each chunk of a large file, a tag of its
// bytes under a key of its own (GHASH, as AES-GCM authenticates with,
// under a random AES key kept in the source's index: about five times as
// fast as BLAKE3 here). When the file changes, the bytes at each old
// chunk's place are tagged again; a chunk whose tag is the same holds the
// same bytes, and only the places whose tags differ are cut and hashed
// again (rechunk), as with extents.
//
// Why the tag can be trusted: for a key nobody else knows, two different
// inputs of up to 32 KiB get the same 128-bit tag with a probability
// below 2^-117 (GHASH is a polynomial in the key; a difference is a root
// of a polynomial of degree at most 2^11), whatever the inputs, which a
// tenant writes but cannot choose knowing the key: the key and tags stay
// in the node's state directory. An old chunk that moved (bytes inserted
// before it) does not match at its old place: such a file is cut again
// from the insertion on, as without tags.

// tagSize is the size of a chunk's tag.
const tagSize = 16

// tagger tags chunks under a key; one per goroutine.
type tagger struct {
	g     cipher.AEAD
	nonce [12]byte
	buf   []byte
}

// newTagKey is a fresh key for an index.
func newTagKey() []byte {
	k := make([]byte, 16)
	rand.Read(k)
	return k
}

func newTagger(key []byte) *tagger {
	if len(key) != 16 {
		return nil
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		return nil
	}
	return &tagger{g: g, buf: make([]byte, 0, tagSize)}
}

// appendTag appends the tag of data to dst. The nonce is fixed: the tags
// are compared, never sent, so only GHASH's collision bound matters.
func (t *tagger) appendTag(dst, data []byte) []byte {
	t.buf = t.g.Seal(t.buf[:0], t.nonce[:], nil, data)
	return append(dst, t.buf...)
}

// tagsDiffer are the places of old chunks (with their tags) whose bytes
// in data (the file now) differ, as spans, and the tail that a change of
// size marks (resized).
func tagsDiffer(data []byte, old []Chunk, tags []byte, oldSize int64, t *tagger) []span {
	size := int64(len(data))
	var out []span
	var off int64
	var tag []byte
	for i, c := range old {
		end := off + int64(c.Size)
		if end > size {
			out = append(out, span{off, max(size, oldSize)})
			break
		}
		tag = t.appendTag(tag[:0], data[off:end])
		if subtle.ConstantTimeCompare(tag, tags[i*tagSize:(i+1)*tagSize]) != 1 {
			out = append(out, span{off, end})
		}
		off = end
	}
	return mergeSpans(append(out, resized(oldSize, size)...))
}
