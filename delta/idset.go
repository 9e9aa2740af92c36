package delta

import "encoding/binary"

// idSet is a set of chunk IDs keyed by their first 8 bytes: a map of
// uint64 keys costs a third of one of 32-byte keys, and a sync fills
// several with every chunk of a tree (230,000 for 1 GiB). Two IDs that
// share 8 bytes count as one: among a tree's chunks that happens with a
// probability of about n²/2⁶⁵ (10⁻⁹ for a million chunks), and to make it
// happen on purpose is a 2⁶⁴ search. Only decisions that are checked
// again by full ID may rest on it: Commit finds every chunk by its full
// ID and reports what it lacks, which the next round of Sync fetches.
type idSet map[uint64]struct{}

func idKey(id ID) uint64 { return binary.LittleEndian.Uint64(id[:8]) }

func newIDSet(n int) idSet { return make(idSet, n) }

func (s idSet) add(id ID) { s[idKey(id)] = struct{}{} }

func (s idSet) has(id ID) bool {
	_, ok := s[idKey(id)]
	return ok
}
