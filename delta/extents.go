package delta

import (
	"encoding/binary"
	"math"
	"os"
	"slices"
	"sort"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A file on btrfs tells which of its ranges may have changed without
// being read: every write to a copy-on-write file lands in a new extent,
// so its file extent items (offset, length, disk address, the
// transaction that made the extent) change; a range whose item is the
// same as when the file was last chunked holds the same bytes. The
// source keeps each large file's items beside its stamp in its index,
// and a file whose stamp changed is chunked again only around the ranges
// whose items differ (rechunk), instead of read whole. This is how a
// volume, which lives in a btrfs pool, is synced in time proportional to
// what changed, as btrfs send is.
//
// Why an equal item means equal bytes:
//   - a write to a copy-on-write file goes to a newly allocated extent;
//     an extent freed by a transaction is not reused within it, so
//     (disk address, transaction) names one allocation;
//   - a write into preallocated space converts its item (prealloc to
//     regular), which is a difference too;
//   - a punched hole or a truncation removes items: an item that is gone
//     marks its range;
//   - a file flagged nodatacow (chattr +C, or mounted nodatacow) is
//     written in place: it is never trusted, nor is a file with an inline
//     extent (its bytes are in the item; such files are small anyway);
//   - items appear at writeback: a file is synced before its items are
//     read (cheap for data at rest), so a write made before has its item;
//     the items are kept only if the file's stamp did not change while it
//     was read (a write after the sync has no item yet, and a crash could
//     lose its bytes while the items stay: the chunks would not be the
//     file's).
//
// Anything else (another filesystem, an ioctl refused) is "unknown", and
// the file is read whole, as before.

// extent is one file extent item of a file on btrfs.
type extent struct {
	Off, Len     uint64 // the range of the file it covers
	Bytenr, Disk uint64 // the extent on disk: address, size (0: a hole)
	ExtOff       uint64 // where the range starts in the extent
	Gen          uint64 // the transaction that made the extent
	Type, Compr  uint8  // regular or prealloc; compression
}

const (
	btrfsIocTreeSearch = 0xd0009411 // _IOWR(0x94, 17, struct btrfs_ioctl_search_args), 4096 bytes
	btrfsExtentDataKey = 108
	btrfsFirstFree     = 256
	fsNocowFl          = 0x00800000

	searchKeySize    = 104
	searchHeaderSize = 32
	fileExtentSize   = 53 // a regular or prealloc item; an inline one is its header and data
)

// extentsOf reads the file extent items of f, on btrfs: ok for a
// copy-on-write file without inline extents.
func extentsOf(f *os.File) ([]extent, bool) {
	flags, err := unix.IoctlGetUint32(int(f.Fd()), unix.FS_IOC_GETFLAGS)
	if err != nil || flags&fsNocowFl != 0 {
		return nil, false
	}
	var st unix.Stat_t
	if unix.Fstat(int(f.Fd()), &st) != nil || st.Ino < btrfsFirstFree {
		return nil, false
	}
	var (
		args [4096]byte
		list []extent
		from uint64
	)
	le := binary.LittleEndian
	for {
		clear(args[:searchKeySize])
		// tree_id 0: the subvolume f is in.
		le.PutUint64(args[8:], st.Ino)      // min_objectid
		le.PutUint64(args[16:], st.Ino)     // max_objectid
		le.PutUint64(args[24:], from)       // min_offset
		le.PutUint64(args[32:], ^uint64(0)) // max_offset
		le.PutUint64(args[48:], ^uint64(0)) // max_transid
		le.PutUint32(args[56:], btrfsExtentDataKey)
		le.PutUint32(args[60:], btrfsExtentDataKey)
		le.PutUint32(args[64:], 4096) // nr_items: as many as fit
		if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), btrfsIocTreeSearch, uintptr(unsafe.Pointer(&args[0]))); errno != 0 {
			return nil, false
		}
		n := le.Uint32(args[64:])
		if n == 0 {
			break
		}
		buf := args[searchKeySize:]
		var last uint64
		for i := uint32(0); i < n; i++ {
			if len(buf) < searchHeaderSize {
				return nil, false
			}
			obj, off, typ, size := le.Uint64(buf[8:]), le.Uint64(buf[16:]), le.Uint32(buf[24:]), int(le.Uint32(buf[28:]))
			buf = buf[searchHeaderSize:]
			if size > len(buf) {
				return nil, false
			}
			item := buf[:size]
			buf = buf[size:]
			last = off
			if obj != st.Ino || typ != btrfsExtentDataKey {
				continue
			}
			if size < fileExtentSize || item[20] != 1 && item[20] != 2 {
				return nil, false // inline, or a type this code does not know
			}
			list = append(list, extent{
				Off: off, Len: le.Uint64(item[45:]),
				Bytenr: le.Uint64(item[21:]), Disk: le.Uint64(item[29:]),
				ExtOff: le.Uint64(item[37:]), Gen: le.Uint64(item[0:]),
				Type: item[20], Compr: item[16],
			})
		}
		if last == ^uint64(0) {
			break
		}
		from = last + 1
	}
	for i := 1; i < len(list); i++ {
		if list[i].Off < list[i-1].Off+list[i-1].Len {
			return nil, false // overlapping items: not what this code knows
		}
	}
	return list, true
}

// span is a range of a file, [Off, End).
type span struct{ Off, End int64 }

