package access

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// Objects of an S3 bucket are the files of a volume: key "a/b/c" is the
// file a/b/c under the volume's directory. Directories are not objects;
// they show as common prefixes and are made as writes need them.

// maxKeyLen is S3's limit on a key, in bytes.
const maxKeyLen = 1024

// tempPrefix starts the names of files that uploads write before they
// rename them into place; listings leave them out.
const tempPrefix = ".macro-upload-"

// keyPath maps an object key to its path relative to the volume, refusing
// keys that name no file of it: empty, too long, not UTF-8, NUL, a
// leading '/', empty, "." or ".." segments. dirMarker is a key that ends
// in '/' (a "folder" some clients make with an empty PUT).
func keyPath(key string) (p string, dirMarker bool, err error) {
	switch {
	case key == "":
		return "", false, s3Err(http.StatusBadRequest, "InvalidArgument", "an object key is required")
	case len(key) > maxKeyLen:
		return "", false, s3Err(http.StatusBadRequest, "KeyTooLongError", "Your key is too long")
	case !utf8.ValidString(key):
		return "", false, s3Err(http.StatusBadRequest, "InvalidArgument", "the object key is not valid UTF-8")
	case strings.ContainsRune(key, 0):
		return "", false, s3Err(http.StatusBadRequest, "InvalidArgument", "the object key contains a NUL byte")
	}
	p, dirMarker = strings.CutSuffix(key, "/")
	for _, seg := range strings.Split(p, "/") {
		switch {
		case seg == "", seg == ".", seg == "..":
			return "", false, s3Err(http.StatusBadRequest, "InvalidArgument", fmt.Sprintf("object key %q names no file of the volume: it has an empty, \".\" or \"..\" path segment", key))
		case len(seg) > 255:
			return "", false, s3Err(http.StatusBadRequest, "KeyTooLongError", "a path segment of the key is longer than 255 bytes")
		case strings.HasPrefix(seg, tempPrefix):
			return "", false, s3Err(http.StatusBadRequest, "InvalidArgument", "object keys may not contain names that start with "+tempPrefix)
		}
	}
	return p, dirMarker, nil
}

// etagXattr keeps the MD5 of a file that an upload wrote, with the size
// and modification time it had then: "size:mtime-ns:etag".
const etagXattr = "user.macro.etag"

// etagOf is the ETag of an open file: the one its upload recorded while
// the file is unchanged since, else one made of size, time and inode (it
// has a dash, so that clients do not take it for an MD5).
func etagOf(f *os.File, fi fs.FileInfo) string {
	buf := make([]byte, 128)
	if n, err := unix.Fgetxattr(int(f.Fd()), etagXattr, buf); err == nil {
		if sz, rest, ok := strings.Cut(string(buf[:n]), ":"); ok {
			if mt, tag, ok := strings.Cut(rest, ":"); ok && sz == strconv.FormatInt(fi.Size(), 10) && mt == strconv.FormatInt(fi.ModTime().UnixNano(), 10) {
				return `"` + tag + `"`
			}
		}
	}
	var b [24]byte
	binary.BigEndian.PutUint64(b[0:], uint64(fi.Size()))
	binary.BigEndian.PutUint64(b[8:], uint64(fi.ModTime().UnixNano()))
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		binary.BigEndian.PutUint64(b[16:], st.Ino)
	}
	sum := sha256.Sum256(b[:])
	return `"` + hex.EncodeToString(sum[:16]) + `-1"`
}

// recordETag stores tag (unquoted) for the file as it is now.
func recordETag(f *os.File, tag string) {
	fi, err := f.Stat()
	if err != nil {
		return
	}
	v := fmt.Sprintf("%d:%d:%s", fi.Size(), fi.ModTime().UnixNano(), tag)
	unix.Fsetxattr(int(f.Fd()), etagXattr, []byte(v), 0) // best effort: without it the ETag is not an MD5
}

// mtimeOf reads the modification time rclone and others send as
// X-Amz-Meta-Mtime (seconds since the epoch, with a fraction).
func mtimeOf(h http.Header) (time.Time, bool) {
	v := h.Get("X-Amz-Meta-Mtime")
	if v == "" {
		return time.Time{}, false
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 || f > 1e11 {
		return time.Time{}, false
	}
	sec, frac, _ := strings.Cut(v, ".")
	s, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	var ns int64
	if frac != "" {
		frac = (frac + "000000000")[:9]
		if ns, err = strconv.ParseInt(frac, 10, 64); err != nil {
			return time.Time{}, false
		}
	}
	return time.Unix(s, ns), true
}

// tempName is a fresh name for an upload's file beside p.
func tempName(p string) string {
	var b [8]byte
	rand.Read(b[:])
	return path.Join(path.Dir(p), tempPrefix+hex.EncodeToString(b[:]))
}

// writeObject writes body to p in root: into a temporary file beside it,
// synced, then renamed over p, so that readers see the old file or the
// new one. It returns the MD5 of what it wrote, hex.
func writeObject(root *os.Root, p string, body io.Reader, mtime time.Time, wantMD5 []byte) (string, error) {
	if dir := path.Dir(p); dir != "." {
		if err := root.MkdirAll(dir, 0o755); err != nil {
			return "", writeErr(err)
		}
	}
	tmp := tempName(p)
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return "", writeErr(err)
	}
	ok := false
	defer func() {
		f.Close()
		if !ok {
			root.Remove(tmp)
		}
	}()
	h := md5.New()
	if _, err := io.Copy(io.MultiWriter(f, h), body); err != nil {
		var se *s3Error
		if errors.As(err, &se) {
			return "", se
		}
		if errors.Is(err, errPayloadHash) {
			return "", s3Err(http.StatusBadRequest, "XAmzContentSHA256Mismatch", errPayloadHash.Error())
		}
		if errors.Is(err, errSignature) {
			return "", s3Err(http.StatusForbidden, "SignatureDoesNotMatch", "a chunk's signature does not match")
		}
		if errors.Is(err, errChunk) {
			return "", s3Err(http.StatusBadRequest, "IncompleteBody", err.Error())
		}
		if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
			return "", s3Err(http.StatusInsufficientStorage, "EntityTooLarge", "the volume is full")
		}
		return "", s3Err(http.StatusBadRequest, "IncompleteBody", "reading the body: "+err.Error())
	}
	sum := h.Sum(nil)
	if wantMD5 != nil && string(sum) != string(wantMD5) {
		return "", s3Err(http.StatusBadRequest, "BadDigest", "The Content-MD5 you specified did not match what we received.")
	}
	if err := f.Sync(); err != nil {
		return "", writeErr(err)
	}
	if !mtime.IsZero() {
		if err := root.Chtimes(tmp, mtime, mtime); err != nil {
			return "", writeErr(err)
		}
	}
	tag := hex.EncodeToString(sum)
	recordETag(f, tag)
	if err := root.Rename(tmp, p); err != nil {
		return "", writeErr(err)
	}
	ok = true
	return tag, nil
}

