// Package volfs reaches the files of a volume held by another node: the
// primary serves them (Handler, over a directory opened as os.Root) and
// other nodes mount them with FUSE (Mount), through whatever carries HTTP
// between the two (the node protocol: agent -> server -> the primary's
// tunnel).
//
// The consistency model is close-to-open, as NFS's: metadata operations
// (lookup, getattr, readdir, mkdir, rename, unlink, symlink, chmod, ...)
// are synchronous calls to the primary, whose answers for names that exist
// the kernel keeps for MountOptions.CacheFor (a listing brings every
// entry's attributes). An open asks the primary for the file's attributes
// (revalidation), makes the kernel forget the ones it holds, and starts an
// empty local copy; reads
// fetch only the ranges asked for (with read-ahead for a sequential
// reader) and keep them for the rest of the open; writes go to the local
// copy and only their ranges (and a truncation) go back to the primary,
// in write batches (ranges.go), when the file is flushed (close) or
// fsynced, which return only once the primary has them on disk (and every
// replica in sync, agent/volrep.go), and earlier, without waiting for the
// close, once the dirty ranges grow large. A reader that opens after a
// writer's close sees the writer's data; writers on different nodes at
// once each write their own ranges, the last to close winning where they
// overlap. A write-back changes the file in place: a reader that has the
// file open while another node closes it may read old and new ranges.
package volfs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
)

// Operations of Request.Op.
const (
	OpStat     = "stat"
	OpReaddir  = "readdir"
	OpMkdir    = "mkdir"
	OpCreate   = "create"
	OpUnlink   = "unlink"
	OpRmdir    = "rmdir"
	OpRename   = "rename"
	OpSymlink  = "symlink"
	OpReadlink = "readlink"
	OpLink     = "link"
	OpSetattr  = "setattr"
	OpStatfs   = "statfs"
)

// Request is one metadata operation. Paths are relative to the volume's
// root, slash-separated, without "." or ".." components ("" is the root).
type Request struct {
	Op   string `json:"op"`
	Path string `json:"path"`
	// To is the new path of rename and link.
	To string `json:"to,omitempty"`
	// Target is a symlink's target (any string, as symlink(2) takes).
	Target string `json:"target,omitempty"`
	// Mode, UID and GID of mkdir, create and symlink (the caller's).
	Mode uint32 `json:"mode,omitempty"`
	UID  uint32 `json:"uid,omitempty"`
	GID  uint32 `json:"gid,omitempty"`
	// Excl: create fails with EEXIST if the file exists.
	Excl bool `json:"excl,omitempty"`
	// NoReplace: rename fails with EEXIST if To exists.
	NoReplace bool `json:"noReplace,omitempty"`
	// Set is what setattr changes.
	Set *SetAttr `json:"set,omitempty"`
	// Attrs: readdir answers each entry's attributes too.
	Attrs bool `json:"attrs,omitempty"`
}

// SetAttr are the attributes setattr changes; nil fields stay.
type SetAttr struct {
	Mode  *uint32 `json:"mode,omitempty"`
	UID   *uint32 `json:"uid,omitempty"`
	GID   *uint32 `json:"gid,omitempty"`
	Size  *int64  `json:"size,omitempty"`
	Atime *int64  `json:"atime,omitempty"` // ns since the epoch
	Mtime *int64  `json:"mtime,omitempty"`
}

// Attr are a file's attributes as lstat(2) gives them.
type Attr struct {
	Ino    uint64 `json:"ino"`
	Mode   uint32 `json:"mode"` // with the type bits (S_IFREG...)
	Nlink  uint32 `json:"nlink"`
	UID    uint32 `json:"uid"`
	GID    uint32 `json:"gid"`
	Size   int64  `json:"size"`
	Blocks int64  `json:"blocks"`
	Atime  int64  `json:"atime"` // ns since the epoch
	Mtime  int64  `json:"mtime"`
	Ctime  int64  `json:"ctime"`
	Rdev   uint64 `json:"rdev,omitempty"`
	// At is the primary's clock when it read them (ns since the epoch):
	// a mount trusts the cache of a file whose attributes did not change
	// only if they were older than a clock tick then (timestamps are as
	// coarse as the kernel's tick).
	At int64 `json:"at,omitempty"`
}