// changedSpans are the ranges of a file whose bytes may differ between
// was (its items when it was chunked, oldSize bytes) and now (newSize
// bytes), sorted and merged. A byte is the same when both map it to the
// same byte of the same extent (a write in the middle of an extent
// splits its item in three, and the two outer items still map their
// bytes where they were), or both have a hole there; a change of size
// marks the end of the file (resized).
func changedSpans(was, now []extent, oldSize, newSize int64) []span {
	var cuts []uint64
	for _, l := range [][]extent{was, now} {
		for _, e := range l {
			cuts = append(cuts, e.Off, e.Off+e.Len)
		}
	}
	slices.Sort(cuts)
	var out []span
	i, j := 0, 0
	for k := 0; k+1 < len(cuts); k++ {
		a, b := cuts[k], cuts[k+1]
		if a == b {
			continue
		}
		for i < len(was) && was[i].Off+was[i].Len <= a {
			i++
		}
		for j < len(now) && now[j].Off+now[j].Len <= a {
			j++
		}
		if !sameBytes(pieceAt(was, i, a), pieceAt(now, j, a)) {
			out = append(out, span{offset(a), offset(b)})
		}
	}
	return mergeSpans(append(out, resized(oldSize, newSize)...))
}

// resized is what a change of a file's size from oldSize to newSize marks:
// the last MaxChunk bytes before the shorter end and everything after it
// (a chunk cut at the end of the file, or short of MaxChunk because the
// file ended, may be cut elsewhere now); nothing when the size is the same.
func resized(oldSize, newSize int64) []span {
	if oldSize == newSize {
		return nil
	}
	return []span{{max(0, min(oldSize, newSize)-MaxChunk), max(oldSize, newSize)}}
}

// offset is an item's offset as a file offset (an index's items are
// checked only not to wrap: one past the largest file is past the end).
func offset(v uint64) int64 { return int64(min(v, math.MaxInt64)) }

// pieceAt is the item of l (from index i on) that covers offset a, nil
// where l has none (a hole).
func pieceAt(l []extent, i int, a uint64) *extent {
	if i < len(l) && l[i].Off <= a && a < l[i].Off+l[i].Len {
		return &l[i]
	}
	return nil
}

// sameBytes says whether two items (nil: no item) give the same bytes
// over a range that both cover.
func sameBytes(x, y *extent) bool {
	// No item, a hole's item and preallocated space all read as zeros
	// (a write into preallocated space converts its item at writeback,
	// and the items compared were taken after a sync).
	zeros := func(e *extent) bool { return e == nil || e.Type == 2 || e.Type == 1 && e.Bytenr == 0 }
	if zeros(x) || zeros(y) {
		return zeros(x) && zeros(y)
	}
	return x.Bytenr == y.Bytenr && x.Disk == y.Disk && x.Gen == y.Gen &&
		x.Type == y.Type && x.Compr == y.Compr &&
		x.ExtOff-x.Off == y.ExtOff-y.Off // the same byte of the extent at each offset (mod 2^64)
}

func mergeSpans(s []span) []span {
	sort.Slice(s, func(a, b int) bool { return s[a].Off < s[b].Off })
	var out []span
	for _, x := range s {
		if x.End <= x.Off {
			continue
		}
		if n := len(out); n > 0 && x.Off <= out[n-1].End {
			out[n-1].End = max(out[n-1].End, x.End)
			continue
		}
		out = append(out, x)
	}
	return out
}

// rechunk cuts data (the whole file now) into the chunks a full chunking
// would give, from old (the chunks of the file when it was chunked) and
// the spans where its bytes may differ since: an old chunk that touches
// no span and starts where the new cutting stands is kept as it is (a
// chunk's cut depends only on its own bytes, and on the end of the file
// when it is near it, which resized marks); elsewhere the file is
// cut and hashed again, until a cut falls on the start of a kept chunk.
// With a tagger and the old chunks' tags, it also gives the new chunks'
// tags (tags.go). It returns how many bytes it hashed.
func rechunk(data []byte, old []Chunk, oldTags []byte, dirty []span, t *tagger) ([]Chunk, []byte, int64) {
	size := int64(len(data))
	out := make([]Chunk, 0, len(old)+len(dirty)*2)
	var tags []byte
	if t != nil && len(oldTags) == tagSize*len(old) {
		tags = make([]byte, 0, tagSize*(len(old)+len(dirty)*2))
	}
	var (
		pos, oldOff, hashed int64
		i, d                int
	)
	for pos < size {
		// The old chunks that start before pos are behind the cutting.
		for i < len(old) && oldOff < pos {
			oldOff += int64(old[i].Size)
			i++
		}
		if i < len(old) && oldOff == pos {
			end := pos + int64(old[i].Size)
			for d < len(dirty) && dirty[d].End <= pos {
				d++
			}
			if end <= size && (d == len(dirty) || dirty[d].Off >= end) {
				out = append(out, old[i])
				if tags != nil {
					tags = append(tags, oldTags[i*tagSize:(i+1)*tagSize]...)
				}
				pos = end
				continue
			}
		}
		k := cut(data[pos:min(size, pos+MaxChunk)])
		b := data[pos : pos+int64(k)]
		out = append(out, Chunk{ID: Sum(b), Size: uint32(k)})
		if tags != nil {
			tags = t.appendTag(tags, b)
		}
		pos += int64(k)
		hashed += int64(k)
	}
	return out, tags, hashed
}
