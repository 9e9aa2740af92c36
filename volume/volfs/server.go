package volfs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// tmpPrefix names the files a write-back stages beside its target; they
// are hidden from readdir.
const tmpPrefix = ".volfs-tmp-"

// AttrHeader carries a file's Attr (JSON) with its contents.
const AttrHeader = "X-Volfs-Attr"

// Handler serves the files of the directory dir returns (a volume's root
// on its primary node): POST .../op takes a Request and answers a Reply,
// GET .../data?path=P sends a file's contents (with &off=O&len=N, at most
// N bytes from offset O), PUT .../data?path=P replaces them, POST
// .../write?path=P applies a write batch (ranges.go). Only the last element of the URL's path is read, so the
// handler can sit under any prefix. Every path is resolved through
// os.Root: nothing leads outside the directory.
func Handler(dir func(ctx context.Context) (string, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d, err := dir(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		root, err := os.OpenRoot(d)
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		defer root.Close()
		switch op := path.Base(r.URL.Path); {
		case op == "op" && r.Method == http.MethodPost:
			q, err := DecodeRequest(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			writeReply(w, durable(root, q, serveOp(root, q)))
		case op == "data" && r.Method == http.MethodGet && r.URL.Query().Has("off"):
			getRange(w, root, r.URL.Query())
		case op == "data" && r.Method == http.MethodGet:
			getData(w, root, r.URL.Query().Get("path"))
		case op == OpWrite && r.Method == http.MethodPost:
			writeRanges(w, r, root)
		case op == "data" && r.Method == http.MethodPut:
			putData(w, r, root)
		default:
			http.Error(w, "volfs: no such operation", http.StatusNotFound)
		}
	})
}

func writeReply(w http.ResponseWriter, rep Reply) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(rep)
}

// errno is the errno an error of the filesystem stands for.
func errno(err error) int {
	if err == nil {
		return 0
	}
	var e syscall.Errno
	if errors.As(err, &e) {
		return int(e)
	}
	if strings.Contains(err.Error(), "escapes from parent") {
		return int(syscall.EACCES)
	}
	return int(syscall.EIO)
}

func fail(err error) Reply { return Reply{Errno: errno(err)} }

func attrOf(fi fs.FileInfo) *Attr {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return &Attr{Mode: uint32(fi.Mode().Perm()), Size: fi.Size(), Mtime: fi.ModTime().UnixNano()}
	}
	return &Attr{
		Ino: st.Ino, Mode: st.Mode, Nlink: uint32(st.Nlink), UID: st.Uid, GID: st.Gid,
		Size: st.Size, Blocks: st.Blocks, Rdev: st.Rdev,
		Atime: st.Atim.Nano(), Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano(),
	}
}

func lstat(root *os.Root, p string) Reply {
	now := time.Now().UnixNano()
	fi, err := root.Lstat(rootPath(p))
	if err != nil {
		return fail(err)
	}
	a := attrOf(fi)
	a.At = now
	return Reply{Attr: a}
}

// rootPath is p as os.Root names it ("." for the root).
func rootPath(p string) string {
	if p == "" {
		return "."
	}
	return p
}