// Entry is one name of a directory.
type Entry struct {
	Name string `json:"name"`
	Mode uint32 `json:"mode"` // type bits only
	Ino  uint64 `json:"ino"`
	// Attr, for a readdir with Attrs, are its attributes.
	Attr *Attr `json:"attr,omitempty"`
}

// Statfs is the volume's filesystem as statfs(2) gives it.
type Statfs struct {
	Blocks, Bfree, Bavail, Files, Ffree uint64
	Bsize, NameLen, Frsize              uint32
}

// Reply answers a Request; Errno 0 is success.
type Reply struct {
	Errno   int     `json:"errno,omitempty"`
	Attr    *Attr   `json:"attr,omitempty"`
	Entries []Entry `json:"entries,omitempty"`
	Target  string  `json:"target,omitempty"`
	Statfs  *Statfs `json:"statfs,omitempty"`
}

// Err is the reply's errno as an error (nil for success).
func (r Reply) Err() error {
	if r.Errno == 0 {
		return nil
	}
	return syscall.Errno(r.Errno)
}

// maxRequest bounds a request's JSON; maxPath a path (PATH_MAX).
const (
	maxRequest = 64 << 10
	maxPath    = 4096
)

// ErrBadPath is a path a request may not carry.
var ErrBadPath = errors.New("volfs: bad path")

// CheckPath accepts a relative, clean, slash-separated path inside the
// volume: no leading slash, no empty, "." or ".." component, no NUL; ""
// is the root. The primary resolves it through os.Root as well, so even a
// symlink cannot lead outside the volume: this check only refuses what a
// FUSE client never sends.
func CheckPath(p string) error {
	if p == "" {
		return nil
	}
	if len(p) > maxPath || strings.ContainsRune(p, 0) {
		return fmt.Errorf("%w: %.64q", ErrBadPath, p)
	}
	for _, c := range strings.Split(p, "/") {
		if c == "" || c == "." || c == ".." || len(c) > 255 {
			return fmt.Errorf("%w: %.64q", ErrBadPath, p)
		}
	}
	return nil
}

// DecodeRequest reads and checks one Request.
func DecodeRequest(r io.Reader) (Request, error) {
	var q Request
	dec := json.NewDecoder(io.LimitReader(r, maxRequest))
	if err := dec.Decode(&q); err != nil {
		return q, fmt.Errorf("volfs request: %w", err)
	}
	switch q.Op {
	case OpStat, OpReaddir, OpMkdir, OpCreate, OpUnlink, OpRmdir, OpReadlink, OpSetattr, OpStatfs, OpSymlink:
	case OpRename, OpLink:
		if err := CheckPath(q.To); err != nil || q.To == "" {
			return q, fmt.Errorf("volfs request: %s to %w", q.Op, ErrBadPath)
		}
	default:
		return q, fmt.Errorf("volfs request: unknown op %.32q", q.Op)
	}
	if err := CheckPath(q.Path); err != nil {
		return q, err
	}
	switch q.Op {
	case OpMkdir, OpCreate, OpUnlink, OpRmdir, OpRename, OpLink, OpSymlink:
		if q.Path == "" {
			return q, fmt.Errorf("volfs request: %s of the volume's root: %w", q.Op, ErrBadPath)
		}
	case OpSetattr:
		if q.Set == nil {
			return q, errors.New("volfs request: setattr without attributes")
		}
		if q.Set.Size != nil && *q.Set.Size < 0 {
			return q, errors.New("volfs request: negative size")
		}
	}
	if len(q.Target) > maxPath || strings.ContainsRune(q.Target, 0) {
		return q, errors.New("volfs request: bad symlink target")
	}
	return q, nil
}