// writeErr maps a filesystem error of a write to an S3 error: a path
// through a symlink out of the volume is refused.
func writeErr(err error) error {
	if isEscape(err) {
		return s3Err(http.StatusForbidden, "AccessDenied", "the path leads outside the volume (through a symlink)")
	}
	return fsErr(err)
}

// fsErr maps a filesystem error to an S3 error.
func fsErr(err error) error {
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return s3Err(http.StatusInsufficientStorage, "EntityTooLarge", "the volume is full")
	case errors.Is(err, syscall.ENOTDIR), errors.Is(err, syscall.EISDIR), errors.Is(err, syscall.EEXIST), errors.Is(err, syscall.ENOTEMPTY):
		return s3Err(http.StatusConflict, "InvalidRequest", "a file and a directory of the volume collide at this key (one key cannot be both an object and a prefix of others)")
	case errors.Is(err, fs.ErrPermission):
		return s3Err(http.StatusForbidden, "AccessDenied", "the volume refuses this path (a symlink leading outside it, or file permissions)")
	case errors.Is(err, fs.ErrNotExist):
		return errNoSuchKey
	}
	if isEscape(err) {
		return errNoSuchKey // a symlink out of the volume: as if there were nothing
	}
	return err
}

// listEntry is a key or a common prefix of a listing.
type listEntry struct {
	key    string
	prefix bool
	size   int64
	mtime  time.Time
	etag   string
}

// listObjects lists the objects under prefix in key order, after the key
// after, at most max of them (common prefixes count as one each). With
// delimiter "/", a directory under the prefix is one common prefix.
func listObjects(root *os.Root, prefix, delimiter, after string, max int) (out []listEntry, truncated bool, err error) {
	start := "."
	if i := strings.LastIndex(prefix, "/"); i > 0 {
		start = prefix[:i]
		if _, _, err := keyPath(start); err != nil {
			return nil, false, nil // no key lies under it
		}
	}
	fsys := root.FS()
	var all []listEntry
	seen := map[string]bool{}
	addPrefix := func(key string) {
		rest := key[len(prefix):]
		i := strings.Index(rest, delimiter)
		cp := prefix + rest[:i+len(delimiter)]
		if !seen[cp] {
			seen[cp] = true
			all = append(all, listEntry{key: cp, prefix: true})
		}
	}
	err = fs.WalkDir(fsys, start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == start {
				return fs.SkipAll // missing, a file, or leading out of the volume: nothing under it
			}
			return nil // unreadable: leave it out
		}
		if p == "." {
			return nil
		}
		if strings.HasPrefix(d.Name(), tempPrefix) {
			return nil
		}
		if d.IsDir() {
			key := p + "/"
			switch {
			case strings.HasPrefix(key, prefix):
				if delimiter != "" && strings.Contains(key[len(prefix):], delimiter) {
					addPrefix(key)
					if delimiter == "/" {
						return fs.SkipDir
					}
				}
				return nil
			case strings.HasPrefix(prefix, key):
				return nil // on the way to the prefix
			}
			return fs.SkipDir
		}
		if !strings.HasPrefix(p, prefix) {
			return nil
		}
		if delimiter != "" && strings.Contains(p[len(prefix):], delimiter) {
			addPrefix(p)
			return nil
		}
		f, err := root.Open(p) // follows symlinks within the volume only
		if err != nil {
			return nil
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil || !fi.Mode().IsRegular() {
			return nil
		}
		all = append(all, listEntry{key: p, size: fi.Size(), mtime: fi.ModTime(), etag: etagOf(f, fi)})
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	sort.Slice(all, func(i, j int) bool { return all[i].key < all[j].key })
	for _, e := range all {
		if after != "" && (e.key <= after || e.prefix && strings.HasPrefix(after, e.key)) {
			continue
		}
		if len(out) == max {
			return out, true, nil
		}
		out = append(out, e)
	}
	return out, false, nil
}