func serveOp(root *os.Root, q Request) Reply {
	p := rootPath(q.Path)
	switch q.Op {
	case OpStat:
		return lstat(root, q.Path)
	case OpReaddir:
		f, err := root.Open(p)
		if err != nil {
			return fail(err)
		}
		defer f.Close()
		des, err := f.ReadDir(-1)
		if err != nil {
			return fail(err)
		}
		now := time.Now().UnixNano()
		rep := Reply{Entries: make([]Entry, 0, len(des))}
		for _, de := range des {
			if strings.HasPrefix(de.Name(), tmpPrefix) {
				continue
			}
			fi, err := de.Info()
			if err != nil {
				continue // gone meanwhile
			}
			a := attrOf(fi)
			en := Entry{Name: de.Name(), Mode: a.Mode & unix.S_IFMT, Ino: a.Ino}
			if q.Attrs {
				a.At = now
				en.Attr = a
			}
			rep.Entries = append(rep.Entries, en)
		}
		return rep
	case OpMkdir:
		if err := root.Mkdir(p, 0o700); err != nil {
			return fail(err)
		}
		if err := root.Chmod(p, fs.FileMode(q.Mode&0o777)|modeBits(q.Mode)); err != nil {
			return fail(err)
		}
		if err := root.Lchown(p, int(q.UID), int(q.GID)); err != nil {
			return fail(err)
		}
		return lstat(root, q.Path)
	case OpCreate:
		f, err := root.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if errors.Is(err, fs.ErrExist) && !q.Excl {
			return lstat(root, q.Path)
		}
		if err != nil {
			return fail(err)
		}
		defer f.Close()
		if err := f.Chmod(fs.FileMode(q.Mode&0o777) | modeBits(q.Mode)); err != nil {
			return fail(err)
		}
		if err := f.Chown(int(q.UID), int(q.GID)); err != nil {
			return fail(err)
		}
		if err := f.Sync(); err != nil {
			return fail(err)
		}
		return lstat(root, q.Path)
	case OpUnlink, OpRmdir:
		fi, err := root.Lstat(p)
		if err != nil {
			return fail(err)
		}
		if q.Op == OpUnlink && fi.IsDir() {
			return Reply{Errno: int(syscall.EISDIR)}
		}
		if q.Op == OpRmdir && !fi.IsDir() {
			return Reply{Errno: int(syscall.ENOTDIR)}
		}
		return fail(root.Remove(p))
	case OpRename:
		if q.NoReplace {
			if _, err := root.Lstat(q.To); err == nil {
				return Reply{Errno: int(syscall.EEXIST)}
			}
		}
		return fail(root.Rename(p, q.To))
	case OpLink:
		if err := root.Link(p, q.To); err != nil {
			return fail(err)
		}
		return lstat(root, q.To)
	case OpSymlink:
		if err := root.Symlink(q.Target, p); err != nil {
			return fail(err)
		}
		if err := root.Lchown(p, int(q.UID), int(q.GID)); err != nil {
			return fail(err)
		}
		return lstat(root, q.Path)
	case OpReadlink:
		t, err := root.Readlink(p)
		if err != nil {
			return fail(err)
		}
		return Reply{Target: t}
	case OpSetattr:
		return setattr(root, p, q)
	case OpStatfs:
		f, err := root.Open(".")
		if err != nil {
			return fail(err)
		}
		defer f.Close()
		var st unix.Statfs_t
		if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
			return fail(err)
		}
		return Reply{Statfs: &Statfs{Blocks: st.Blocks, Bfree: st.Bfree, Bavail: st.Bavail, Files: st.Files, Ffree: st.Ffree,
			Bsize: uint32(st.Bsize), NameLen: uint32(st.Namelen), Frsize: uint32(st.Frsize)}}
	}
	return Reply{Errno: int(syscall.ENOSYS)}
}

// modeBits are the setuid, setgid and sticky bits of a unix mode as
// fs.FileMode has them.
func modeBits(m uint32) fs.FileMode {
	var b fs.FileMode
	if m&unix.S_ISUID != 0 {
		b |= fs.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		b |= fs.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		b |= fs.ModeSticky
	}
	return b
}

func setattr(root *os.Root, p string, q Request) Reply {
	s := q.Set
	if s.Size != nil {
		f, err := root.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			return fail(err)
		}
		err = f.Truncate(*s.Size)
		if err == nil {
			err = f.Sync()
		}
		f.Close()
		if err != nil {
			return fail(err)
		}
	}
	if s.Mode != nil {
		if err := root.Chmod(p, fs.FileMode(*s.Mode&0o777)|modeBits(*s.Mode)); err != nil {
			return fail(err)
		}
	}
	if s.UID != nil || s.GID != nil {
		uid, gid := -1, -1
		if s.UID != nil {
			uid = int(*s.UID)
		}
		if s.GID != nil {
			gid = int(*s.GID)
		}
		if err := root.Lchown(p, uid, gid); err != nil {
			return fail(err)
		}
	}
	if s.Atime != nil || s.Mtime != nil {
		fi, err := root.Lstat(p)
		if err != nil {
			return fail(err)
		}
		a := attrOf(fi)
		at, mt := time.Unix(0, a.Atime), time.Unix(0, a.Mtime)
		if s.Atime != nil {
			at = time.Unix(0, *s.Atime)
		}
		if s.Mtime != nil {
			mt = time.Unix(0, *s.Mtime)
		}
		if err := root.Chtimes(p, at, mt); err != nil {
			return fail(err)
		}
	}
	return lstat(root, q.Path)
}

// writeErrno answers a data request that failed: 409 with the errno.
func writeErrno(w http.ResponseWriter, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusConflict)
	json.NewEncoder(w).Encode(fail(err))
}

func getData(w http.ResponseWriter, root *os.Root, p string) {
	if err := CheckPath(p); err != nil || p == "" {
		http.Error(w, "volfs: bad path", http.StatusBadRequest)
		return
	}
	f, err := root.Open(p)
	if err != nil {
		writeErrno(w, err)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		writeErrno(w, err)
		return
	}
	if !fi.Mode().IsRegular() {
		writeErrno(w, syscall.EISDIR)
		return
	}
	b, _ := json.Marshal(attrOf(fi))
	w.Header().Set(AttrHeader, string(b))
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(fi.Size(), 10))
	io.Copy(w, f)
}

// putData replaces a file's contents atomically: staged beside it, synced,
// renamed over it and the directory synced, so that the reply (the new
// attributes) means the contents are on the primary's disk. A file that
// exists keeps its mode and owner; a new one gets mode, uid and gid of
// the query.
func putData(w http.ResponseWriter, r *http.Request, root *os.Root) {
	qv := r.URL.Query()
	p := qv.Get("path")
	if err := CheckPath(p); err != nil || p == "" {
		http.Error(w, "volfs: bad path", http.StatusBadRequest)
		return
	}
	mode, _ := strconv.ParseUint(qv.Get("mode"), 10, 32)
	uid, _ := strconv.ParseUint(qv.Get("uid"), 10, 32)
	gid, _ := strconv.ParseUint(qv.Get("gid"), 10, 32)
	if fi, err := root.Lstat(p); err == nil {
		if !fi.Mode().IsRegular() {
			writeErrno(w, syscall.EISDIR)
			return
		}
		a := attrOf(fi)
		mode, uid, gid = uint64(a.Mode), uint64(a.UID), uint64(a.GID)
	} else if !errors.Is(err, fs.ErrNotExist) {
		writeErrno(w, err)
		return
	}
	dir := path.Dir(p)
	var rnd [8]byte
	rand.Read(rnd[:])
	tmp := path.Join(dir, tmpPrefix+hex.EncodeToString(rnd[:]))
	f, err := root.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		writeErrno(w, err)
		return
	}
	err = func() error {
		if _, err := io.Copy(f, r.Body); err != nil {
			return err
		}
		if r.ContentLength >= 0 {
			if fi, err := f.Stat(); err != nil {
				return err
			} else if fi.Size() != r.ContentLength {
				return fmt.Errorf("short body: %w", syscall.EIO)
			}
		}
		if err := f.Chmod(fs.FileMode(mode&0o777) | modeBits(uint32(mode))); err != nil {
			return err
		}
		if err := f.Chown(int(uid), int(gid)); err != nil {
			return err
		}
		return f.Sync()
	}()
	f.Close()
	if err == nil {
		err = root.Rename(tmp, p)
	}
	if err != nil {
		root.Remove(tmp)
		writeErrno(w, err)
		return
	}
	if d, err := root.Open(rootPath(strings.TrimPrefix(dir, "."))); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			writeErrno(w, err)
			return
		}
	}
	writeReply(w, lstat(root, p))
}

// OpWrite is the last element of the URL of a ranged write (a write
// batch): POST .../write?path=P.
const OpWrite = "write"

// openRegular opens the regular file at p; flag is O_RDONLY or O_WRONLY
// (never blocking on a FIFO: the type is checked first, and O_NONBLOCK
// covers a swap in between).
func openRegular(root *os.Root, p string, flag int) (*os.File, error) {
	if err := CheckPath(p); err != nil || p == "" {
		return nil, ErrBadPath
	}
	fi, err := root.Lstat(p)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		if fi.IsDir() {
			return nil, syscall.EISDIR
		}
		return nil, syscall.EINVAL
	}
	f, err := root.OpenFile(p, flag|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		if err == nil {
			err = syscall.EINVAL
		}
		return nil, err
	}
	return f, nil
}

// getRange sends at most len bytes of a file from off (fewer at its end),
// with the file's attributes.
func getRange(w http.ResponseWriter, root *os.Root, qv url.Values) {
	off, err1 := strconv.ParseInt(qv.Get("off"), 10, 64)
	n, err2 := strconv.ParseInt(qv.Get("len"), 10, 64)
	if err1 != nil || err2 != nil || off < 0 || off > MaxFileSize || n <= 0 || n > MaxRead {
		http.Error(w, "volfs: bad range", http.StatusBadRequest)
		return
	}
	f, err := openRegular(root, qv.Get("path"), os.O_RDONLY)
	if errors.Is(err, ErrBadPath) {
		http.Error(w, "volfs: bad path", http.StatusBadRequest)
		return
	}
	if err != nil {
		writeErrno(w, err)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		writeErrno(w, err)
		return
	}
	buf := make([]byte, min(n, max(fi.Size()-off, 0)))
	got, err := f.ReadAt(buf, off)
	if err != nil && err != io.EOF {
		writeErrno(w, err)
		return
	}
	b, _ := json.Marshal(attrOf(fi))
	w.Header().Set(AttrHeader, string(b))
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(got))
	w.Write(buf[:got])
}

// writeRanges applies a write batch to an existing regular file and
// answers its attributes; with BatchSync, once the file is on disk.
func writeRanges(w http.ResponseWriter, r *http.Request, root *os.Root) {
	p := r.URL.Query().Get("path")
	if err := CheckPath(p); err != nil || p == "" {
		http.Error(w, "volfs: bad path", http.StatusBadRequest)
		return
	}
	bt, err := DecodeBatch(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f, err := openRegular(root, p, os.O_WRONLY)
	if err != nil {
		writeErrno(w, err)
		return
	}
	// changed: the batch changed the file before it failed; inPlace:
	// it wrote over bytes the file had. Writes past its end and into its
	// holes (write batches of one write-back are applied in any order)
	// are undone by a truncation and punched holes.
	changed, inPlace := false, false
	var holes []span
	var origSize int64
	if fi, err := f.Stat(); err == nil {
		origSize = fi.Size()
	} else {
		inPlace = true
	}
	err = func() error {
		if bt.Trunc >= 0 {
			if err := f.Truncate(bt.Trunc); err != nil {
				return err
			}
			// Cutting bytes off cannot be undone; growing can.
			changed, inPlace = true, inPlace || bt.Trunc < origSize
		}
		// What the frames fill (holes, past the end) is allocated
		// first: a full volume fails the batch before it changes a
		// byte (on btrfs, even a truncation can fail then).
		var fill []span
		for _, fr := range bt.Frames {
			end := fr.Off + int64(len(fr.Data))
			if e := min(end, origSize); fr.Off < e && !inPlace {
				if isHole(f, fr.Off, e) {
					holes = append(holes, span{fr.Off, e})
					fill = append(fill, span{fr.Off, e})
				} else {
					inPlace = true
				}
			}
			if end > origSize {
				fill = append(fill, span{max(fr.Off, origSize), end})
			}
		}
		for _, r := range fill {
			if err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_KEEP_SIZE, r.off, r.end-r.off); err != nil && err != unix.EOPNOTSUPP {
				return err
			}
		}
		for _, fr := range bt.Frames {
			n, err := f.WriteAt(fr.Data, fr.Off)
			changed = changed || n > 0
			if err != nil {
				return err
			}
		}
		if bt.Size >= 0 {
			inPlace = inPlace || bt.Size < origSize
			if err := f.Truncate(bt.Size); err != nil {
				return err
			}
			changed = true
		}
		if bt.Flags&BatchSync != 0 {
			return fsync(f)
		}
		return nil
	}()
	if err != nil && changed && !inPlace && undo(f, holes, origSize) == nil {
		changed = false // a full volume while the file grew: undone
	}
	f.Close()
	if err != nil {
		if changed {
			// Applied in part (a full volume halfway): the file
			// differs from the replicas' now.
			w.Header().Set(HeaderPartial, "1")
		}
		writeErrno(w, err)
		return
	}
	writeReply(w, lstat(root, p))
}

// HeaderPartial marks the failure of a write batch that changed the file
// before it failed: the primary's copy of the file is not its replicas'
// (agent/volrep.go marks them stale; they catch up).
const HeaderPartial = "X-Volfs-Partial"

// isHole tells whether [off, end) of f is a hole.
func isHole(f *os.File, off, end int64) bool {
	d, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
	if err == unix.ENXIO {
		return true
	}
	return err == nil && d >= end
}

// undo takes back writes into holes and past the end of f.
func undo(f *os.File, holes []span, size int64) error {
	for _, h := range holes {
		if err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, h.off, h.end-h.off); err != nil {
			return err
		}
	}
	return f.Truncate(size)
}
